// Package signature verifies Browser Use Cloud webhook signatures.
//
// Browser Use signs each delivery with HMAC-SHA256 over
//
//	timestamp + "." + canonical
//
// where timestamp is the X-Browser-Use-Timestamp header verbatim and
// canonical is CPython's re-serialization of the body,
//
//	json.dumps(json.loads(body), separators=(",", ":"), sort_keys=True)
//
// not the body as it was sent. The signature is the lowercase hex digest in
// X-Browser-Use-Signature. Verifying therefore takes three steps, each a
// part of this package:
//
//  1. Canonicalize the body exactly as CPython does ([Canonicalizer]): key
//     order, number reprs, string escapes, NaN and Infinity, duplicate keys
//     and lone surrogates all matter, and a body CPython would reject can
//     carry no valid signature.
//  2. Compare the HMAC in constant time against each of the source's
//     secrets ([Verifier]): during a rotation a source has two.
//  3. Check that the timestamp is fresh ([CheckTimestamp]), so a captured
//     delivery cannot be replayed later.
//
// A Go service can import just this package to verify Browser Use webhooks
// itself; see the example. hookbridge's own webhook handler (package
// ingress) is built on it, and the canonical form it returns also feeds
// the event id, so a body is parsed once.
//
// The helpers [ObjectMembers], [Unquote], [AppendJSONSafe] and [AppendQuote]
// read and write the canonical form without a general-purpose decoder.
package signature

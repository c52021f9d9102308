#!/usr/bin/env python3
"""Generate vectors_extra.json: Browser Use webhook signature vectors.

Every vector is computed by CPython itself, exactly as the sender does:

    canonical = json.dumps(json.loads(body), separators=(",", ":"), sort_keys=True)
    signature = hmac_sha256(secret, f"{timestamp}.{canonical}").hexdigest()

The output has the format of shared/vectors/signatures.json: name, expect
("valid" or "invalid"), secret, timestamp, body_b64 (the exact request body),
signature, and signed (timestamp + "." + canonical) whenever json.loads
accepts the body. An "invalid" vector either has a body json.loads rejects
(its signature is then computed over something else: the raw body), or a
body that parses but a signature that must not verify.

Run it with CPython 3 (the vectors were made with 3.11) from anywhere:

    python3 bridge/testdata/gen_vectors.py

It writes vectors_extra.json next to itself. The random seed is fixed, so
the output is reproducible. Nesting stays at depth <= 100, within
hookbridge's default limit of 128 (CPython's own limit is near 1000).
"""

import base64
import hashlib
import hmac
import json
import math
import os
import random
import struct
import sys

random.seed(20251127)

SECRETS = ["whsec_test_secret", "s3cr3t-\u043a\u043b\u044e\u0447", "k" * 64]
TIMESTAMPS = ["1764000000", "1764000000123", "2023-01-01T00:00:00Z",
              "2025-05-25T09:22:22.269116+00:00", "2025-05-25T09:22:22"]

vectors = []
names = set()


def canonical(body):
    return json.dumps(json.loads(body), separators=(",", ":"), sort_keys=True)


def sign(secret, message):
    return hmac.new(secret.encode(), message.encode("utf-8", "surrogatepass"),
                    hashlib.sha256).hexdigest()


def pick(seq):
    return seq[len(vectors) % len(seq)]


def add(name, body, expect=None, secret=None, timestamp=None):
    """Add a vector for body (bytes or str, str is UTF-8 encoded with
    surrogatepass). expect, when given, asserts what CPython does."""
    assert name not in names, name
    names.add(name)
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    secret = secret if secret is not None else pick(SECRETS)
    timestamp = timestamp if timestamp is not None else pick(TIMESTAMPS)
    v = {"name": name, "secret": secret, "timestamp": timestamp,
         "body_b64": base64.b64encode(body).decode()}
    try:
        signed = timestamp + "." + canonical(body)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, int digits
        got = "invalid"
        # Over something that is not the canonical form.
        v["signature"] = sign(secret, timestamp + "." + body.decode("latin-1"))
        v["error"] = type(e).__name__
    else:
        got = "valid"
        v["signature"] = sign(secret, signed)
        v["signed"] = signed
    if expect is not None and expect != got:
        sys.exit(f"{name}: expected {expect}, CPython says {got}")
    v["expect"] = got
    vectors.append(v)
    return v


def add_bad_signature(name, body, how):
    """A body that parses, with a signature that must not verify."""
    v = add(name, body, "valid")
    good = v["signature"]
    if how == "wrong-secret":
        v["signature"] = sign("not-the-secret", v["signed"])
    elif how == "uppercase":
        v["signature"] = good.upper()
    elif how == "short":
        v["signature"] = good[:63]
    elif how == "long":
        v["signature"] = good + "0"
    elif how == "other-timestamp":
        v["signature"] = sign(v["secret"], "1" + v["signed"])
    elif how == "raw-body":
        v["signature"] = sign(v["secret"], v["timestamp"] + "." + body)
    v["expect"] = "invalid"


# ---- realistic deliveries -------------------------------------------------
ENVELOPE = ('{"type": "agent.task.status_update", "timestamp": "2025-05-25T09:22:22.269116+00:00", '
            '"payload": {"session_id": "cd9cc7bf-e3af-4181-80a2-73f083bc94b4", '
            '"task_id": "5b73fb3f-a3cb-4912-be40-17ce9e9e1a45", "status": "%s", '
            '"metadata": {"campaign": "q4-automation", "team": "marketing"}}}')
for st in ["initializing", "started", "paused", "stopped", "finished", "created",
           "running", "idle", "failed", "timed_out", "error", "brand-new-status"]:
    add("envelope-" + st, ENVELOPE % st, "valid")
add("flat-test", '{"test": "ok"}', "valid")
add("envelope-test", '{"type": "test", "timestamp": "2024-03-21T12:00:00Z", "payload": {"test": "ok"}}', "valid")
add("metadata-unicode", '{"status": "finished", "task_id": "t", "metadata": '
    '{"note": "Gr\u00fc\u00dfe \u65e5\u672c \U0001F680", "empty": "", "quote": "a \\"b\\" c"}}', "valid")
add("metadata-long-value", '{"status": "finished", "metadata": {"v": "%s"}}' % ("\u00e9x" * 500), "valid")
for how in ["wrong-secret", "uppercase", "short", "long", "other-timestamp", "raw-body"]:
    add_bad_signature("envelope-finished/" + how, ENVELOPE % "finished", how)

# ---- floats ----------------------------------------------------------------
FLOATS = ["1.0", "0.1", "1.50", "1e5", "1E5", "2.5E-7", "-0.0", "0.0", "0e0", "-0e-0",
          "1e16", "1e15", "9999999999999998.0", "9999999999999999.0", "1e17", "1.5e16",
          "123456789012345678.0", "12345678901234567890.0", "0.0001", "0.00001",
          "0.00012345", "1e-4", "1e-5", "1.2e-5", "5e-324", "2.4703282292062327e-324",
          "2.4703282292062328e-324", "4.9406564584124654e-324", "2.2250738585072014e-308",
          "2.2250738585072011e-308", "1.7976931348623157e308", "1.7976931348623158e308",
          "1.7976931348623159e308", "1e308", "1e309", "1e400", "-1e400", "1e-400", "-1e-400",
          "0.1e1", "100.0", "1e22", "1e21", "1e23", "3.141592653589793", "2.718281828459045",
          "0.30000000000000004", "1.0000000000000002", "0.9999999999999999",
          "9007199254740993.0", "9007199254740992.0", "4.35679886e+16", "1e+0", "1e-0",
          "1E+2", "123.456e-2", "-123.456e+2", "0.000000000000000000000000000001",
          "1" + "0" * 400 + ".0", "0." + "0" * 400 + "1", "1e0000000000000000000001"]
for i, f in enumerate(FLOATS):
    add("float-%02d" % i, '{"status":"finished","x":%s}' % f, "valid")
add("float-list", "[" + ",".join(FLOATS) + "]", "valid")
for i in range(30):
    while True:
        f = struct.unpack("<d", struct.pack("<Q", random.getrandbits(64)))[0]
        if math.isfinite(f):
            break
    add("float-random-bits-%02d" % i, "[%r,%s]" % (f, "%.20e" % f), "valid")
for i in range(12):
    digits = "".join(random.choice("0123456789") for _ in range(random.randint(1, 25)))
    add("float-random-decimal-%02d" % i, '{"v":%s.%se%d}' % (
        digits.lstrip("0") or "0", digits[::-1], random.randint(-340, 320)), "valid")
add("float-halfway-long", "[9007199254740993" + "0" * 900 + "1e-900, 9007199254740993" + "0" * 900 + "e-900]", "valid")

# ---- integers ---------------------------------------------------------------
INTS = ["0", "-0", "42", "-42", "9007199254740993", "18446744073709551617",
        "-9223372036854775809", "1" + "0" * 100, "-" + "9" * 300]
for i, n in enumerate(INTS):
    add("int-%02d" % i, '{"n":%s}' % n, "valid")
add("int-4300-digits", "9" * 4300, "valid")
add("int-4300-digits-negative", "-" + "1" * 4300, "valid")
add("int-4301-digits", "9" * 4301, "invalid")
add("int-4301-digits-negative", "[-" + "1" * 4301 + "]", "invalid")
add("float-4301-digits", "1" * 4301 + ".0", "valid")

# ---- strings: escapes and characters ----------------------------------------
add("escapes-short", r'{"s":"\" \\ \/ \b \f \n \r \t"}', "valid")
add("escapes-u-case", r'{"s":"\u00E9\u00e9\u00C9\uABCD\uabcd\u0041\u002F\u005c\u0022"}', "valid")
add("html-chars", '{"s":"<a href=\'x\'>&amp;</a> / \\\\"}', "valid")
for c in range(0x20):
    add("control-escaped-%02x" % c, '{"s":"a\\u%04x\\u%04Xb"}' % (c, c), "valid")
    add("control-raw-%02x" % c, '{"s":"a%sb"}' % chr(c), "invalid")
add("del-raw", '{"s":"\x7f"}', "valid")
add("del-escaped", '{"s":"\\u007f"}', "valid")
add("latin1-and-bmp", '{"s":"\u00a0\u00ff\u0100\u20ac\u2028\u2029\ufeff\uffff"}', "valid")
add("non-bmp-raw", '{"s":"\U0001F389\U00010000\U0010FFFF"}', "valid")
add("non-bmp-escaped", r'{"s":"\ud83c\udf89\uD800\uDC00\udbff\udfff"}', "valid")
add("lone-high-escaped", r'{"s":"x\ud800y"}', "valid")
add("lone-low-escaped", r'{"s":"x\udc00y"}', "valid")
add("reversed-pair-escaped", r'{"s":"\udc00\ud800"}', "valid")
add("high-high-low-escaped", r'{"s":"\ud800\ud800\udc00"}', "valid")
add("high-then-escape", r'{"s":"\ud800\n\ud800\u0041"}', "valid")
add("lone-high-raw", '{"s":"x\ud800y"}', "valid")
add("lone-low-raw", '{"s":"x\udfffy"}', "valid")
add("pair-raw-surrogates", '{"s":"\ud800\udc00"}', "valid")
add("pair-escaped-high-raw-low", '{"s":"\\ud800\udc00"}', "valid")
add("pair-raw-high-escaped-low", '{"s":"\ud800\\udc00"}', "valid")
add("string-top-level", r'"top \u00e9"', "valid")

# ---- keys: order and duplicates ---------------------------------------------
add("keys-order-ascii", '{"b":1,"a":2,"B":3,"A":4,"_":5,"aa":6,"":7,"~":8,"a ":9}', "valid")
add("keys-order-non-ascii", '{"\u00e9":1,"z":2,"\u00ff":3,"\u0100":4,"\u20ac":5,"\ue000":6,'
    '"\uffff":7,"\U0001F389":8,"\U00010000":9,"\x7f":10}', "valid")
add("keys-order-surrogates", '{"\ue000":1,"\\ud800\\udc00":2,"\ud800\udc00":3,"\\ud800":4,'
    '"\udbff":5,"\ud7ff":6,"\U0010FFFF":7}', "valid")
add("keys-order-escapes", r'{"\n":1,"\t":2,"A":3,"\u0000":4,"\"":5,"\\":6,"\/":7}', "valid")
add("keys-prefix", '{"abc":1,"ab":2,"abcd":3,"a":4}', "valid")
add("dup-last-wins", '{"status":"started","task_id":"t","status":"finished"}', "valid")
add("dup-three", '{"a":1,"a":2,"b":0,"a":3}', "valid")
add("dup-escaped-vs-raw", '{"\u00e9":"raw","\\u00e9":"escaped"}', "valid")
add("dup-raw-vs-escaped", '{"\\u00e9":"escaped","\u00e9":"raw"}', "valid")
add("dup-escaped-ascii", r'{"a":1,"\u0061":2,"b":3,"\u0062":4,"b":5}', "valid")
add("dup-solidus", r'{"a/b":1,"a\/b":2}', "valid")
add("dup-non-bmp", '{"\\ud83c\\udf89":1,"\U0001F389":2}', "valid")
add("dup-raw-pair-vs-escaped-pair", '{"\ud800\udc00":1,"\\ud800\\udc00":2}', "valid")
add("dup-nested", '{"o":{"x":1,"x":2},"o":{"y":3,"y":4}}', "valid")
add("dup-sorted-input", '{"a":1,"a":2}', "valid")

# ---- non-finite ---------------------------------------------------------------
add("nan-infinity", '{"a":NaN,"b":Infinity,"c":-Infinity,"d":"NaN"}', "valid")
add("nonfinite-in-array", "[NaN, Infinity, -Infinity, 1e999, -1e999]", "valid")
add("nan-top-level", "NaN", "valid")
add("nan-lowercase", "[nan]", "invalid")
add("negative-nan", "[-NaN]", "invalid")
add("infinity-truncated", "[Infinit]", "invalid")
add("plus-infinity", "[+Infinity]", "invalid")

# ---- structure ----------------------------------------------------------------
add("nested-envelope", '{"type":"x","payload":{"z":[1,{"b":[],"a":{}}],"a":[[[]]],"m":{"k":null,"j":true,"i":false}}}', "valid")
add("depth-100-arrays", "[" * 100 + "]" * 100, "valid")
add("depth-100-objects", '{"a":' * 99 + "{}" + "}" * 99, "valid")
add("depth-100-mixed", '[{"a":' * 50 + "0" + "}]" * 50, "valid")
add("empty-object", "{}", "valid")
add("empty-array", "[]", "valid")
add("scalars-top-level-true", "true", "valid")
add("scalars-top-level-null", " null ", "valid")
add("scalars-top-level-int", "7", "valid")

# ---- whitespace -----------------------------------------------------------------
add("ws-everywhere", ' \t\n\r{ \t\n\r"a" \t\n\r: \t\n\r[ 1 , 2 ] \t\n\r, "b" : { } } \t\n\r', "valid")
add("ws-pretty", json.dumps({"status": "finished", "task_id": "t", "metadata": {"a": "b"}}, indent=4), "valid")
add("ws-crlf", '{\r\n"status": "finished"\r\n}\r\n', "valid")
add("ws-formfeed", '{"a":1}\x0c', "invalid")
add("ws-vertical-tab", '\x0b{"a":1}', "invalid")
add("ws-nbsp", '{"a":1}\u00a0', "invalid")
add("ws-only", " \n\t", "invalid")

# ---- encodings ----------------------------------------------------------------
DOC = '{"status":"finished","note":"h\u00e9llo \U0001F389","\u00e9":1}'
add("bom-utf8", b"\xef\xbb\xbf" + DOC.encode(), "valid")
add("bom-utf8-twice", b"\xef\xbb\xbf\xef\xbb\xbf" + DOC.encode(), "invalid")
for codec in ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"]:
    add("enc-" + codec, DOC.encode(codec), "valid")
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff",
           "utf-32-le": b"\xff\xfe\x00\x00", "utf-32-be": b"\x00\x00\xfe\xff"}[codec]
    add("enc-bom-" + codec, bom + DOC.encode(codec), "valid")
add("enc-utf-16-lone-surrogate", '{"s":"\ud800x","\udc00":1}'.encode("utf-16-le", "surrogatepass"), "valid")
add("enc-utf-16-pair", '{"\ud800\udc00":1,"\ue000":2}'.encode("utf-16-be", "surrogatepass"), "valid")
add("enc-utf-32-surrogates-not-joined", '{"\ud800\udc00":1,"\ue000":2}'.encode("utf-32-le", "surrogatepass"), "valid")
add("enc-utf-16-two-bytes", b"1\x00", "valid")
add("enc-utf-16-be-two-bytes", b"\x007", "valid")
add("enc-utf-16-odd-length", '{"a":1}'.encode("utf-16-le") + b"x", "invalid")
add("enc-utf-16-bom-odd-length", b"\xff\xfe" + '[1]'.encode("utf-16-le") + b"\x00", "invalid")
add("enc-utf-32-truncated", '[1]'.encode("utf-32-be")[:-1], "invalid")
add("enc-utf-32-out-of-range", b"\xff\xfe\x00\x00" + '"'.encode("utf-32-le") + b"\x00\x00\x11\x00" + '"'.encode("utf-32-le"), "invalid")
add("enc-utf-16-bom-only", b"\xff\xfe", "invalid")
add("enc-utf-16-double-bom", b"\xff\xfe\xff\xfe" + "1".encode("utf-16-le"), "invalid")

# ---- invalid bodies ---------------------------------------------------------
INVALID = {
    "trailing-comma-object": '{"a":1,}',
    "trailing-comma-array": "[1,2,]",
    "leading-comma": "[,1]",
    "double-comma": "[1,,2]",
    "missing-comma": '{"a":1 "b":2}',
    "missing-colon": '{"a" 1}',
    "single-quotes": "{'a':1}",
    "unquoted-key": "{a:1}",
    "number-key": "{1:1}",
    "leading-zero": "[01]",
    "leading-zero-negative": "[-01]",
    "dot-no-fraction": "[1.]",
    "dot-leading": "[.5]",
    "minus-alone": "[-]",
    "plus-sign": "[+1]",
    "exp-no-digits": "[1e]",
    "exp-sign-no-digits": "[1e+]",
    "hex-number": "[0x10]",
    "bad-escape-x": r'["\x41"]',
    "bad-escape-U": r'["\U0041"]',
    "bad-escape-apostrophe": r'["\'"]',
    "short-u-escape": r'["\u12"]',
    "bad-hex-u-escape": r'["\u12G4"]',
    "bad-second-u-escape": r'["\ud800\u12G4"]',
    "truncated-object": '{"status":"finished"',
    "truncated-string": '{"status":"fini',
    "truncated-escape": '["\\',
    "truncated-literal": "[tru",
    "unclosed-array": "[1, [2]",
    "extra-close": "[1]]",
    "trailing-garbage": '{"a":1} x',
    "two-values": '{"a":1} {"b":2}',
    "true-uppercase": "[True]",
    "none-literal": "[None]",
    "comment": '{"a":1 /* c */}',
    "empty": "",
    "not-json": "status=finished",
}
for name, body in INVALID.items():
    add("invalid-" + name, body, "invalid")
for name, raw in {"utf8-ff": b"\xff", "utf8-lone-continuation": b"\x80", "utf8-overlong-slash": b"\xc0\xaf",
                  "utf8-overlong-nul": b"\xc0\x80", "utf8-overlong-3byte": b"\xe0\x80\xaf",
                  "utf8-overlong-4byte": b"\xf0\x80\x80\xaf", "utf8-beyond-10ffff": b"\xf4\x90\x80\x80",
                  "utf8-f5": b"\xf5\x80\x80\x80", "utf8-truncated-2": b"\xc3",
                  "utf8-truncated-3": b"\xe2\x82", "utf8-truncated-surrogate": b"\xed\xa0",
                  "utf8-latin1": b"\xe9"}.items():
    add("invalid-" + name, b'{"s":"a' + raw + b'b"}', "invalid")
add("invalid-utf8-outside-string", b'{"s":1}\xff', "invalid")
add("invalid-nul-after-value", b'{"s":1}\x00', "invalid")

assert len(vectors) >= 150, len(vectors)

out = {
    "about": "HMAC-SHA256 webhook signature vectors computed with CPython %d.%d json.loads/json.dumps "
             "(separators=(',', ':'), sort_keys=True); body_b64 is the exact request body; "
             "generated by gen_vectors.py" % sys.version_info[:2],
    "vectors": vectors,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors_extra.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print("wrote %d vectors (%d valid) to %s" % (
    len(vectors), sum(v["expect"] == "valid" for v in vectors), path))

package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Header names Browser Use signs its deliveries with.
const (
	HeaderTimestamp = "X-Browser-Use-Timestamp"
	HeaderSignature = "X-Browser-Use-Signature"
)

// Sign returns the lowercase hex HMAC-SHA256 that Browser Use sends in
// X-Browser-Use-Signature for a body whose canonical form is canonical:
// HMAC(secret, timestamp + "." + canonical), the timestamp being the
// X-Browser-Use-Timestamp header verbatim.
func Sign(secret []byte, timestamp string, canonical []byte) string {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write(canonical)
	return hex.EncodeToString(h.Sum(nil))
}

// Verifier checks signatures against one or more secrets: during a rotation
// a source has the old and the new secret, and a match with any of them
// accepts. A Verifier is safe for concurrent use.
type Verifier struct {
	keys []keyedPool
}

// keyedPool holds ready HMAC states for one secret: keying an HMAC hashes
// the secret and allocates, so it is done once per pooled state rather than
// per request.
type keyedPool struct {
	pool sync.Pool // *macState
}

type macState struct {
	h   hash.Hash
	buf []byte // timestamp + "."
	sum [sha256.Size]byte
}

// maxKeptPrefix bounds the timestamp buffer a pooled state keeps, so one
// request with a huge header does not pin memory.
const maxKeptPrefix = 256

// NewVerifier returns a Verifier for secrets, which it copies. It is an
// error to give no secret or an empty one.
func NewVerifier(secrets [][]byte) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no signing secret")
	}
	v := &Verifier{keys: make([]keyedPool, len(secrets))}
	for i, s := range secrets {
		if len(s) == 0 {
			return nil, errors.New("signing secret " + strconv.Itoa(i+1) + " is empty")
		}
		secret := append([]byte(nil), s...)
		v.keys[i].pool.New = func() any {
			return &macState{h: hmac.New(sha256.New, secret)}
		}
	}
	return v, nil
}

// Verify reports whether signature is the signature of timestamp and
// canonical (see Sign) under one of the Verifier's secrets. Only the
// exact form Browser Use sends is accepted: 64 lowercase hex digits. The
// comparison is constant-time; trying the secrets in order and stopping at
// a match reveals only which secret signed, which the sender knows.
func (v *Verifier) Verify(timestamp string, canonical []byte, signature string) bool {
	var want [sha256.Size]byte
	if !decodeLowerHex(want[:], signature) {
		return false
	}
	for i := range v.keys {
		p := &v.keys[i].pool
		st := p.Get().(*macState)
		st.h.Reset()
		st.buf = append(append(st.buf[:0], timestamp...), '.')
		st.h.Write(st.buf)
		st.h.Write(canonical)
		ok := hmac.Equal(st.h.Sum(st.sum[:0]), want[:])
		if cap(st.buf) > maxKeptPrefix {
			st.buf = nil
		}
		p.Put(st)
		if ok {
			return true
		}
	}
	return false
}

// decodeLowerHex decodes s, which must be exactly 2*len(dst) lowercase hex
// digits, into dst. The format of a signature is not secret, so rejecting a
// malformed one early leaks nothing.
func decodeLowerHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := lowerHexVal(s[2*i])
		lo, ok2 := lowerHexVal(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func lowerHexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// ParseTimestamp parses an X-Browser-Use-Timestamp header value: integer
// Unix seconds (up to 12 digits), a 13-digit value as Unix milliseconds, or
// an RFC 3339 / ISO 8601 date-time with "Z", a ±hh:mm (or ±hhmm) offset, or
// no offset at all, which means UTC. Fractional seconds are allowed, and a
// space or a lower-case 't' may stand for the 'T'. The result is in UTC.
func ParseTimestamp(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("empty timestamp")
	}
	if n, ok := allDigits(s); ok {
		switch {
		case len(s) == 13:
			return time.UnixMilli(n).UTC(), nil
		case len(s) <= 12:
			return time.Unix(n, 0).UTC(), nil
		}
		return time.Time{}, errors.New("timestamp has more than 13 digits")
	}
	if len(s) > 10 && (s[10] == ' ' || s[10] == 't') {
		s = s[:10] + "T" + s[11:]
	}
	if n := len(s); n > 0 && s[n-1] == 'z' {
		s = s[:n-1] + "Z"
	}
	for _, layout := range timestampLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("timestamp is neither Unix time nor RFC 3339")
}

// ErrTimestampFormat is returned by CheckTimestamp for a timestamp that
// ParseTimestamp cannot read.
var ErrTimestampFormat = errors.New("timestamp header is neither Unix time nor RFC 3339")

// CheckTimestamp reports whether timestamp (an X-Browser-Use-Timestamp
// value) is fresh: within tolerance of now, in either direction. It
// returns ErrTimestampFormat if the timestamp does not parse, and an
// error saying how far off it is if it is not fresh. A tolerance of 0
// checks only that it parses.
//
// A fresh timestamp is what makes a captured delivery useless to replay
// later: the signature covers it.
func CheckTimestamp(timestamp string, now time.Time, tolerance time.Duration) error {
	t, err := ParseTimestamp(timestamp)
	if err != nil {
		return ErrTimestampFormat
	}
	if tolerance == 0 {
		return nil
	}
	switch skew := now.Sub(t); {
	case skew > tolerance:
		return fmt.Errorf("timestamp is %s old, more than the tolerance of %s", skew.Round(time.Second), tolerance)
	case -skew > tolerance:
		return fmt.Errorf("timestamp is %s in the future, more than the tolerance of %s", (-skew).Round(time.Second), tolerance)
	}
	return nil
}

// timestampLayouts are tried in order. On parsing, Go accepts fractional
// seconds after the seconds field even where a layout has none.
var timestampLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04:05", // no offset: time.Parse gives UTC
}

// allDigits parses s as a decimal number of at most 18 digits.
func allDigits(s string) (int64, bool) {
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if i < 18 {
			n = n*10 + int64(c-'0')
		}
	}
	return n, true
}

// SignRequest sets on req the two headers Browser Use sends with body:
// the timestamp as given and the signature of body's canonical form with
// secret. It fails, setting nothing, if body is not JSON CPython reads.
// hookbridge send uses it, and so can a test of a verifying handler.
func SignRequest(req *http.Request, body, secret []byte, timestamp string) error {
	var cz Canonicalizer
	c, err := cz.Canonicalize(body)
	if err != nil {
		return err
	}
	req.Header.Set(HeaderTimestamp, timestamp)
	req.Header.Set(HeaderSignature, Sign(secret, timestamp, c.JSON))
	return nil
}

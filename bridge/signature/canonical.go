package signature

import (
	"bytes"
	"cmp"
	"iter"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// The signature Browser Use sends covers CPython's re-serialization of the
// body, not the body itself:
//
//	json.dumps(json.loads(body), separators=(",", ":"), sort_keys=True)
//
// so this file reproduces, byte for byte, what CPython 3 does: the encoding
// detection and surrogatepass decoding of json.loads(bytes), the C scanner's
// grammar (NaN/Infinity literals, strict strings, lone surrogates), dict
// semantics for duplicate keys, and the C encoder's ensure_ascii output with
// Python's int and float reprs. Every rule below was checked against
// CPython 3.11; testdata/gen_vectors.py generates the vectors that pin them.

// DefaultMaxDepth is the default JSON nesting limit.
//
// CPython itself gives up near depth 1000 (RecursionError); webhook bodies
// nest a few levels, so a much lower limit bounds the work and the stack an
// untrusted body can cost.
const DefaultMaxDepth = 128

// MaxIntDigits is CPython's int_max_str_digits default: json.loads raises
// ValueError for an integer literal with more digits than this (the sign is
// not counted).
const MaxIntDigits = 4300

// Canonicalizer turns a request body into CPython's canonical JSON.
//
// A Canonicalizer is not safe for concurrent use. Reuse it (for example
// through a sync.Pool): the buffers it allocates are kept between calls, so
// a warmed-up Canonicalizer does not allocate. The zero value is ready to
// use.
type Canonicalizer struct {
	// MaxDepth is the deepest nesting of arrays and objects accepted: a
	// body with MaxDepth nested containers is fine, one more is a
	// SyntaxError. Zero or less means DefaultMaxDepth.
	MaxDepth int
	// MaxIntDigits is the longest integer literal accepted, in digits
	// (the sign not counted). Zero or less means MaxIntDigits, CPython's
	// own limit: a longer one no CPython sender can sign. Float literals
	// have no limit, as in CPython.
	MaxIntDigits int
	// MaxTinyFloats is the most float literals below 1e-307 in magnitude
	// (the subnormal range, nonzero) a body may hold; one more is a
	// SyntaxError. Each costs strconv a slow exact parse (about 15 µs),
	// so a body of nothing else would cost 0.8 s of CPU per MiB before
	// the HMAC could refuse it. CPython has no such limit, but no genuine
	// delivery holds even one. Zero or less means DefaultMaxTinyFloats.
	MaxTinyFloats int

	out     []byte   // the canonical output; Canonical.JSON aliases it
	keys    []byte   // decoded keys of the objects being parsed, a stack
	members []member // members of the objects being parsed, a stack
	scratch []byte   // rebuilding an unsorted object; normalizing a float
	trans   []byte   // the WTF-8 transcoding of a UTF-16 or UTF-32 body

	// Per call.
	src       []byte // what is scanned: the body, or trans
	srcOff    int    // added to offsets into src to make error offsets
	maxDepth  int
	nonFinite bool // a NaN or infinity was written
	tiny      int  // tiny floats read so far
	dropped   bool // a duplicate key's member was dropped
}

// member is one "key":value of an object being parsed.
type member struct {
	keyStart, keyEnd int // the decoded key, in Canonicalizer.keys
	start, end       int // `"key":value` in Canonicalizer.out
}

// Canonical is one result of Canonicalizer.Canonicalize.
type Canonical struct {
	// JSON is the canonical form (pure ASCII). It aliases the
	// Canonicalizer's buffer and is valid until the Canonicalizer's next
	// call: copy it to keep it longer.
	JSON []byte
	// Object reports whether the top-level value is an object.
	Object bool
	// NonFinite reports whether a NaN, Infinity or -Infinity number token
	// appears anywhere in JSON (not counting string contents). Such JSON is
	// what CPython signs but not standard JSON: see AppendJSONSafe.
	NonFinite bool
}

// SyntaxError is returned by Canonicalize for any body CPython's json.loads
// would reject, and for a body nested deeper than the Canonicalizer's
// MaxDepth.
type SyntaxError struct {
	// Offset is the byte offset of the problem in the body. For a UTF-16
	// or UTF-32 body it counts bytes of the body's UTF-8 transcoding.
	Offset int
	// Msg is a short lower-case description; it never quotes the body.
	Msg string
}

// Error implements error.
func (e *SyntaxError) Error() string {
	return "invalid JSON at byte " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

// DefaultMaxTinyFloats is Canonicalizer.MaxTinyFloats's default: 100
// tiny floats cost about 1.5 ms.
const DefaultMaxTinyFloats = 100

func (c *Canonicalizer) tinyFloats() int {
	if c.MaxTinyFloats > 0 {
		return c.MaxTinyFloats
	}
	return DefaultMaxTinyFloats
}

func (c *Canonicalizer) intDigits() int {
	if c.MaxIntDigits > 0 {
		return c.MaxIntDigits
	}
	return MaxIntDigits
}

func (c *Canonicalizer) errAt(p int, msg string) error {
	return &SyntaxError{Offset: c.srcOff + p, Msg: msg}
}

// Canonicalize parses body as CPython's json.loads(body) does and returns
// json.dumps(value, separators=(",", ":"), sort_keys=True) of the result.
// Any body json.loads rejects gives a *SyntaxError, as does a body nested
// deeper than MaxDepth.
func (c *Canonicalizer) Canonicalize(body []byte) (Canonical, error) {
	c.maxDepth = c.MaxDepth
	if c.maxDepth <= 0 {
		c.maxDepth = DefaultMaxDepth
	}
	c.out = c.out[:0]
	c.keys = c.keys[:0]
	c.members = c.members[:0]
	c.nonFinite, c.dropped, c.tiny = false, false, 0
	if c.out == nil {
		c.out = make([]byte, 0, len(body)+len(body)/4+16)
	}
	defer func() { c.src = nil }() // do not keep the body alive in a pool

	src, off, err := c.decodeBody(body)
	if err != nil {
		return Canonical{}, err
	}
	c.src, c.srcOff = src, off

	p := skipSpace(src, 0)
	top := p
	p, err = c.value(p, 0)
	if err != nil {
		return Canonical{}, err
	}
	if p = skipSpace(src, p); p != len(src) {
		return Canonical{}, c.errAt(p, "trailing data after the value")
	}
	if c.nonFinite && c.dropped {
		// The NaN may have been the value of a key that a later duplicate
		// replaced: NonFinite describes the output.
		c.nonFinite = hasNonFinite(c.out)
	}
	// The capacity is capped so that a caller appending to JSON gets a
	// copy instead of writing into the buffer.
	return Canonical{JSON: c.out[:len(c.out):len(c.out)], Object: src[top] == '{', NonFinite: c.nonFinite}, nil
}

// decodeBody does what json.loads does to bytes before parsing:
// json.detect_encoding, then bytes.decode(encoding, "surrogatepass"). UTF-8
// is returned as is (after a BOM) and validated while scanning; UTF-16 and
// UTF-32 are transcoded into c.trans as generalized UTF-8, which keeps lone
// surrogates as three-byte sequences so that they survive like in a Python
// str.
func (c *Canonicalizer) decodeBody(b []byte) (src []byte, off int, err error) {
	n := len(b)
	switch {
	// The order matters: the UTF-32 LE BOM starts with the UTF-16 LE BOM.
	case n >= 4 && b[0] == 0xFF && b[1] == 0xFE && b[2] == 0 && b[3] == 0:
		return c.fromUTF32(b[4:], false, 4)
	case n >= 4 && b[0] == 0 && b[1] == 0 && b[2] == 0xFE && b[3] == 0xFF:
		return c.fromUTF32(b[4:], true, 4)
	case n >= 2 && b[0] == 0xFF && b[1] == 0xFE:
		return c.fromUTF16(b[2:], false, 2)
	case n >= 2 && b[0] == 0xFE && b[1] == 0xFF:
		return c.fromUTF16(b[2:], true, 2)
	case n >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF:
		return b[3:], 3, nil
	case n >= 4 && b[0] == 0:
		// 00 XX -- -- is UTF-16 BE, 00 00 -- -- UTF-32 BE.
		if b[1] != 0 {
			return c.fromUTF16(b, true, 0)
		}
		return c.fromUTF32(b, true, 0)
	case n >= 4 && b[1] == 0:
		// XX 00 00 00 is UTF-32 LE, any other XX 00 UTF-16 LE.
		if b[2] != 0 || b[3] != 0 {
			return c.fromUTF16(b, false, 0)
		}
		return c.fromUTF32(b, false, 0)
	case n == 2 && b[0] == 0:
		return c.fromUTF16(b, true, 0)
	case n == 2 && b[1] == 0:
		return c.fromUTF16(b, false, 0)
	}
	return b, 0, nil
}

// fromUTF16 transcodes b as Python's UTF-16 codec with surrogatepass does:
// a high surrogate followed by a low one is one code point, any other
// surrogate is kept alone; an odd length is an error. off is the length of
// the BOM before b.
func (c *Canonicalizer) fromUTF16(b []byte, bigEndian bool, off int) ([]byte, int, error) {
	if len(b)%2 != 0 {
		return nil, 0, &SyntaxError{Offset: off + len(b) - 1, Msg: "truncated UTF-16"}
	}
	unit := func(i int) rune {
		if bigEndian {
			return rune(b[i])<<8 | rune(b[i+1])
		}
		return rune(b[i+1])<<8 | rune(b[i])
	}
	t := c.trans[:0]
	for i := 0; i < len(b); i += 2 {
		r := unit(i)
		if r < 0x80 {
			t = append(t, byte(r))
			continue
		}
		if isHighSurrogate(r) && i+3 < len(b) {
			if r2 := unit(i + 2); isLowSurrogate(r2) {
				r = combineSurrogates(r, r2)
				i += 2
			}
		}
		t = appendWTF8(t, r)
	}
	c.trans = t
	return t, 0, nil
}

// fromUTF32 transcodes b as Python's UTF-32 codec with surrogatepass does:
// surrogates are kept one by one, never combined; a code unit beyond
// U+10FFFF or a length that is not a multiple of 4 is an error. off is the
// length of the BOM before b.
func (c *Canonicalizer) fromUTF32(b []byte, bigEndian bool, off int) ([]byte, int, error) {
	if len(b)%4 != 0 {
		return nil, 0, &SyntaxError{Offset: off + len(b)&^3, Msg: "truncated UTF-32"}
	}
	t := c.trans[:0]
	for i := 0; i < len(b); i += 4 {
		var u uint32
		if bigEndian {
			u = uint32(b[i])<<24 | uint32(b[i+1])<<16 | uint32(b[i+2])<<8 | uint32(b[i+3])
		} else {
			u = uint32(b[i+3])<<24 | uint32(b[i+2])<<16 | uint32(b[i+1])<<8 | uint32(b[i])
		}
		if u > utf8.MaxRune {
			return nil, 0, &SyntaxError{Offset: off + i, Msg: "invalid UTF-32"}
		}
		if u < 0x80 {
			t = append(t, byte(u))
			continue
		}
		t = appendWTF8(t, rune(u))
	}
	c.trans = t
	return t, 0, nil
}

func isHighSurrogate(r rune) bool { return r >= 0xD800 && r < 0xDC00 }
func isLowSurrogate(r rune) bool  { return r >= 0xDC00 && r < 0xE000 }
func combineSurrogates(hi, lo rune) rune {
	return 0x10000 + (hi-0xD800)<<10 + (lo - 0xDC00)
}

// appendWTF8 appends r (r >= 0x80) as UTF-8, surrogates included: unlike
// utf8.AppendRune it does not replace them, because a Python str can hold
// them. Byte order of the result is code point order, which is what sorting
// keys needs.
func appendWTF8(dst []byte, r rune) []byte {
	switch {
	case r < 0x800:
		return append(dst, 0xC0|byte(r>>6), 0x80|byte(r)&0x3F)
	case r < 0x10000:
		return append(dst, 0xE0|byte(r>>12), 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
	}
	return append(dst, 0xF0|byte(r>>18), 0x80|byte(r>>12)&0x3F, 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
}

// decodeWTF8 decodes the sequence at the start of b (b[0] >= 0x80) the way
// CPython's UTF-8 decoder with errors="surrogatepass" accepts it: well-formed
// UTF-8, plus surrogates encoded as ED A0..BF 80..BF. Size 0 means invalid
// (overlong forms, beyond U+10FFFF, stray or missing continuation bytes).
func decodeWTF8(b []byte) (rune, int) {
	b0 := b[0]
	switch {
	case b0 < 0xC2:
		return 0, 0
	case b0 < 0xE0:
		if len(b) < 2 || b[1]&0xC0 != 0x80 {
			return 0, 0
		}
		return rune(b0&0x1F)<<6 | rune(b[1]&0x3F), 2
	case b0 < 0xF0:
		if len(b) < 3 || b[1]&0xC0 != 0x80 || b[2]&0xC0 != 0x80 || (b0 == 0xE0 && b[1] < 0xA0) {
			return 0, 0
		}
		return rune(b0&0x0F)<<12 | rune(b[1]&0x3F)<<6 | rune(b[2]&0x3F), 3
	case b0 < 0xF5:
		if len(b) < 4 || b[1]&0xC0 != 0x80 || b[2]&0xC0 != 0x80 || b[3]&0xC0 != 0x80 ||
			(b0 == 0xF0 && b[1] < 0x90) || (b0 == 0xF4 && b[1] > 0x8F) {
			return 0, 0
		}
		return rune(b0&0x07)<<18 | rune(b[1]&0x3F)<<12 | rune(b[2]&0x3F)<<6 | rune(b[3]&0x3F), 4
	}
	return 0, 0
}

// plain marks the bytes ensure_ascii output copies as they are: printable
// ASCII but for '"' and '\\'. The same bytes need no decoding in input
// strings, which makes them the scanner's fast path.
var plain = func() (t [256]bool) {
	for b := 0x20; b < 0x7F; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendEscapedRune appends r as CPython's ensure_ascii encoder writes it:
// short escapes for '"' '\\' \b \f \n \r \t, lowercase \u00XX for other
// control characters and DEL, \uXXXX for the rest of the BMP (surrogates
// included) and a surrogate pair of escapes beyond it.
func appendEscapedRune(dst []byte, r rune) []byte {
	if r < 0x80 {
		if plain[r] {
			return append(dst, byte(r))
		}
		switch r {
		case '"':
			return append(dst, '\\', '"')
		case '\\':
			return append(dst, '\\', '\\')
		case '\b':
			return append(dst, '\\', 'b')
		case '\f':
			return append(dst, '\\', 'f')
		case '\n':
			return append(dst, '\\', 'n')
		case '\r':
			return append(dst, '\\', 'r')
		case '\t':
			return append(dst, '\\', 't')
		}
	} else if r >= 0x10000 {
		r -= 0x10000
		dst = appendUEscape(dst, 0xD800+r>>10)
		r = 0xDC00 + r&0x3FF
	}
	return appendUEscape(dst, r)
}

func appendUEscape(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u', hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
}

func skipSpace(src []byte, p int) int {
	for p < len(src) {
		switch src[p] {
		case ' ', '\t', '\n', '\r':
			p++
		default:
			return p
		}
	}
	return p
}

// value canonicalizes the value starting at src[p] (whitespace skipped) and
// returns the offset after it. depth counts the containers around it.
func (c *Canonicalizer) value(p, depth int) (int, error) {
	src := c.src
	if p >= len(src) {
		return p, c.errAt(p, "unexpected end of input")
	}
	switch src[p] {
	case '"':
		return c.str(p+1, false)
	case '{':
		return c.object(p, depth+1)
	case '[':
		return c.array(p, depth+1)
	case 't':
		return c.literal(p, "true", false)
	case 'f':
		return c.literal(p, "false", false)
	case 'n':
		return c.literal(p, "null", false)
	case 'N':
		return c.literal(p, "NaN", true)
	case 'I':
		return c.literal(p, "Infinity", true)
	case '-':
		if p+1 < len(src) && src[p+1] == 'I' {
			return c.literal(p, "-Infinity", true)
		}
		return c.number(p)
	case '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return c.number(p)
	}
	return p, c.errAt(p, "unexpected character")
}

// literal copies the keyword lit found at src[p]; NaN and the infinities are
// CPython's parse_constant literals, written back as they are read.
func (c *Canonicalizer) literal(p int, lit string, nonFinite bool) (int, error) {
	if len(c.src)-p < len(lit) || string(c.src[p:p+len(lit)]) != lit {
		return p, c.errAt(p, "unexpected character")
	}
	c.out = append(c.out, lit...)
	c.nonFinite = c.nonFinite || nonFinite
	return p + len(lit), nil
}

func (c *Canonicalizer) tooDeep(p int) error {
	return c.errAt(p, "nesting deeper than "+strconv.Itoa(c.maxDepth)+" levels")
}

func (c *Canonicalizer) array(p, depth int) (int, error) {
	if depth > c.maxDepth {
		return p, c.tooDeep(p)
	}
	src := c.src
	c.out = append(c.out, '[')
	p = skipSpace(src, p+1)
	if p < len(src) && src[p] == ']' {
		c.out = append(c.out, ']')
		return p + 1, nil
	}
	for {
		var err error
		if p, err = c.value(p, depth); err != nil {
			return p, err
		}
		p = skipSpace(src, p)
		if p >= len(src) {
			return p, c.errAt(p, "unexpected end of input")
		}
		switch src[p] {
		case ',':
			c.out = append(c.out, ',')
			p = skipSpace(src, p+1)
		case ']':
			c.out = append(c.out, ']')
			return p + 1, nil
		default:
			return p, c.errAt(p, "expected ',' or ']'")
		}
	}
}

// object writes the members in input order, recording each one's decoded
// key and output span; only if the keys are not already strictly ascending
// does reorder rebuild the object sorted and without duplicates. Bodies
// produced by json.dumps(sort_keys=True) never pay for the rebuild.
func (c *Canonicalizer) object(p, depth int) (int, error) {
	if depth > c.maxDepth {
		return p, c.tooDeep(p)
	}
	src := c.src
	objStart := len(c.out)
	base, keyBase := len(c.members), len(c.keys)
	c.out = append(c.out, '{')
	p = skipSpace(src, p+1)
	if p < len(src) && src[p] == '}' {
		c.out = append(c.out, '}')
		return p + 1, nil
	}
	sorted := true
	for {
		if p >= len(src) {
			return p, c.errAt(p, "unexpected end of input")
		}
		if src[p] != '"' {
			return p, c.errAt(p, "expected a string key")
		}
		start, keyStart := len(c.out), len(c.keys)
		var err error
		if p, err = c.str(p+1, true); err != nil {
			return p, err
		}
		keyEnd := len(c.keys)
		if sorted && len(c.members) > base {
			prev := &c.members[len(c.members)-1]
			sorted = bytes.Compare(c.keys[prev.keyStart:prev.keyEnd], c.keys[keyStart:keyEnd]) < 0
		}
		p = skipSpace(src, p)
		if p >= len(src) {
			return p, c.errAt(p, "unexpected end of input")
		}
		if src[p] != ':' {
			return p, c.errAt(p, "expected ':' after an object key")
		}
		c.out = append(c.out, ':')
		if p, err = c.value(skipSpace(src, p+1), depth); err != nil {
			return p, err
		}
		c.members = append(c.members, member{keyStart, keyEnd, start, len(c.out)})
		p = skipSpace(src, p)
		if p >= len(src) {
			return p, c.errAt(p, "unexpected end of input")
		}
		if src[p] == ',' {
			c.out = append(c.out, ',')
			p = skipSpace(src, p+1)
			continue
		}
		if src[p] != '}' {
			return p, c.errAt(p, "expected ',' or '}'")
		}
		c.out = append(c.out, '}')
		break
	}
	if !sorted {
		c.reorder(objStart, base)
	}
	c.members, c.keys = c.members[:base], c.keys[:keyBase]
	return p + 1, nil
}

// reorder rewrites the object at c.out[objStart:] with its members, the ones
// from c.members[base:], sorted by decoded key as Python sorts str (code
// point order, which is the byte order of their WTF-8 form); of equal keys
// only the last one stays, as in a dict.
func (c *Canonicalizer) reorder(objStart, base int) {
	ms := c.members[base:]
	keys := c.keys
	key := func(m *member) []byte { return keys[m.keyStart:m.keyEnd] }
	if len(ms) <= 16 {
		// Insertion sort: typical objects are small, and it is stable
		// without a tie-break.
		for i := 1; i < len(ms); i++ {
			for j := i; j > 0 && bytes.Compare(key(&ms[j]), key(&ms[j-1])) < 0; j-- {
				ms[j], ms[j-1] = ms[j-1], ms[j]
			}
		}
	} else {
		slices.SortFunc(ms, func(a, b member) int {
			if r := bytes.Compare(key(&a), key(&b)); r != 0 {
				return r
			}
			return cmp.Compare(a.start, b.start) // input order among duplicates
		})
	}
	c.scratch = append(c.scratch[:0], c.out[objStart:]...)
	w := c.out[:objStart+1] // keeps the '{'; output only shrinks
	for i, m := range ms {
		if i+1 < len(ms) && bytes.Equal(key(&m), key(&ms[i+1])) {
			c.dropped = true
			continue // a later duplicate wins
		}
		if len(w) > objStart+1 {
			w = append(w, ',')
		}
		w = append(w, c.scratch[m.start-objStart:m.end-objStart]...)
	}
	c.out = append(w, '}')
}

// str canonicalizes the string whose opening quote is at src[p-1]. For a
// key it also appends the decoded key to c.keys: escapes resolved, an
// escaped surrogate pair combined into one code point, raw and lone
// surrogates kept as they are.
func (c *Canonicalizer) str(p int, key bool) (int, error) {
	src := c.src
	out := append(c.out, '"')
	keys := c.keys
	for {
		start := p
		for p < len(src) && plain[src[p]] {
			p++
		}
		if p > start {
			out = append(out, src[start:p]...)
			if key {
				keys = append(keys, src[start:p]...)
			}
		}
		if p >= len(src) {
			return p, c.errAt(p, "unterminated string")
		}
		switch b := src[p]; {
		case b == '"':
			c.out, c.keys = append(out, '"'), keys
			return p + 1, nil
		case b == '\\':
			if p+1 >= len(src) {
				return p, c.errAt(p, "unterminated string")
			}
			var r rune
			switch src[p+1] {
			case '"', '\\', '/':
				r = rune(src[p+1])
			case 'b':
				r = '\b'
			case 'f':
				r = '\f'
			case 'n':
				r = '\n'
			case 'r':
				r = '\r'
			case 't':
				r = '\t'
			case 'u':
				var ok bool
				if r, ok = hex4(src, p+2); !ok {
					return p, c.errAt(p, "invalid \\u escape")
				}
				p += 6
				// CPython joins a high surrogate escape with a low one
				// right after it; anything else stays a lone surrogate.
				if isHighSurrogate(r) && p+1 < len(src) && src[p] == '\\' && src[p+1] == 'u' {
					r2, ok := hex4(src, p+2)
					if !ok {
						return p, c.errAt(p, "invalid \\u escape")
					}
					if isLowSurrogate(r2) {
						r = combineSurrogates(r, r2)
						p += 6
					}
				}
				out = appendEscapedRune(out, r)
				if key {
					if r < 0x80 {
						keys = append(keys, byte(r))
					} else {
						keys = appendWTF8(keys, r)
					}
				}
				continue
			default:
				return p, c.errAt(p, "invalid escape")
			}
			out = appendEscapedRune(out, r)
			if key {
				keys = append(keys, byte(r))
			}
			p += 2
		case b < 0x20:
			return p, c.errAt(p, "control character in string")
		case b == 0x7F:
			out = append(out, `\u007f`...)
			if key {
				keys = append(keys, b)
			}
			p++
		default:
			r, size := decodeWTF8(src[p:])
			if size == 0 {
				return p, c.errAt(p, "invalid UTF-8")
			}
			out = appendEscapedRune(out, r)
			if key {
				keys = append(keys, src[p:p+size]...)
			}
			p += size
		}
	}
}

// hex4 decodes the four hex digits (either case) at src[p:].
func hex4(src []byte, p int) (rune, bool) {
	if len(src)-p < 4 {
		return 0, false
	}
	var r rune
	for _, b := range src[p : p+4] {
		switch {
		case b >= '0' && b <= '9':
			b -= '0'
		case b >= 'a' && b <= 'f':
			b -= 'a' - 10
		case b >= 'A' && b <= 'F':
			b -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(b)
	}
	return r, true
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? as CPython's
// scanner does: a '.' or an exponent without digits after it is not part of
// the number (and then fails as trailing data). Without fraction or
// exponent the number is a Python int, written back exactly; otherwise it is
// a float, written as Python's repr of the nearest float64.
func (c *Canonicalizer) number(p int) (int, error) {
	src := c.src
	start := p
	if src[p] == '-' {
		p++
	}
	switch {
	case p < len(src) && src[p] == '0':
		p++
	case p < len(src) && src[p] >= '1' && src[p] <= '9':
		p++
		for p < len(src) && isDigit(src[p]) {
			p++
		}
	default:
		return start, c.errAt(start, "invalid number")
	}
	intEnd := p
	// strconv.ParseFloat misplaces the decimal point when more than 800
	// digits come before it (its big-decimal fallback stops counting them),
	// e.g. "9007199254740993<900 zeros>e-900"; the slow path puts the point
	// first.
	slow := intEnd-start > 400
	isFloat := false
	if p+1 < len(src) && src[p] == '.' && isDigit(src[p+1]) {
		isFloat = true
		p += 2
		for p < len(src) && isDigit(src[p]) {
			p++
		}
	}
	if p < len(src) && (src[p] == 'e' || src[p] == 'E') {
		q := p + 1
		if q < len(src) && (src[q] == '+' || src[q] == '-') {
			q++
		}
		if q < len(src) && isDigit(src[q]) {
			isFloat = true
			for q < len(src) && src[q] == '0' {
				q++
			}
			digits := q
			for q < len(src) && isDigit(src[q]) {
				q++
			}
			// strconv caps exponents near 10000, CPython does not (think
			// "0.<20000 zeros>1e20001"): such numbers take the slow path.
			slow = slow || q-digits > 4
			p = q
		}
	}
	tok := src[start:p]
	if !isFloat {
		digits := intEnd - start
		if src[start] == '-' {
			digits--
		}
		if limit := c.intDigits(); digits > limit {
			return start, c.errAt(start, "integer has more than "+strconv.Itoa(limit)+" digits")
		}
		if len(tok) == 2 && tok[0] == '-' && tok[1] == '0' {
			tok = tok[1:] // Python has no negative integer zero
		}
		c.out = append(c.out, tok...)
		return p, nil
	}
	if tinyFloat(tok) {
		if c.tiny++; c.tiny > c.tinyFloats() {
			return start, c.errAt(start, "more than "+strconv.Itoa(c.tinyFloats())+" floats below 1e-307 (each costs a slow exact parse)")
		}
	}
	var f float64
	if slow {
		f = c.parseSlow(tok)
	} else {
		f = parseFloat(tok)
	}
	if math.IsInf(f, 0) {
		c.nonFinite = true
	}
	c.out = appendPyFloat(c.out, f)
	return p, nil
}

// tinyFloat reports whether the float literal tok (as number scanned it)
// is nonzero and below 1e-307 in magnitude: where strconv.ParseFloat
// leaves its fast path for a big-decimal computation, the subnormals
// (below 2.2250738585072014e-308) and a little above.
func tinyFloat(tok []byte) bool {
	i := 0
	if tok[0] == '-' {
		i++
	}
	intDigits, n, first := 0, 0, -1
	inFraction := false
	for ; i < len(tok); i++ {
		ch := tok[i]
		if ch == '.' {
			inFraction = true
			continue
		}
		if ch == 'e' || ch == 'E' {
			break
		}
		if !inFraction {
			intDigits++
		}
		if ch != '0' && first < 0 {
			first = n
		}
		n++
	}
	if first < 0 {
		return false // zero
	}
	exp := 0
	if i < len(tok) {
		i++ // the e
		neg := tok[i] == '-'
		if tok[i] == '-' || tok[i] == '+' {
			i++
		}
		const limit = 1 << 30 // far outside float64's range: saturate
		for ; i < len(tok) && exp < limit; i++ {
			exp = exp*10 + int(tok[i]-'0')
		}
		if neg {
			exp = -exp
		}
	}
	// The decimal exponent of the first significant digit.
	return intDigits-1-first+exp < -307
}

// parseFloat returns the float64 nearest to the JSON number tok, as
// CPython's float() does: strconv.ParseFloat rounds correctly too, and its
// only possible error here is the range error, which comes with ±Inf or ±0
// as Python has them.
func parseFloat(tok []byte) float64 {
	// tok is only read during the call: no need to copy it into a string.
	f, _ := strconv.ParseFloat(unsafe.String(unsafe.SliceData(tok), len(tok)), 64)
	return f
}

// parseSlow handles a float whose exponent has more than four digits or
// whose integer part is long. It rewrites the number as 0.DIGITS e DECPT,
// the decimal point position computed exactly (saturated far outside the
// float64 range), which strconv reads correctly at any length, and which
// gives CPython's answer even when huge runs of zeros compensate an extreme
// exponent.
func (c *Canonicalizer) parseSlow(tok []byte) float64 {
	neg := tok[0] == '-'
	if neg {
		tok = tok[1:]
	}
	mant, exp := tok, []byte(nil)
	if e := bytes.IndexAny(tok, "eE"); e >= 0 {
		mant, exp = tok[:e], tok[e+1:]
	}
	expNeg := len(exp) > 0 && exp[0] == '-'
	if len(exp) > 0 && (exp[0] == '-' || exp[0] == '+') {
		exp = exp[1:]
	}
	const limit = 1 << 40 // beyond any body's digit count
	var x int64
	for _, d := range exp {
		if x = x*10 + int64(d-'0'); x > limit {
			x = limit
			break
		}
	}
	if expNeg {
		x = -x
	}
	intDigits := bytes.IndexByte(mant, '.')
	if intDigits < 0 {
		intDigits = len(mant)
	}
	// mant is 0.ALL × 10^intDigits with ALL its digits; every leading zero
	// of ALL moves the point one place left.
	b := append(c.scratch[:0], '0', '.')
	decpt := int64(intDigits)
	for _, d := range mant {
		switch {
		case d == '.':
		case d == '0' && len(b) == 2:
			decpt--
		default:
			b = append(b, d)
		}
	}
	decpt += x
	var f float64
	switch {
	case len(b) == 2:
		f = 0
	case decpt > 400:
		f = math.Inf(1)
	case decpt < -400:
		f = 0
	default:
		// The exponent is now small, and strconv reads any number of
		// digits exactly.
		b = append(b, 'e')
		b = strconv.AppendInt(b, decpt, 10)
		f = parseFloat(b)
	}
	c.scratch = b
	if neg {
		f = -f
	}
	return f
}

// appendPyFloat appends Python's repr of f as the json encoder writes it:
// NaN and the infinities as the JavaScript literals, otherwise the shortest
// digits that round-trip, in fixed notation when the decimal point position
// decpt (f = 0.DIGITS × 10^decpt) is in -4 < decpt <= 16 — with ".0" for an
// integral value — and in exponential notation (1e+16, 2.5e-07) beyond.
func appendPyFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	case f == 0:
		if math.Signbit(f) {
			return append(dst, "-0.0"...)
		}
		return append(dst, "0.0"...)
	}
	// Go's shortest round-trip digits are the digits of Python's repr
	// (both pick the closest shortest string), and its 'e' format with a
	// signed, at least two-digit exponent is Python's exponential form.
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	if e[0] == '-' {
		dst = append(dst, '-')
		e = e[1:]
	}
	ei := bytes.IndexByte(e, 'e')
	exp := 0
	for _, d := range e[ei+2:] {
		exp = exp*10 + int(d-'0')
	}
	if e[ei+1] == '-' {
		exp = -exp
	}
	decpt := exp + 1
	if decpt <= -4 || decpt > 16 {
		return append(dst, e...)
	}
	var digs [17]byte
	digits := append(append(digs[:0], e[0]), e[min(2, ei):ei]...)
	switch {
	case decpt <= 0:
		dst = append(dst, '0', '.')
		for range -decpt {
			dst = append(dst, '0')
		}
		return append(dst, digits...)
	case decpt >= len(digits):
		dst = append(dst, digits...)
		for range decpt - len(digits) {
			dst = append(dst, '0')
		}
		return append(dst, '.', '0')
	}
	dst = append(dst, digits[:decpt]...)
	dst = append(dst, '.')
	return append(dst, digits[decpt:]...)
}

// The helpers below work on canonical JSON, trusted to come from
// Canonicalize: compact and ASCII. On anything else they stop early rather
// than panic.

// skipString returns the offset after the string token starting at b[p]
// (a '"'), or -1 if it is not terminated.
func skipString(b []byte, p int) int {
	for p++; p < len(b); p++ {
		switch b[p] {
		case '\\':
			p++
		case '"':
			return p + 1
		}
	}
	return -1
}

// skipValue returns the offset after the canonical value starting at b[p],
// or -1 if it is malformed.
func skipValue(b []byte, p int) int {
	if p >= len(b) {
		return -1
	}
	switch b[p] {
	case '"':
		return skipString(b, p)
	case '{', '[':
		depth := 0
		for p < len(b) {
			switch b[p] {
			case '"':
				if p = skipString(b, p); p < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return p + 1
				}
			}
			p++
		}
		return -1
	}
	start := p
	for p < len(b) && b[p] != ',' && b[p] != '}' && b[p] != ']' {
		p++
	}
	if p == start {
		return -1
	}
	return p
}

// hasNonFinite reports whether canonical has a NaN or infinity token: out of
// strings, only those have an 'N' or an 'I'.
func hasNonFinite(canonical []byte) bool {
	for i := 0; i < len(canonical); {
		switch canonical[i] {
		case '"':
			if i = skipString(canonical, i); i < 0 {
				return false
			}
			continue
		case 'N', 'I':
			return true
		}
		i++
	}
	return false
}

// ObjectMembers iterates over the members of a canonical JSON object, in
// its (sorted) order. key is the raw string contents between the quotes,
// still escaped; value is the raw canonical value. Both alias obj (with
// their capacity capped, so appending to them cannot overwrite it). It
// yields nothing if obj is not an object.
func ObjectMembers(obj []byte) iter.Seq2[[]byte, []byte] {
	return func(yield func(key, value []byte) bool) {
		if len(obj) < 2 || obj[0] != '{' {
			return
		}
		p := 1
		for p < len(obj) && obj[p] == '"' {
			kEnd := skipString(obj, p)
			if kEnd < 0 || kEnd >= len(obj) || obj[kEnd] != ':' {
				return
			}
			vStart := kEnd + 1
			vEnd := skipValue(obj, vStart)
			if vEnd < 0 {
				return
			}
			if !yield(obj[p+1:kEnd-1:kEnd-1], obj[vStart:vEnd:vEnd]) {
				return
			}
			if p = vEnd; p >= len(obj) || obj[p] != ',' {
				return
			}
			p++
		}
	}
}

// ArrayElements iterates over the elements of a canonical JSON array, in
// order; each aliases arr, with its capacity capped. It yields nothing if
// arr is not an array.
func ArrayElements(arr []byte) iter.Seq[[]byte] {
	return func(yield func(elem []byte) bool) {
		if len(arr) < 2 || arr[0] != '[' || arr[1] == ']' {
			return
		}
		p := 1
		for p < len(arr) {
			end := skipValue(arr, p)
			if end < 0 {
				return
			}
			if !yield(arr[p:end:end]) {
				return
			}
			if p = end; p >= len(arr) || arr[p] != ',' {
				return
			}
			p++
		}
	}
}

// Unquote decodes a canonical JSON string token, quotes included, to a Go
// string. An escaped surrogate pair becomes its code point; a lone surrogate
// (which a Python str can hold but UTF-8 cannot) becomes U+FFFD. ok is false
// if v is not one string token.
func Unquote(v []byte) (s string, ok bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	in := v[1 : len(v)-1]
	i := 0
	for i < len(in) && in[i] != '\\' && in[i] != '"' {
		i++
	}
	if i == len(in) {
		return string(in), true
	}
	b := make([]byte, i, len(in))
	copy(b, in)
	for i < len(in) {
		ch := in[i]
		if ch == '"' {
			return "", false
		}
		if ch != '\\' {
			b = append(b, ch)
			i++
			continue
		}
		if i+1 >= len(in) {
			return "", false
		}
		switch in[i+1] {
		case '"', '\\', '/':
			b = append(b, in[i+1])
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := hex4(in, i+2)
			if !ok {
				return "", false
			}
			i += 6
			if isHighSurrogate(r) && i+1 < len(in) && in[i] == '\\' && in[i+1] == 'u' {
				if r2, ok := hex4(in, i+2); ok && isLowSurrogate(r2) {
					r = combineSurrogates(r, r2)
					i += 6
				}
			}
			b = utf8.AppendRune(b, r) // a lone surrogate becomes U+FFFD
			continue
		default:
			return "", false
		}
		i += 2
	}
	return string(b), true
}

// AppendJSONSafe appends canonical to dst with every NaN, Infinity and
// -Infinity number token replaced by the JSON string "NaN", "Infinity" or
// "-Infinity", so that standard JSON decoders accept it. String contents are
// left alone.
func AppendJSONSafe(dst, canonical []byte) []byte {
	b := canonical
	start := 0
	for i := 0; i < len(b); {
		var lit string
		switch b[i] {
		case '"':
			if i = skipString(b, i); i < 0 {
				i = len(b)
			}
			continue
		case 'N':
			lit = "NaN"
		case 'I':
			lit = "Infinity"
		case '-':
			lit = "-Infinity"
		default:
			i++
			continue
		}
		if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
			i++
			continue
		}
		dst = append(dst, b[start:i]...)
		dst = append(dst, '"')
		dst = append(dst, lit...)
		dst = append(dst, '"')
		i += len(lit)
		start = i
	}
	return append(dst, b[start:]...)
}

// AppendQuote appends s to dst as a JSON string in the same ensure_ascii
// style as the canonical form. Bytes of s that are not valid UTF-8 become
// \ufffd.
func AppendQuote(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		start := i
		for i < len(s) && plain[s[i]] {
			i++
		}
		dst = append(dst, s[start:i]...)
		if i >= len(s) {
			break
		}
		if s[i] < utf8.RuneSelf {
			dst = appendEscapedRune(dst, rune(s[i]))
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		dst = appendEscapedRune(dst, r) // RuneError for invalid UTF-8
		i += size
	}
	return append(dst, '"')
}

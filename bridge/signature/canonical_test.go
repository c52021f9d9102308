package signature

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

func canonicalize(t testing.TB, body string) (Canonical, error) {
	t.Helper()
	var cz Canonicalizer
	return cz.Canonicalize([]byte(body))
}

// TestCanonicalize pins single rules; the vectors (verify_test.go) check
// the same rules against CPython's own output.
func TestCanonicalize(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		// Structure and whitespace.
		{"sorted keys", `{"b":1,"a":2,"c":3}`, `{"a":2,"b":1,"c":3}`},
		{"whitespace", " \t\r\n{ \"a\" :\n[ 1 ,\t2 ] , \"b\" : { } }\r\n", `{"a":[1,2],"b":{}}`},
		{"empty containers", `[{},[],{"a":[]}]`, `[{},[],{"a":[]}]`},
		{"literals", `[true,false,null]`, `[true,false,null]`},
		{"top-level string", `"x"`, `"x"`},
		{"top-level number", ` 7 `, `7`},
		{"nested sort", `{"z":{"y":1,"x":2},"a":[{"d":1,"c":2}]}`, `{"a":[{"c":2,"d":1}],"z":{"x":2,"y":1}}`},

		// Duplicates: the last value wins, compared on the decoded key.
		{"duplicate last wins", `{"status":"started","task_id":"t","status":"finished"}`, `{"status":"finished","task_id":"t"}`},
		{"duplicate adjacent", `{"a":1,"a":2}`, `{"a":2}`},
		{"duplicate three", `{"a":1,"b":0,"a":2,"a":3}`, `{"a":3,"b":0}`},
		{"duplicate escaped and raw", `{"é":1,"\u00e9":2}`, `{"\u00e9":2}`},
		{"duplicate raw after escaped", `{"\u0061":1,"a":2}`, `{"a":2}`},
		{"duplicate solidus", `{"a\/b":1,"a/b":2}`, `{"a/b":2}`},
		{"duplicate non-BMP", `{"\ud83c\udf89":1,"🎉":2}`, `{"\ud83c\udf89":2}`},
		{"duplicate nested objects", `{"o":{"x":1,"x":2},"o":{"y":3,"y":4}}`, `{"o":{"y":4}}`},

		// Key order is code point order of the decoded key.
		{"order ascii", `{"b":1,"B":2,"a":3,"":4,"aa":5,"~":6}`, `{"":4,"B":2,"a":3,"aa":5,"b":1,"~":6}`},
		{"order escapes", `{"A":1,"\n":2,"\\":3,"\"":4}`, `{"\n":2,"\"":4,"A":1,"\\":3}`},
		{"order non-ASCII", `{"🎉":1,"\ue000":2,"é":3,"z":4,"\u007f":5}`, `{"z":4,"\u007f":5,"\u00e9":3,"\ue000":2,"\ud83c\udf89":1}`},
		// A raw (UTF-8 encoded) surrogate pair is two code points, U+D800
		// U+DC00, not U+10000: it sorts before U+E000, and is another key
		// than the escaped pair, although both are written the same way.
		{"order raw surrogates", "{\"\ue000\":1,\"\xed\xa0\x80\xed\xb0\x80\":2,\"\\ud800\\udc00\":3}", `{"\ud800\udc00":2,"\ue000":1,"\ud800\udc00":3}`},
		{"escaped high, raw low", "{\"\\ud800\xed\xb0\x80\":1,\"\xed\xa0\x80\xed\xb0\x80\":2}", `{"\ud800\udc00":2}`},

		// Strings: ensure_ascii output.
		{"short escapes", `"\" \\ \/ \b \f \n \r \t"`, `"\" \\ / \b \f \n \r \t"`},
		{"control escapes", `"\u0000\u0001\u001f\u001F"`, `"\u0000\u0001\u001f\u001f"`},
		{"u escapes of short forms", `"\u0022\u005c\u002f\u0008\u000a\u0041"`, `"\"\\/\b\nA"`},
		{"DEL", "\"\x7f\\u007F\"", `"\u007f\u007f"`},
		{"not escaped", `"/ < > & '"`, `"/ < > & '"`},
		{"non-ASCII", `"héllo ✓ 日本"`, `"h\u00e9llo \u2713 \u65e5\u672c"`},
		{"line separators", "\"a\u2028b\u2029c\"", `"a\u2028b\u2029c"`},
		{"non-BMP", "\"🎉 \U0010FFFF\"", `"\ud83c\udf89 \udbff\udfff"`},
		{"max code point", "\"\xf4\x8f\xbf\xbf\"", `"\udbff\udfff"`},
		{"escaped pair", `"\uD83C\uDF89"`, `"\ud83c\udf89"`},
		{"lone high", `"x\ud800y"`, `"x\ud800y"`},
		{"lone low", `"\udc00"`, `"\udc00"`},
		{"reversed pair", `"\udc00\ud800"`, `"\udc00\ud800"`},
		{"high high low", `"\ud800\ud800\udc00"`, `"\ud800\ud800\udc00"`},
		{"high then other escape", `"\ud800\n"`, `"\ud800\n"`},
		{"raw lone surrogate", "\"\xed\xa0\x80\"", `"\ud800"`},
		{"raw pair", "\"\xed\xa0\x80\xed\xb0\x80\"", `"\ud800\udc00"`},

		// Integers: exact, "-0" is 0.
		{"zero", `0`, `0`},
		{"negative zero int", `-0`, `0`},
		{"big ints", `[18446744073709551617,-9223372036854775809]`, `[18446744073709551617,-9223372036854775809]`},

		// Floats: Python's repr.
		{"float 1.0", `1.0`, `1.0`},
		{"float trailing zeros", `1.50`, `1.5`},
		{"float exponent only", `1e5`, `100000.0`},
		{"float capital E", `1E5`, `100000.0`},
		{"float exponent sign", `1e+2`, `100.0`},
		{"float small", `2.5E-7`, `2.5e-07`},
		{"float negative zero", `-0.0`, `-0.0`},
		{"float zero exponent", `0e10`, `0.0`},
		{"float 0.1", `0.1`, `0.1`},
		{"float 1e15", `1e15`, `1000000000000000.0`},
		{"float 1e16", `1e16`, `1e+16`},
		{"float 9999999999999998", `9999999999999998.0`, `9999999999999998.0`},
		{"float rounds to 1e16", `9999999999999999.0`, `1e+16`},
		{"float 0.0001", `0.0001`, `0.0001`},
		{"float 0.00001", `0.00001`, `1e-05`},
		{"float 0.00012345", `0.00012345`, `0.00012345`},
		{"float 17 digits", `123456789012345678.0`, `1.2345678901234568e+17`},
		{"float 123456.789", `123456.789`, `123456.789`},
		{"float min subnormal", `5e-324`, `5e-324`},
		{"float below half min subnormal", `2.4703282292062327e-324`, `0.0`},
		{"float above half min subnormal", `2.4703282292062328e-324`, `5e-324`},
		{"float max", `1.7976931348623157e308`, `1.7976931348623157e+308`},
		{"float overflow", `1e400`, `Infinity`},
		{"float negative overflow", `-1e400`, `-Infinity`},
		{"float underflow", `1e-400`, `0.0`},
		{"float negative underflow", `-1e-400`, `-0.0`},
		{"float 1e22", `1e22`, `1e+22`},
		{"float 0.1+0.2", `0.30000000000000004`, `0.30000000000000004`},
		{"float long mantissa", `3.14159265358979323846264338327950288`, `3.141592653589793`},
		{"float huge exponent", `1e99999999999999999999`, `Infinity`},
		{"float huge negative exponent", `-1e-99999999999999999999`, `-0.0`},
		{"float zero huge exponent", `0e99999999999`, `0.0`},
		{"float zeros compensate exponent", "0." + strings.Repeat("0", 20000) + "1e20001", `1.0`},
		{"float digits compensate exponent", "1" + strings.Repeat("0", 20000) + "e-20000", `1.0`},
		// strconv alone gets this one wrong (more than 800 digits before
		// the point); it is halfway between two floats and rounds to even.
		{"float long integer part", "9007199254740993" + strings.Repeat("0", 900) + "e-900", `9007199254740992.0`},
		{"float long integer part above half", "9007199254740993" + strings.Repeat("0", 900) + "1e-901", `9007199254740994.0`},
		{"float many digits", "1" + strings.Repeat("1", 5000) + ".0", `Infinity`},

		// CPython's extra literals.
		{"NaN and infinities", `[NaN,Infinity,-Infinity]`, `[NaN,Infinity,-Infinity]`},

		// Encodings (json.detect_encoding).
		{"UTF-8 BOM", "\xef\xbb\xbf{\"a\":1}", `{"a":1}`},
		{"UTF-16 LE", "{\x00\"\x00a\x00\"\x00:\x001\x00}\x00", `{"a":1}`},
		{"UTF-16 BE with BOM", "\xfe\xff\x00[\x00\"\x00\xe9\x00\"\x00]", `["\u00e9"]`},
		{"UTF-16 LE pair", "\"\x00\x3c\xd8\x89\xdf\"\x00", `"\ud83c\udf89"`},
		{"UTF-16 LE lone surrogate", "\"\x00\x00\xd8\"\x00", `"\ud800"`},
		{"UTF-32 LE with BOM", "\xff\xfe\x00\x00[\x00\x00\x001\x00\x00\x00]\x00\x00\x00", `[1]`},
		{"UTF-32 BE", "\x00\x00\x00[\x00\x00\x00\x32\x00\x00\x00]", `[2]`},
		{"UTF-32 surrogates stay apart", "{\x00\x00\x00\"\x00\x00\x00\x00\xd8\x00\x00\x00\xdc\x00\x00\"\x00\x00\x00:\x00\x00\x001\x00\x00\x00,\x00\x00\x00\"\x00\x00\x00\x00\xe0\x00\x00\"\x00\x00\x00:\x00\x00\x002\x00\x00\x00}\x00\x00\x00", `{"\ud800\udc00":1,"\ue000":2}`},
		{"two bytes UTF-16 LE", "1\x00", `1`},
		{"two bytes UTF-16 BE", "\x001", `1`},
		{"UTF-32 LE detected", "1\x00\x00\x00", `1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := canonicalize(t, tc.in)
			if err != nil {
				t.Fatalf("Canonicalize(%.60q): %v", tc.in, err)
			}
			if string(c.JSON) != tc.want {
				t.Errorf("Canonicalize(%.60q)\n got %.200s\nwant %.200s", tc.in, c.JSON, tc.want)
			}
		})
	}
}

func TestCanonicalizeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string // want: the whole Error() text
	}{
		{"empty", ``, "invalid JSON at byte 0: unexpected end of input"},
		{"only whitespace", " \n", "invalid JSON at byte 2: unexpected end of input"},
		{"trailing data", `{"a":1} x`, "invalid JSON at byte 8: trailing data after the value"},
		{"two values", `1 2`, "invalid JSON at byte 2: trailing data after the value"},
		{"trailing comma in object", `{"a":1,}`, "invalid JSON at byte 7: expected a string key"},
		{"trailing comma in array", `[1,]`, "invalid JSON at byte 3: unexpected character"},
		{"missing comma", `[1 2]`, "invalid JSON at byte 3: expected ',' or ']'"},
		{"missing comma in object", `{"a":1 "b":2}`, "invalid JSON at byte 7: expected ',' or '}'"},
		{"missing colon", `{"a" 1}`, "invalid JSON at byte 5: expected ':' after an object key"},
		{"single quotes", `{'a':1}`, "invalid JSON at byte 1: expected a string key"},
		{"leading zero", `01`, "invalid JSON at byte 1: trailing data after the value"},
		{"dot without digits", `1.`, "invalid JSON at byte 1: trailing data after the value"},
		{"leading dot", `.5`, "invalid JSON at byte 0: unexpected character"},
		{"minus alone", `-`, "invalid JSON at byte 0: invalid number"},
		{"minus letter", `-x`, "invalid JSON at byte 0: invalid number"},
		{"plus", `+1`, "invalid JSON at byte 0: unexpected character"},
		{"exponent without digits", `[1e]`, "invalid JSON at byte 2: expected ',' or ']'"},
		{"exponent sign without digits", `1e+`, "invalid JSON at byte 1: trailing data after the value"},
		{"negative NaN", `-NaN`, "invalid JSON at byte 0: invalid number"},
		{"lowercase nan", `nan`, "invalid JSON at byte 0: unexpected character"},
		{"truncated literal", `tru`, "invalid JSON at byte 0: unexpected character"},
		{"Infinity typo", `-Infinty`, "invalid JSON at byte 0: unexpected character"},
		{"bad escape", `"\x"`, "invalid JSON at byte 1: invalid escape"},
		{"short u escape", `"\u12"`, "invalid JSON at byte 1: invalid \\u escape"},
		{"bad second u escape", `"\ud800\u12G4"`, "invalid JSON at byte 7: invalid \\u escape"},
		{"raw newline", "\"a\nb\"", "invalid JSON at byte 2: control character in string"},
		{"raw NUL", "\"\x00\"", "invalid JSON at byte 1: control character in string"},
		{"unterminated string", `{"a":"b`, "invalid JSON at byte 7: unterminated string"},
		{"unterminated escape", `"\`, "invalid JSON at byte 1: unterminated string"},
		{"unterminated object", `{"a":1`, "invalid JSON at byte 6: unexpected end of input"},
		{"unterminated array", `[1,[2]`, "invalid JSON at byte 6: unexpected end of input"},
		{"invalid UTF-8", "\"\xff\"", "invalid JSON at byte 1: invalid UTF-8"},
		{"overlong UTF-8", "\"\xc0\xaf\"", "invalid JSON at byte 1: invalid UTF-8"},
		{"overlong 3-byte", "\"\xe0\x80\xaf\"", "invalid JSON at byte 1: invalid UTF-8"},
		{"beyond U+10FFFF", "\"\xf4\x90\x80\x80\"", "invalid JSON at byte 1: invalid UTF-8"},
		{"truncated UTF-8", "\"\xe2\x82\"", "invalid JSON at byte 1: invalid UTF-8"},
		{"truncated surrogate", "\"\xed\xa0\"", "invalid JSON at byte 1: invalid UTF-8"},
		{"non-ASCII outside strings", "[1]\xc3\xa9", "invalid JSON at byte 3: trailing data after the value"},
		{"non-breaking space", "\xc2\xa0[]", "invalid JSON at byte 0: unexpected character"},
		{"form feed", "[]\f", "invalid JSON at byte 2: trailing data after the value"},
		{"offset after BOM", "\xef\xbb\xbf[1,]", "invalid JSON at byte 6: unexpected character"},
		{"two BOMs", "\xef\xbb\xbf\xef\xbb\xbf1", "invalid JSON at byte 3: unexpected character"},
		{"odd UTF-16", "1\x00x\x00y", "invalid JSON at byte 4: truncated UTF-16"},
		{"three bytes are UTF-8", "1\x00x", "invalid JSON at byte 1: trailing data after the value"},
		{"UTF-16 BOM only", "\xff\xfe", "invalid JSON at byte 0: unexpected end of input"},
		{"truncated UTF-32", "\x00\x00\x00\x001", "invalid JSON at byte 4: truncated UTF-32"},
		{"UTF-32 beyond U+10FFFF", "\xff\xfe\x00\x00\x00\x00\x11\x00", "invalid JSON at byte 4: invalid UTF-32"},
		{"odd UTF-16 after BOM", "\xfe\xff\x001\x00", "invalid JSON at byte 4: truncated UTF-16"},
		{"key not a string", `{1:1}`, "invalid JSON at byte 1: expected a string key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := canonicalize(t, tc.in)
			if err == nil {
				t.Fatalf("Canonicalize(%q) = %q, want an error", tc.in, c.JSON)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %T is not a *SyntaxError", err)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %q\nwant %q", err, tc.want)
			}
		})
	}
}

func TestControlCharacters(t *testing.T) {
	short := map[byte]string{'\b': `\b`, '\f': `\f`, '\n': `\n`, '\r': `\r`, '\t': `\t`}
	for c := byte(0); c < 0x20; c++ {
		want, ok := short[c]
		if !ok {
			want = fmt.Sprintf(`\u%04x`, c)
		}
		got, err := canonicalize(t, fmt.Sprintf(`"\u%04X"`, c))
		if err != nil || string(got.JSON) != `"`+want+`"` {
			t.Errorf("escaped %#x: got %q, %v; want %q", c, got.JSON, err, want)
		}
		if _, err := canonicalize(t, `"`+string(rune(c))+`"`); err == nil {
			t.Errorf("raw %#x accepted", c)
		}
	}
}

func nested(open, close string, n int) string {
	return strings.Repeat(open, n) + strings.Repeat(close, n)
}

func TestDepthLimit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxDepth int
		in       string
		wantErr  string
	}{
		{"arrays at default limit", 0, nested("[", "]", 128), ""},
		{"arrays beyond default limit", 0, nested("[", "]", 129), "invalid JSON at byte 128: nesting deeper than 128 levels"},
		{"objects at default limit", 0, strings.Repeat(`{"a":`, 127) + "{}" + strings.Repeat("}", 127), ""},
		{"objects beyond default limit", 0, strings.Repeat(`{"a":`, 129) + "0" + strings.Repeat("}", 129), "nesting deeper than 128 levels"},
		{"mixed at limit", 0, strings.Repeat(`[{"a":`, 64) + "0" + strings.Repeat("}]", 64), ""},
		{"mixed beyond limit", 0, strings.Repeat(`[{"a":`, 64) + "[]" + strings.Repeat("}]", 64), "nesting deeper than 128 levels"},
		{"negative means default", -1, nested("[", "]", 128), ""},
		{"custom limit", 2, `[[1],{"a":1}]`, ""},
		{"beyond custom limit", 2, `[[1],{"a":[]}]`, "invalid JSON at byte 10: nesting deeper than 2 levels"},
		{"scalar needs no depth", 1, `"x"`, ""},
		{"siblings do not add up", 2, "[" + strings.Repeat("[],", 300) + "[]]", ""},
		{"high limit", 2000, nested("[", "]", 1500), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cz := Canonicalizer{MaxDepth: tc.maxDepth}
			c, err := cz.Canonicalize([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if string(c.JSON) != strings.Join(strings.Fields(tc.in), "") {
					t.Errorf("got %.80s", c.JSON)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestIntDigits(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{strings.Repeat("9", MaxIntDigits), true},
		{"-" + strings.Repeat("9", MaxIntDigits), true},
		{strings.Repeat("9", MaxIntDigits+1), false},
		{"[-" + strings.Repeat("1", MaxIntDigits+1) + "]", false},
		// Only integers are limited: a float may have any number of digits.
		{strings.Repeat("9", MaxIntDigits+1) + ".0", true},
		{strings.Repeat("9", MaxIntDigits+1) + "e0", true},
	} {
		c, err := canonicalize(t, tc.in)
		if tc.ok != (err == nil) {
			t.Errorf("%d chars %.10s…: error %v, want ok=%v", len(tc.in), tc.in, err, tc.ok)
			continue
		}
		if err != nil {
			if want := "integer has more than 4300 digits"; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q, want %q", err, want)
			}
		} else if !strings.ContainsAny(tc.in, ".e") && string(c.JSON) != tc.in {
			t.Errorf("integer not kept exactly")
		}
	}
}

func TestCanonicalFlags(t *testing.T) {
	for _, tc := range []struct {
		in                string
		object, nonFinite bool
	}{
		{`{"a":1}`, true, false},
		{` {}`, true, false},
		{`[{"a":1}]`, false, false},
		{`"{"`, false, false},
		{`{"a":NaN}`, true, true},
		{`[1,[Infinity]]`, false, true},
		{`-Infinity`, false, true},
		{`[1e999]`, false, true},
		{`{"a":"NaN","Infinity":"-Infinity"}`, true, false},
		{`[1e308,-1e-999]`, false, false},
		// Found by FuzzCanonical: the only infinity is dropped with its key.
		{`{"7":1E700,"7":10}`, true, false},
		{`{"a":{"x":NaN,"x":1},"a":{"y":NaN}}`, true, true},
		{`{"a":NaN,"b":1,"b":2}`, true, true},
	} {
		c, err := canonicalize(t, tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if c.Object != tc.object || c.NonFinite != tc.nonFinite {
			t.Errorf("%s: Object=%v NonFinite=%v, want %v %v", tc.in, c.Object, c.NonFinite, tc.object, tc.nonFinite)
		}
	}
}

// TestCanonicalizerReuse runs one Canonicalizer over bodies that leave
// different state behind (errors deep inside objects, big outputs).
func TestCanonicalizerReuse(t *testing.T) {
	var cz Canonicalizer
	bodies := []string{
		`{"b":{"d":[1,{"z":1,"y":2}],"c":2},"a":1}`,
		`{"b":{"d":[1,{"z":1,"y":`, // fails deep inside
		`{"z":1,"y":NaN}`,
		strings.Repeat(`{"k":`, 100) + "1" + strings.Repeat("}", 100),
		`{"b":{"d":[1,{"z":1,"y":2}],"c":2},"a":1}`,
		"\xff\xfe{\x00}\x00",
		`[]`,
	}
	for round := range 2 {
		for _, body := range bodies {
			var fresh Canonicalizer
			want, wantErr := fresh.Canonicalize([]byte(body))
			got, err := cz.Canonicalize([]byte(body))
			if (err == nil) != (wantErr == nil) || !bytes.Equal(got.JSON, want.JSON) || got.NonFinite != want.NonFinite || got.Object != want.Object {
				t.Errorf("round %d, %.30q: reused %q %v, fresh %q %v", round, body, got.JSON, err, want.JSON, wantErr)
			}
		}
	}
}

var (
	body200 = sinktest.Delivery200
	body20K = sinktest.Delivery20K()
)

func TestCanonicalizeAllocs(t *testing.T) {
	for name, body := range map[string][]byte{"200B": body200, "20KB": body20K} {
		var cz Canonicalizer
		if _, err := cz.Canonicalize(body); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(50, func() { cz.Canonicalize(body) }); n != 0 {
			t.Errorf("%s: %v allocations per Canonicalize with warm buffers, want 0", name, n)
		}
	}
}

func TestObjectMembers(t *testing.T) {
	c, err := canonicalize(t, `{"type":"t","payload":{"x":"}\"{","y":[1,{"z":"]"}]},"n":-1.5e-07,"e":{},"s":"a\\\"","\u00e9":null}`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k, v := range ObjectMembers(c.JSON) {
		got = append(got, string(k)+"="+string(v))
	}
	want := []string{`e={}`, `n=-1.5e-07`, `payload={"x":"}\"{","y":[1,{"z":"]"}]}`, `s="a\\\""`, `type="t"`, `\u00e9=null`}
	if !slices.Equal(got, want) {
		t.Errorf("members\n got %q\nwant %q", got, want)
	}

	for k := range ObjectMembers(c.JSON) {
		k = append(k, "XXXX"...) // capacity is capped: no effect on the object
		_ = k
		break
	}
	if !bytes.Equal(c.JSON, []byte(`{"e":{},"n":-1.5e-07,"payload":{"x":"}\"{","y":[1,{"z":"]"}]},"s":"a\\\"","type":"t","\u00e9":null}`)) {
		t.Errorf("object changed: %s", c.JSON)
	}

	for _, notObject := range []string{``, `[]`, `"{"`, `{`, `1`} {
		for k, v := range ObjectMembers([]byte(notObject)) {
			t.Errorf("%q: yielded %q %q", notObject, k, v)
		}
	}
	n := 0
	for range ObjectMembers([]byte(`{}`)) {
		n++
	}
	for range ObjectMembers([]byte(`{"a":1,"b":2,"c":3}`)) {
		if n++; n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("break: %d iterations", n)
	}
	// Malformed input stops the iteration, without panicking.
	for _, bad := range []string{`{"a"`, `{"a":`, `{"a":1`, `{"a":"x`, `{"a":[1}`, `{"a":1,"b"}`, `{"a`} {
		for range ObjectMembers([]byte(bad)) {
		}
	}
}

func TestUnquote(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{`""`, "", true},
		{`"plain"`, "plain", true},
		{`"a\"b\\c\/d"`, `a"b\c/d`, true},
		{`"\b\f\n\r\t"`, "\b\f\n\r\t", true},
		{`"\u00e9\u2713"`, "é✓", true},
		{`"\ud83c\udf89"`, "🎉", true},
		{`"x\ud800y"`, "x\uFFFDy", true},
		{`"\udc00\ud800"`, "\uFFFD\uFFFD", true},
		{`"\ud800\u0041"`, "\uFFFDA", true},
		{`"\u007f"`, "\x7f", true},
		{`1`, "", false},
		{`"`, "", false},
		{`"a`, "", false},
		{`a"`, "", false},
		{`"a"b"`, "", false},
		{`"\x"`, "", false},
		{`"\u12"`, "", false},
		{`"\"`, "", false},
		{`null`, "", false},
	} {
		got, ok := Unquote([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("Unquote(%s) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestAppendJSONSafe(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`[NaN,Infinity,-Infinity,-1,1e+16]`, `["NaN","Infinity","-Infinity",-1,1e+16]`},
		{`{"I":"-Infinity NaN","N":NaN,"x":"\"NaN"}`, `{"I":"-Infinity NaN","N":"NaN","x":"\"NaN"}`},
		{`{"a":"\\","b":Infinity}`, `{"a":"\\","b":"Infinity"}`},
		{`NaN`, `"NaN"`},
		{`{"a":1}`, `{"a":1}`},
		{``, ``},
	} {
		got := AppendJSONSafe([]byte("prefix:"), []byte(tc.in))
		if string(got) != "prefix:"+tc.want {
			t.Errorf("AppendJSONSafe(%s) = %s, want %s", tc.in, got, tc.want)
		}
		if tc.in != "" && !json.Valid(got[len("prefix:"):]) {
			t.Errorf("AppendJSONSafe(%s) is not valid JSON", tc.in)
		}
	}
}

func TestAppendQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `""`},
		{"plain / < > & '", `"plain / < > & '"`},
		{"a\"b\\c", `"a\"b\\c"`},
		{"\b\f\n\r\t\x00\x1f\x7f", `"\b\f\n\r\t\u0000\u001f\u007f"`},
		{"héllo ✓", `"h\u00e9llo \u2713"`},
		{"🎉", `"\ud83c\udf89"`},
		{"bad \xff byte", `"bad \ufffd byte"`},
		{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},
	} {
		got := AppendQuote([]byte("x"), tc.in)
		if string(got) != "x"+tc.want {
			t.Errorf("AppendQuote(%q) = %s, want %s", tc.in, got[1:], tc.want)
		}
		// Its output is canonical already.
		c, err := canonicalize(t, tc.want)
		if err != nil || string(c.JSON) != tc.want {
			t.Errorf("Canonicalize(%s) = %s, %v", tc.want, c.JSON, err)
		}
		if s, ok := Unquote(got[1:]); ok && utf8Valid(tc.in) && s != tc.in {
			t.Errorf("Unquote(AppendQuote(%q)) = %q", tc.in, s)
		}
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// FuzzCanonical checks what must hold for any body: no panic; on success an
// ASCII result that is a fixed point and, without NaN or infinities, valid
// JSON for encoding/json.
func FuzzCanonical(f *testing.F) {
	for _, path := range []string{sinktest.SharedVectorsPath(f), extraVectors} {
		vs, _ := sinktest.Vectors(f, path)
		for _, v := range vs {
			f.Add(v.Body(f))
		}
	}
	f.Add(body200)
	var cz, again Canonicalizer
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := cz.Canonicalize(body)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %T is not a *SyntaxError", err)
			}
			return
		}
		if !isASCII(c.JSON) {
			t.Fatalf("not ASCII: %q", c.JSON)
		}
		if c.Object != (c.JSON[0] == '{') {
			t.Fatalf("Object = %v for %q", c.Object, c.JSON)
		}
		if !c.NonFinite && !json.Valid(c.JSON) {
			t.Fatalf("not valid JSON: %q", c.JSON)
		}
		if c.NonFinite && !json.Valid(AppendJSONSafe(nil, c.JSON)) {
			t.Fatalf("AppendJSONSafe not valid JSON: %q", c.JSON)
		}
		c2, err := again.Canonicalize(c.JSON)
		if err != nil {
			t.Fatalf("canonical form %q does not parse: %v", c.JSON, err)
		}
		if !bytes.Equal(c2.JSON, c.JSON) {
			// CPython is not idempotent either in one case: a key with
			// raw surrogates U+D800 U+DC00 is written \ud800\udc00, which
			// reads back as the single code point U+10000, so such keys
			// can sort and merge differently the second time. From there
			// on the form is stable.
			if !bytes.Contains(c.JSON, []byte(`\ud`)) {
				t.Fatalf("not idempotent:\n%q\n%q", c.JSON, c2.JSON)
			}
			c3, err := cz.Canonicalize(append([]byte(nil), c2.JSON...))
			if err != nil || !bytes.Equal(c3.JSON, c2.JSON) {
				t.Fatalf("not idempotent after a second pass:\n%q\n%q", c2.JSON, c3.JSON)
			}
		}
		if c2.NonFinite != c.NonFinite || c2.Object != c.Object {
			t.Fatalf("flags changed on the canonical form")
		}
	})
}

func BenchmarkCanonicalVerify200B(b *testing.B) {
	benchmarkCanonicalVerify(b, body200)
}

func BenchmarkCanonicalVerify20KB(b *testing.B) {
	benchmarkCanonicalVerify(b, body20K)
}

func benchmarkCanonicalVerify(b *testing.B, body []byte) {
	const ts = "1764000000"
	secret := []byte("whsec_test_secret")
	v, err := NewVerifier([][]byte{secret})
	if err != nil {
		b.Fatal(err)
	}
	var cz Canonicalizer
	c, err := cz.Canonicalize(body)
	if err != nil {
		b.Fatal(err)
	}
	sig := Sign(secret, ts, c.JSON)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := cz.Canonicalize(body)
		if err != nil || !v.Verify(ts, c.JSON, sig) {
			b.Fatal("does not verify")
		}
	}
}

func TestMaxIntDigitsConfigurable(t *testing.T) {
	c := Canonicalizer{MaxIntDigits: 10}
	if _, err := c.Canonicalize([]byte(`{"n":1234567890}`)); err != nil {
		t.Errorf("10 digits: %v", err)
	}
	_, err := c.Canonicalize([]byte(`{"n":-12345678901}`))
	if err == nil || !strings.Contains(err.Error(), "integer has more than 10 digits") {
		t.Errorf("11 digits: %v", err)
	}
	if _, err := c.Canonicalize([]byte(`{"n":12345678901.5}`)); err != nil {
		t.Errorf("a long float is not limited: %v", err)
	}
}

// BenchmarkCanonicalHostile1MiB canonicalizes 1 MiB bodies built to be
// costly: what one unsigned request can make hookbridge spend before the
// HMAC refuses it. The figure per MiB is in SECURITY.md.
func BenchmarkCanonicalHostile1MiB(b *testing.B) {
	fill := func(item string) []byte {
		body := []byte(`{"a":[`)
		for len(body) < 1<<20-len(item)-2 {
			body = append(body, item...)
			body = append(body, ',')
		}
		body = append(body, `0]}`...)
		return body
	}
	// Tiny floats are refused past DefaultMaxTinyFloats: for those the
	// figure is the cost of refusing the body.
	for _, tc := range []struct{ name, item string }{
		// The baseline: short strings.
		{"strings", `"abcdefgh"`},
		// Short floats: Eisel-Lemire's fast path.
		{"floats", `1.25`},
		// Just above the halfway point between two doubles, with more
		// digits than Eisel-Lemire takes: strconv's big-decimal path.
		{"halfway-floats", `9007199254740993.0000000000000000000000000000001`},
		{"halfway-small-floats", `2.4703282292062327208828439643411068618252990130716238221279284125033775364e-324`},
		// Subnormals as CPython's repr writes them (17 digits): strconv
		// takes its slow path for each.
		{"subnormals", `4.9406564584124654e-324`},
		{"near-subnormals", `2.2250738585072011e-308`},
		// Long mantissas, just above a halfway point, and long exponents
		// (the rewritten slow path).
		{"long-floats", "9007199254740993." + strings.Repeat("0", 700) + "1"},
		{"long-exponents", "1e-000000000000000000000000000000000000000000000000000000000000001"},
		{"huge-mantissas", strings.Repeat("9", 500) + ".5e-400"},
		// The longest integers max_number_digits allows.
		{"long-ints", strings.Repeat("7", 4300)},
		// Every character escaped on output.
		{"escapes", `"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"`},
	} {
		body := fill(tc.item)
		b.Run(tc.name, func(b *testing.B) {
			var cz Canonicalizer
			_, err := cz.Canonicalize(body)
			refused := err != nil
			if refused && !strings.Contains(err.Error(), "floats below 1e-307") {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := cz.Canonicalize(body); (err != nil) != refused {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestTinyFloat(t *testing.T) {
	for tok, want := range map[string]bool{
		"1e-307": false, "9.9e-308": true, "1e-308": true, "2.2250738585072014e-308": true,
		"4.9406564584124654e-324": true, "-5e-324": true, "0.000001e-302": true, "0.00001e-302": false,
		"100e-310": true, "1000e-310": false, "10e-310": true, "0.0": false, "0e-400": false, "-0.0e-999": false,
		"1.25": false, "1e308": false, "123.456e-309": false, "0.5e-307": true,
		"1e-00000000000000000000000000308": true, "1e-99999999999999999999999": true,
	} {
		if got := tinyFloat([]byte(tok)); got != want {
			t.Errorf("tinyFloat(%s) = %v, want %v", tok, got, want)
		}
	}
}

// TestMaxTinyFloats: a body may hold DefaultMaxTinyFloats tiny floats,
// canonicalized as CPython does; one more is refused before it costs more.
func TestMaxTinyFloats(t *testing.T) {
	body := func(n int) []byte {
		b := []byte(`{"a":[1.5e-310`)
		for range n - 1 {
			b = append(b, `,5e-324`...)
		}
		return append(b, `]}`...)
	}
	var cz Canonicalizer
	c, err := cz.Canonicalize(body(DefaultMaxTinyFloats))
	if err != nil {
		t.Fatalf("%d tiny floats: %v", DefaultMaxTinyFloats, err)
	}
	if !bytes.HasPrefix(c.JSON, []byte(`{"a":[1.5e-310,5e-324,`)) {
		t.Errorf("canonical form %.40s", c.JSON)
	}
	_, err = cz.Canonicalize(body(DefaultMaxTinyFloats + 1))
	if err == nil || !strings.Contains(err.Error(), "more than 100 floats below 1e-307") {
		t.Errorf("%d tiny floats: %v", DefaultMaxTinyFloats+1, err)
	}
	cz.MaxTinyFloats = 1000
	if _, err := cz.Canonicalize(body(1000)); err != nil {
		t.Errorf("MaxTinyFloats 1000: %v", err)
	}
}

func TestArrayElements(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`[]`, nil},
		{`[1]`, []string{`1`}},
		{`[1,"a,]",{"b":[2,3]},[],null,-1.5e-07]`, []string{`1`, `"a,]"`, `{"b":[2,3]}`, `[]`, `null`, `-1.5e-07`}},
		{`["\"]"]`, []string{`"\"]"`}},
		// Not arrays, or malformed: nothing past the damage, no panic.
		{``, nil}, {`{}`, nil}, {`"["`, nil}, {`[`, nil}, {`[1,`, []string{`1`}}, {`["x`, nil}, {`[[1]`, []string{`[1]`}},
	} {
		var got []string
		for e := range ArrayElements([]byte(tc.in)) {
			got = append(got, string(e))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("ArrayElements(%s) = %q, want %q", tc.in, got, tc.want)
		}
	}
	n := 0
	for range ArrayElements([]byte(`[1,2,3]`)) {
		if n++; n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("break: %d iterations", n)
	}
}

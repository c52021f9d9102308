package route

import (
	"bytes"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"

	"github.com/hookbridge/hookbridge/bridge/signature"
)

// An event's data reaches conditions as CEL values read straight from its
// canonical JSON (event.Event.Payload: compact, ASCII, sorted keys, NaN and
// infinities as strings), member by member as the expression asks: an
// expression that reads data.status never decodes the rest of the payload.
// Operations that need the whole value (iteration, equality with another
// map or list, conversion) decode it once, with the same number rules.
//
// JSON numbers become CEL int when they fit int64, else uint when they fit
// uint64, else double (rounded; beyond ±1.8e308, infinite); a number
// written with a fraction or an exponent is a double.

// jsonValue returns the CEL value of one canonical JSON value.
func jsonValue(raw []byte) ref.Val {
	if len(raw) == 0 {
		return types.NewErr("malformed JSON value")
	}
	switch raw[0] {
	case '{':
		return &jsonObject{raw: raw}
	case '[':
		return &jsonArray{raw: raw}
	case '"':
		s, ok := signature.Unquote(raw)
		if !ok {
			return types.NewErr("malformed JSON string")
		}
		return types.String(s)
	case 't':
		return types.True
	case 'f':
		return types.False
	case 'n':
		return types.NullValue
	}
	switch n := jsonNumber(raw).(type) {
	case int64:
		return types.Int(n)
	case uint64:
		return types.Uint(n)
	default:
		return types.Double(n.(float64))
	}
}

// jsonNumber parses a canonical JSON number as int64, uint64 or float64,
// whichever fits first.
func jsonNumber(tok []byte) any {
	s := string(tok)
	integer := true
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c == '.' || c == 'e' || c == 'E' {
			integer = false
			break
		}
	}
	if integer {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			return n
		}
	}
	f, _ := strconv.ParseFloat(s, 64) // out of range: ±Inf, which is what it is
	return f
}

// jsonNative decodes a canonical JSON value into the Go values CEL's
// standard adapter turns into what jsonValue returns: map[string]any,
// []any, string, int64, uint64, float64, bool and nil.
func jsonNative(raw []byte) any {
	if len(raw) == 0 {
		return nil
	}
	switch raw[0] {
	case '{':
		m := map[string]any{}
		for k, v := range signature.ObjectMembers(raw) {
			m[unquoteKey(k)] = jsonNative(v)
		}
		return m
	case '[':
		l := []any{}
		for e := range signature.ArrayElements(raw) {
			l = append(l, jsonNative(e))
		}
		return l
	case '"':
		s, _ := signature.Unquote(raw)
		return s
	case 't':
		return true
	case 'f':
		return false
	case 'n':
		return nil
	}
	return jsonNumber(raw)
}

// unquoteKey decodes an object key as ObjectMembers yields it: the
// string's contents, still escaped.
func unquoteKey(k []byte) string {
	if bytes.IndexByte(k, '\\') < 0 {
		return string(k)
	}
	q := make([]byte, 0, len(k)+2)
	q = append(append(append(q, '"'), k...), '"')
	s, _ := signature.Unquote(q)
	return s
}

// escapedKey returns name as it appears between the quotes of a canonical
// object key (ensure_ascii escaping), so that lookups compare bytes
// without decoding every key. Names of plain printable ASCII, nearly all
// of them, come back as they are.
func escapedKey(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			q := signature.AppendQuote(nil, name)
			return string(q[1 : len(q)-1])
		}
	}
	return name
}

// findMember returns the raw value of the member named by escaped (see
// escapedKey) in the canonical object obj.
func findMember(obj []byte, escaped string) ([]byte, bool) {
	for k, v := range signature.ObjectMembers(obj) {
		if string(k) == escaped {
			return v, true
		}
	}
	return nil, false
}

// jsonObject is a JSON object as a CEL map(string, dyn).
type jsonObject struct {
	raw  []byte
	full traits.Mapper // decoded on first need
	// found are the members looked up so far: a condition that reads
	// data.steps inside a comprehension gets the same value, its
	// elements already found, each time.
	found []foundMember
}

type foundMember struct {
	name string
	val  ref.Val
}

var _ traits.Mapper = (*jsonObject)(nil)

func (o *jsonObject) decoded() traits.Mapper {
	if o.full == nil {
		o.full = types.DefaultTypeAdapter.NativeToValue(jsonNative(o.raw)).(traits.Mapper)
	}
	return o.full
}

// Find implements traits.Mapper without decoding the object.
func (o *jsonObject) Find(key ref.Val) (ref.Val, bool) {
	name, ok := key.(types.String)
	if !ok {
		if types.IsUnknownOrError(key) {
			return key, false
		}
		return nil, false // JSON keys are strings: no other key is present
	}
	for _, m := range o.found {
		if m.name == string(name) {
			return m.val, true
		}
	}
	raw, found := findMember(o.raw, escapedKey(string(name)))
	if !found {
		if strings.ContainsRune(string(name), utf8.RuneError) && o.surrogateKeys() {
			// A lone surrogate in a key decodes to U+FFFD, which is
			// escaped otherwise: look the name up among decoded keys.
			return o.decoded().Find(key)
		}
		return nil, false
	}
	v := jsonValue(raw)
	o.found = append(o.found, foundMember{string(name), v})
	return v, true
}

func (o *jsonObject) Get(key ref.Val) ref.Val {
	v, found := o.Find(key)
	if !found {
		return types.ValOrErr(v, "no such key: %v", key)
	}
	return v
}

func (o *jsonObject) Contains(key ref.Val) ref.Val {
	v, found := o.Find(key)
	if !found && v != nil {
		return v // an error or unknown key
	}
	return types.Bool(found)
}

// surrogateKeys reports whether some key holds a surrogate escape: keys
// with lone surrogates decode to U+FFFD and may collide, so such an object
// is read decoded, as its decoding sees it.
func (o *jsonObject) surrogateKeys() bool {
	for k := range signature.ObjectMembers(o.raw) {
		for i := 0; i+3 < len(k); i++ {
			// \ud800-\udfff: canonical escapes are lower case, and
			// '8'-'9', 'a'-'f' are the bytes from '8' up.
			if k[i] == '\\' && k[i+1] == 'u' && k[i+2] == 'd' && k[i+3] >= '8' {
				return true
			}
		}
	}
	return false
}

func (o *jsonObject) Size() ref.Val {
	if o.surrogateKeys() {
		return o.decoded().Size()
	}
	n := 0
	for range signature.ObjectMembers(o.raw) {
		n++
	}
	return types.Int(n)
}

func (o *jsonObject) Iterator() traits.Iterator { return o.decoded().Iterator() }
func (o *jsonObject) Equal(other ref.Val) ref.Val {
	if p, ok := other.(*jsonObject); ok {
		other = p.decoded()
	}
	return o.decoded().Equal(other)
}
func (o *jsonObject) ConvertToNative(t reflect.Type) (any, error) {
	return o.decoded().ConvertToNative(t)
}
func (o *jsonObject) ConvertToType(t ref.Type) ref.Val { return o.decoded().ConvertToType(t) }
func (o *jsonObject) Type() ref.Type                   { return types.MapType }
func (o *jsonObject) Value() any                       { return o.decoded().Value() }

// jsonArray is a JSON array as a CEL list(dyn).
type jsonArray struct {
	raw   []byte
	elems [][]byte      // the elements' raw values, found on first need
	full  traits.Lister // decoded on first need
}

var _ traits.Lister = (*jsonArray)(nil)

func (a *jsonArray) decoded() traits.Lister {
	if a.full == nil {
		a.full = types.DefaultTypeAdapter.NativeToValue(jsonNative(a.raw)).(traits.Lister)
	}
	return a.full
}

// elements returns the raw elements, scanning the array once: CEL reads a
// list by index, element after element.
func (a *jsonArray) elements() [][]byte {
	if a.elems == nil {
		a.elems = [][]byte{}
		for e := range signature.ArrayElements(a.raw) {
			a.elems = append(a.elems, e)
		}
	}
	return a.elems
}

// Get implements traits.Lister without decoding the other elements.
func (a *jsonArray) Get(index ref.Val) ref.Val {
	i, err := types.GetOrError(index)
	if err != nil {
		return types.ValOrErr(index, "%v", err)
	}
	elems := a.elements()
	if i < 0 || i >= len(elems) {
		return types.NewErr("index '%d' out of range in list size '%d'", i, len(elems))
	}
	return jsonValue(elems[i])
}

func (a *jsonArray) Size() ref.Val { return types.Int(len(a.elements())) }

func (a *jsonArray) Add(other ref.Val) ref.Val {
	if p, ok := other.(*jsonArray); ok {
		other = p.decoded()
	}
	return a.decoded().Add(other)
}
func (a *jsonArray) Contains(v ref.Val) ref.Val { return a.decoded().Contains(v) }
func (a *jsonArray) Iterator() traits.Iterator  { return a.decoded().Iterator() }
func (a *jsonArray) Equal(other ref.Val) ref.Val {
	if p, ok := other.(*jsonArray); ok {
		other = p.decoded()
	}
	return a.decoded().Equal(other)
}
func (a *jsonArray) ConvertToNative(t reflect.Type) (any, error) {
	return a.decoded().ConvertToNative(t)
}
func (a *jsonArray) ConvertToType(t ref.Type) ref.Val { return a.decoded().ConvertToType(t) }
func (a *jsonArray) Type() ref.Type                   { return types.ListType }
func (a *jsonArray) Value() any                       { return a.decoded().Value() }

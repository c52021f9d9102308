package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hookbridge/hookbridge/sinks"
)

// This file holds the strict YAML decoder behind Load. yaml.v3's own
// Decode knows neither our key paths nor which values came from the
// environment, so its errors can neither point at the key nor be trusted not
// to echo a secret. The decoder here walks yaml.v3 nodes into Go values by
// their `yaml` tags and reports every problem as file:line: key: what to do.

// decoder decodes yaml nodes into tagged structs, collecting every error.
type decoder struct {
	// lookupEnv resolves ${VAR}; it is os.LookupEnv outside tests.
	lookupEnv func(string) (string, bool)
	// fromEnv marks scalars whose value came (in part) from the environment:
	// such values are never quoted in an error, as they may be secrets.
	fromEnv map[*yaml.Node]bool
	// envValues are the values ${VAR} references brought in: they may be
	// secrets, so every error is scrubbed of them (see locate).
	envValues []string
	// unsetPlaceholder, when set, stands for variables that are not set
	// and have no default, instead of an error.
	unsetPlaceholder string
	errs             []error
}

func newDecoder(lookupEnv func(string) (string, bool)) *decoder {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	return &decoder{lookupEnv: lookupEnv, fromEnv: make(map[*yaml.Node]bool)}
}

func (d *decoder) errorf(n *yaml.Node, key, format string, args ...any) {
	d.errs = append(d.errs, &sinks.ConfigError{Line: n.Line, Key: key, Problem: fmt.Sprintf(format, args...)})
}

// nodeDecoder is implemented by config types that decode themselves, such
// as a sink whose keys depend on its type.
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node, key string)
}

var durationType = reflect.TypeOf(time.Duration(0))

// decode sets v (addressable) from n; key is v's path for messages.
func (d *decoder) decode(n *yaml.Node, key string, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an explicit null keeps the zero value, and so the default
	}
	if v.CanAddr() {
		if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
			nd.decodeNode(d, n, key)
			return
		}
	}
	switch {
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, key, v.Elem())
	case v.Kind() == reflect.Struct:
		d.decodeStruct(n, key, v)
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, key, "must be a list (e.g. [a, b])")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, fmt.Sprintf("%s[%d]", key, i), s.Index(i))
		}
		v.Set(s)
	default:
		d.decodeScalar(n, key, v)
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, key string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, key, "must be a mapping of keys to values")
		return
	}
	fields := yamlFields(v.Type())
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		path := joinKey(key, k.Value)
		idx, ok := fields[k.Value]
		if !ok {
			d.errorf(k, path, "unknown key (known keys: %s)", strings.Join(knownKeys(v.Type()), ", "))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, path, "key given twice")
			continue
		}
		seen[k.Value] = true
		d.decode(val, path, v.FieldByIndex(idx))
	}
}

func (d *decoder) decodeScalar(n *yaml.Node, key string, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, key, "must be a single value, not a list or mapping")
		return
	}
	s, ok := d.expand(n, key)
	if !ok {
		return
	}
	// quoted shows the value in an error unless it came from the environment.
	quoted := strconv.Quote(s)
	if d.fromEnv[n] {
		quoted = "(value from the environment)"
	}
	switch {
	case v.Type() == durationType:
		dur, err := time.ParseDuration(s)
		if err != nil || dur < 0 {
			d.errorf(n, key, "%s is not a duration: write a Go duration such as 30s, 5m or 1h30m", quoted)
			return
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			d.errorf(n, key, "%s is not a boolean: write true or false", quoted)
			return
		}
		v.SetBool(b)
	case v.CanInt():
		i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, v.Type().Bits())
		if err != nil {
			d.errorf(n, key, "%s is not a whole number", quoted)
			return
		}
		v.SetInt(i)
	case v.CanUint():
		u, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 0, v.Type().Bits())
		if err != nil {
			d.errorf(n, key, "%s is not a whole number of 0 or more", quoted)
			return
		}
		v.SetUint(u)
	case v.CanFloat():
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) {
			d.errorf(n, key, "%s is not a number", quoted)
			return
		}
		v.SetFloat(f)
	default:
		// A programming error: a config struct holds a type this decoder
		// does not know. Say so instead of silently ignoring the key.
		d.errorf(n, key, "cannot be decoded into %s", v.Type())
	}
}

// expand resolves ${VAR} and ${VAR:-default} in a scalar. $$ is a literal $.
// Expansion is not recursive: a variable's value is used as it is.
func (d *decoder) expand(n *yaml.Node, key string) (string, bool) {
	s := n.Value
	if !strings.Contains(s, "$") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if i+1 >= len(s) || s[i+1] != '{' {
			b.WriteByte('$')
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			d.errorf(n, key, "unterminated ${ in value: close it with } or write $$ for a literal $")
			return "", false
		}
		expr := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			d.errorf(n, key, "${%s} is not a valid variable reference: write ${NAME} or ${NAME:-default}", expr)
			return "", false
		}
		val, set := d.lookupEnv(name)
		switch {
		case set && val != "":
			b.WriteString(val)
			d.fromEnv[n] = true
			d.envValues = append(d.envValues, val)
		case hasDef:
			b.WriteString(def)
		case d.unsetPlaceholder != "":
			b.WriteString(d.unsetPlaceholder)
		case set:
			d.errorf(n, key, "environment variable %s is set but empty: give it a value", name)
			return "", false
		default:
			d.errorf(n, key, "environment variable %s is not set: export it (or write ${%s:-default} for a fallback)", name, name)
			return "", false
		}
		i += end
	}
	return b.String(), true
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// yamlFields maps each yaml key of struct type t to its field's index
// path. The fields of a struct field tagged `yaml:",inline"` are t's own
// keys, as in yaml.v3.
func yamlFields(t reflect.Type) map[string][]int {
	m := map[string][]int{}
	walkKeys(t, nil, func(name string, index []int) { m[name] = index })
	return m
}

// knownKeys lists t's yaml keys in field order.
func knownKeys(t reflect.Type) []string {
	var keys []string
	walkKeys(t, nil, func(name string, _ []int) { keys = append(keys, name) })
	return keys
}

// walkKeys calls f with each yaml key of struct type t and its field's
// index path (under prefix), in field order, descending into inline
// structs.
func walkKeys(t reflect.Type, prefix []int, f func(name string, index []int)) {
	for i := range t.NumField() {
		field := t.Field(i)
		if !field.IsExported() {
			continue
		}
		index := append(slices.Clone(prefix), i)
		name, opts, _ := strings.Cut(field.Tag.Get("yaml"), ",")
		switch {
		case opts == "inline" && field.Type.Kind() == reflect.Struct:
			walkKeys(field.Type, index, f)
		case name != "" && name != "-":
			f(name, index)
		}
	}
}

// setKeys returns the yaml keys of struct v whose fields are not zero:
// the keys a file gave (or a default filled in).
func setKeys(v reflect.Value) []string {
	var keys []string
	walkKeys(v.Type(), nil, func(name string, index []int) {
		if !v.FieldByIndex(index).IsZero() {
			keys = append(keys, name)
		}
	})
	return keys
}

func joinKey(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// errorList flattens errors.Join trees into a list.
func errorList(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, errorList(e)...)
		}
		return out
	}
	return []error{err}
}

var errNotMapping = errors.New("the file must be a YAML mapping with the keys server, sources, sinks and routes")

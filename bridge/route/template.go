// Package route decides where an event goes: target templates such as
// "task.{status}", the router that matches events to (sink, target)
// deliveries, and the routing table `hookbridge check` prints.
package route

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/signature"
)

// Template is a route target such as "task.{status}". Variables are
// {status}, {source}, {task_id} and {data.<key>[.<key>...]}, a member of
// the event's data. Their values are made safe for any broker's names:
// every byte outside [A-Za-z0-9_-] becomes "_", an empty value becomes "_",
// and a value is cut to its first MaxValueBytes bytes, so that a hostile
// status or metadata value cannot add NATS tokens, wildcards or path
// segments, nor grow a name past a broker's limits. A data member that is
// missing, null, an object or an array also becomes "_"; numbers and
// booleans are written as in the JSON.
type Template struct {
	raw   string
	parts []templatePart
}

// MaxValueBytes is the most bytes one variable adds to a target.
const MaxValueBytes = 128

type templatePart struct {
	literal string
	field   eventField // 0 for a literal
	// For fieldData: the variable as written ("data.metadata.team") and
	// its path, each key as it appears escaped in canonical JSON.
	name string
	path []string
}

type eventField int

const (
	fieldNone eventField = iota
	fieldStatus
	fieldSource
	fieldTaskID
	fieldData
)

var templateFields = map[string]eventField{
	"status":  fieldStatus,
	"source":  fieldSource,
	"task_id": fieldTaskID,
}

// ParseTemplate parses a target template.
func ParseTemplate(s string) (Template, error) {
	t := Template{raw: s}
	rest := s
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			if strings.IndexByte(rest, '}') >= 0 {
				return Template{}, fmt.Errorf("target %q has a } without {", s)
			}
			t.parts = append(t.parts, templatePart{literal: rest})
			break
		}
		if open > 0 {
			if strings.IndexByte(rest[:open], '}') >= 0 {
				return Template{}, fmt.Errorf("target %q has a } without {", s)
			}
			t.parts = append(t.parts, templatePart{literal: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return Template{}, fmt.Errorf("target %q has an unclosed {", s)
		}
		name := rest[open+1 : open+end]
		part, err := parseVariable(name)
		if err != nil {
			return Template{}, fmt.Errorf("target %q: %w", s, err)
		}
		t.parts = append(t.parts, part)
		rest = rest[open+end+1:]
	}
	return t, nil
}

func parseVariable(name string) (templatePart, error) {
	if f, ok := templateFields[name]; ok {
		return templatePart{field: f, name: name}, nil
	}
	field, ok := strings.CutPrefix(name, "data.")
	if !ok {
		if name == "data" {
			return templatePart{}, errors.New("{data} names no field: write {data.<key>}, e.g. {data.metadata.team}")
		}
		return templatePart{}, fmt.Errorf("unknown variable {%s}: use {status}, {source}, {task_id} or {data.<key>[.<key>...]}", name)
	}
	part := templatePart{field: fieldData, name: name}
	for key := range strings.SplitSeq(field, ".") {
		if key == "" {
			return templatePart{}, fmt.Errorf("{%s} has an empty key: write {data.<key>[.<key>...]} with no leading, trailing or double dots", name)
		}
		if strings.IndexByte(key, '{') >= 0 {
			return templatePart{}, fmt.Errorf("{%s} has a { inside: close each variable before opening the next", name)
		}
		if strings.TrimSpace(key) != key {
			return templatePart{}, fmt.Errorf("{%s}: key %q has surrounding spaces", name, key)
		}
		part.path = append(part.path, escapedKey(key))
	}
	return part, nil
}

// String returns the template as written.
func (t Template) String() string { return t.raw }

// Static reports whether the template has no variable: it is a target as
// it is.
func (t Template) Static() bool {
	for _, p := range t.parts {
		if p.field != fieldNone {
			return false
		}
	}
	return true
}

// Private reports whether an expansion of the template may show what a
// trace must not: a {data...} member, part of the payload, or the task
// id unless taskIDs (telemetry.task_id_attribute) allows it.
func (t Template) Private(taskIDs bool) bool {
	for _, p := range t.parts {
		if p.field == fieldData || (p.field == fieldTaskID && !taskIDs) {
			return true
		}
	}
	return false
}

// Pattern returns a regular expression (RE2 syntax, anchored) that
// matches every expansion of the template: a variable's value is 1 to
// MaxValueBytes bytes of [A-Za-z0-9_-]. Tracing uses it to tell which
// template a queued message's target came from.
func (t Template) Pattern() string {
	var b strings.Builder
	b.WriteByte('^')
	for _, p := range t.parts {
		if p.field == fieldNone {
			b.WriteString(regexp.QuoteMeta(p.literal))
		} else {
			b.WriteString(`[A-Za-z0-9_-]{1,` + strconv.Itoa(MaxValueBytes) + `}`)
		}
	}
	b.WriteByte('$')
	return b.String()
}

// Expand fills the template's variables from ev.
func (t Template) Expand(ev *event.Event) string {
	if t.Static() {
		return t.raw
	}
	var b strings.Builder
	b.Grow(len(t.raw) + 32)
	for _, p := range t.parts {
		switch p.field {
		case fieldNone:
			b.WriteString(p.literal)
		case fieldStatus:
			writeSafe(&b, ev.Status)
		case fieldSource:
			writeSafe(&b, ev.Source)
		case fieldTaskID:
			writeSafe(&b, ev.TaskID)
		case fieldData:
			writeData(&b, ev.Payload, p.path)
		}
	}
	return b.String()
}

// withStatus returns the template as written with {status} filled in:
// what the routing table shows for a named status, where the other
// variables are still open.
func (t Template) withStatus(status string) string {
	var b strings.Builder
	for _, p := range t.parts {
		switch p.field {
		case fieldNone:
			b.WriteString(p.literal)
		case fieldStatus:
			writeSafe(&b, status)
		default:
			b.WriteByte('{')
			b.WriteString(p.name)
			b.WriteByte('}')
		}
	}
	return b.String()
}

// Wildcard returns the pattern that covers every expansion of the template
// when names are split into tokens by sep: a token holding a variable
// becomes wildcard. For NATS, Wildcard('.', "*") of "task.{status}" is
// "task.*".
func (t Template) Wildcard(sep byte, wildcard string) string {
	if t.Static() {
		return t.raw
	}
	// Mark variables with a byte that cannot appear in a literal token of
	// interest, then replace every token containing one.
	var b strings.Builder
	for _, p := range t.parts {
		if p.field == fieldNone {
			b.WriteString(p.literal)
		} else {
			b.WriteByte(0)
		}
	}
	tokens := strings.Split(b.String(), string(sep))
	for i, tok := range tokens {
		if strings.IndexByte(tok, 0) >= 0 {
			tokens[i] = wildcard
		}
	}
	return strings.Join(tokens, string(sep))
}

// writeData writes the value at path in the canonical JSON object data.
func writeData(b *strings.Builder, data []byte, path []string) {
	v := data
	for _, key := range path {
		raw, ok := findMember(v, key)
		if !ok {
			b.WriteByte('_')
			return
		}
		v = raw
	}
	if len(v) == 0 {
		b.WriteByte('_')
		return
	}
	switch v[0] {
	case '"':
		if bytes.IndexByte(v, '\\') < 0 {
			writeSafe(b, v[1:len(v)-1])
			return
		}
		s, _ := signature.Unquote(v)
		writeSafe(b, s)
	case '{', '[', 'n':
		b.WriteByte('_')
	default: // a number, true or false, as written
		writeSafe(b, v)
	}
}

func writeSafe[T string | []byte](b *strings.Builder, v T) {
	if len(v) == 0 {
		b.WriteByte('_')
		return
	}
	if len(v) > MaxValueBytes {
		v = v[:MaxValueBytes]
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
}

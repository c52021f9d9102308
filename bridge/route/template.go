// Package route decides where an event goes: target templates such as
// "task.{status}", the router that matches events to (sink, target)
// deliveries, and the routing table `hookbridge check` prints.
package route

import (
	"fmt"
	"strings"

	"github.com/hookbridge/hookbridge/bridge/event"
)

// Template is a route target such as "task.{status}". Variables are
// {status}, {source} and {task_id}; their values are made safe for any
// broker's names: every byte outside [A-Za-z0-9_-] becomes "_", and an empty
// value becomes "_", so a hostile status cannot add NATS tokens, wildcards
// or path segments.
type Template struct {
	raw   string
	parts []templatePart
}

type templatePart struct {
	literal string
	field   eventField // 0 for a literal
}

type eventField int

const (
	fieldNone eventField = iota
	fieldStatus
	fieldSource
	fieldTaskID
)

var templateFields = map[string]eventField{
	"status":  fieldStatus,
	"source":  fieldSource,
	"task_id": fieldTaskID,
}

var fieldNames = [...]string{fieldStatus: "status", fieldSource: "source", fieldTaskID: "task_id"}

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
		f, ok := templateFields[name]
		if !ok {
			return Template{}, fmt.Errorf("target %q uses unknown variable {%s}: use {status}, {source} or {task_id}", s, name)
		}
		t.parts = append(t.parts, templatePart{field: f})
		rest = rest[open+end+1:]
	}
	return t, nil
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
			b.WriteString(fieldNames[p.field])
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

func writeSafe(b *strings.Builder, v string) {
	if v == "" {
		b.WriteByte('_')
		return
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

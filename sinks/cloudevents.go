package sinks

import (
	"errors"
	"fmt"
	"strings"
)

// StructuredContentType is the content type of a structured CloudEvent in
// the JSON event format, as the CloudEvents bindings spell it.
const StructuredContentType = "application/cloudevents+json; charset=utf-8"

// ContentMode is how a sink lays a CloudEvent on its broker's messages: the
// `content_mode` key of the kinds whose broker has a CloudEvents binding
// (or, for SQS, a documented mapping). A message is in one mode, never
// both: consumers pick their reading from what they find, and a structured
// body beside ce- headers is misread as binary by the official SDKs.
type ContentMode string

const (
	// Structured carries the whole CloudEvent, JSON, as the body, with
	// content type StructuredContentType and no attribute headers. It is
	// the default: every CloudEvents binding reads it.
	Structured ContentMode = "structured"
	// Binary carries the event's data as the body, byte for byte, its
	// datacontenttype as the content type, and every other attribute,
	// extensions included, as a header of its own ("ce-id", "ce_id").
	Binary ContentMode = "binary"
)

// DefaultContentMode is the content mode of a sink that sets none.
const DefaultContentMode = Structured

// SetDefault sets an unset mode to DefaultContentMode.
func (m *ContentMode) SetDefault() {
	if *m == "" {
		*m = DefaultContentMode
	}
}

// Check reports a mode other than structured and binary as a
// *ConfigError for key.
func (m ContentMode) Check(key string) error {
	switch m {
	case Structured, Binary:
		return nil
	}
	return Problemf(key, "%q is not a content mode: use %q (the whole CloudEvent as the body) or %q (data as the body, attributes as headers)", string(m), Structured, Binary)
}

// TraceHeaders returns the W3C trace context a sink sends in its
// broker's own trace headers, "traceparent" then "tracestate": m.Trace
// when set, else the event's traceparent and tracestate attributes (the
// sender's context, passed along when hookbridge does not trace). A sink
// skips an entry whose Value is empty. It allocates nothing.
func (m *Message) TraceHeaders() [2]Attr {
	h := [2]Attr{{Name: "traceparent"}, {Name: "tracestate"}}
	if m.Trace.Parent != "" {
		h[0].Value, h[1].Value = m.Trace.Parent, m.Trace.State
		return h
	}
	for _, a := range m.Attrs {
		switch a.Name {
		case "traceparent":
			h[0].Value = a.Value
		case "tracestate":
			h[1].Value = a.Value
		}
	}
	if h[0].Value == "" {
		h[1].Value = "" // a tracestate means nothing without its parent
	}
	return h
}

// Untrimmed reports whether no attribute value has spaces at either end.
// The CloudEvents SDKs' binary readers trim them from id, type, subject
// and datacontenttype, and nats.go from every header: a sink in binary
// mode sends an event with such a value structured, so that it arrives
// unchanged.
func Untrimmed(attrs []Attr) bool {
	for _, a := range attrs {
		if strings.TrimSpace(a.Value) != a.Value {
			return false
		}
	}
	return true
}

// Attr returns the value of the attribute called name, "" if m has none.
func (m *Message) Attr(name string) string {
	for _, a := range m.Attrs {
		if a.Name == name {
			return a.Value
		}
	}
	return ""
}

// Data returns the event's data as the structured body holds it: the value
// of its "data" member, byte for byte (a slice of Body, not a copy), or nil
// when the event has none. Binary mode sends it as the message body.
func (m *Message) Data() ([]byte, error) {
	return structuredData(m.Body)
}

// errNotStructured is the error of a body that is not a JSON object.
var errNotStructured = errors.New("the message body is not a structured CloudEvent (a JSON object)")

// structuredData scans the top-level members of the JSON object body for
// "data" and returns its value. Attribute members are skipped without
// decoding; hookbridge writes data last, so the scan reads each byte once.
func structuredData(body []byte) ([]byte, error) {
	s := scanner{b: body}
	s.space()
	if !s.eat('{') {
		return nil, errNotStructured
	}
	s.space()
	if s.eat('}') {
		return nil, nil
	}
	for {
		s.space()
		start := s.i
		if !s.skipString() {
			return nil, s.fail("a member name")
		}
		key := body[start:s.i]
		s.space()
		if !s.eat(':') {
			return nil, s.fail("':'")
		}
		s.space()
		vStart := s.i
		if !s.skipValue(0) {
			return nil, s.fail("a value")
		}
		if string(key) == `"data"` {
			return body[vStart:s.i:s.i], nil
		}
		s.space()
		if s.eat('}') {
			return nil, nil
		}
		if !s.eat(',') {
			return nil, s.fail("',' or '}'")
		}
	}
}

// scanner walks JSON text just far enough to find where values end.
type scanner struct {
	b []byte
	i int
}

// maxDepth bounds nesting, as encoding/json does, so that a hostile body
// cannot exhaust the stack.
const maxDepth = 10000

func (s *scanner) fail(want string) error {
	return fmt.Errorf("%w: want %s at byte %d", errNotStructured, want, s.i)
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// skipString skips a string, escapes and all, from its opening quote.
func (s *scanner) skipString() bool {
	if !s.eat('"') {
		return false
	}
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return true
		case c == '\\':
			s.i += 2
		case c < 0x20:
			return false
		default:
			s.i++
		}
	}
	return false
}

func (s *scanner) skipValue(depth int) bool {
	if s.i >= len(s.b) || depth > maxDepth {
		return false
	}
	switch c := s.b[s.i]; c {
	case '"':
		return s.skipString()
	case '{', '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		s.i++
		s.space()
		if s.eat(closing) {
			return true
		}
		for {
			s.space()
			if c == '{' {
				if !s.skipString() {
					return false
				}
				s.space()
				if !s.eat(':') {
					return false
				}
				s.space()
			}
			if !s.skipValue(depth + 1) {
				return false
			}
			s.space()
			if s.eat(closing) {
				return true
			}
			if !s.eat(',') {
				return false
			}
		}
	default:
		// A number or a literal: up to the next delimiter.
		start := s.i
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return s.i > start
			}
			s.i++
		}
		return s.i > start
	}
}

package main

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	natsgo "github.com/nats-io/nats.go"
)

// eventPrinter prints the events tail reads, as JSON lines or as aligned
// text lines, and reports on stderr the messages that are not events.
type eventPrinter struct {
	stdout, stderr io.Writer
	line           bool
	widths         [3]int // of the subject, status and task id columns so far
}

func (p *eventPrinter) print(subject string, h natsgo.Header, body []byte) {
	ev, err := decodeCloudEvent(h, body)
	if err != nil {
		fmt.Fprintf(p.stderr, "hookbridge tail: %s: not a CloudEvent, not printed: %v\n", subject, err)
		return
	}
	if p.line {
		p.printLine(subject, ev)
		return
	}
	var b []byte
	b = append(b, `{"subject":`...)
	b = appendJSONString(b, subject)
	b = append(b, `,"event":`...)
	b = ev.appendJSON(b)
	b = append(b, '}')
	var out bytes.Buffer
	// One line whatever the publisher's layout: data may be indented.
	if err := json.Compact(&out, b); err != nil {
		fmt.Fprintf(p.stderr, "hookbridge tail: %s: not printed: %v\n", subject, err)
		return
	}
	out.WriteByte('\n')
	_, _ = p.stdout.Write(out.Bytes())
}

// Minimum widths of the line format's padded columns: subject, status,
// task id (a UUID).
var lineMinWidths = [3]int{18, 10, 36}

func (p *eventPrinter) printLine(subject string, ev cloudEvent) {
	when := ev.str("time")
	if t, err := time.Parse(time.RFC3339Nano, when); err == nil {
		when = t.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	cols := [3]string{field(subject), field(ev.str("status")), field(ev.str("subject"))}
	var b strings.Builder
	b.WriteString(field(when))
	for i, c := range cols {
		p.widths[i] = max(p.widths[i], lineMinWidths[i], len(c))
		fmt.Fprintf(&b, "  %-*s", p.widths[i], c)
	}
	b.WriteString("  ")
	b.WriteString(field(ev.str("id")))
	b.WriteByte('\n')
	_, _ = io.WriteString(p.stdout, b.String())
}

// field is s as one space-free column: "-" when empty, quoted when it
// holds spaces, quotes or unprintable characters, so that a line stays one
// line of whitespace-separated fields whatever a webhook carried.
func field(s string) string {
	if s == "" {
		return "-"
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r == '"' || unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

// cloudEvent is a CloudEvent in the JSON event format: its members by
// name, each value JSON. String attributes are quoted the same way
// whatever their source, so both content modes print alike.
type cloudEvent map[string]json.RawMessage

var errNotCloudEvent = errors.New("no ce-specversion header, and the body is not a JSON object with a specversion")

// decodeCloudEvent reads a message in either content mode: binary when it
// has a ce-specversion header (attributes in ce- headers, datacontenttype
// in content-type, data as the body), structured otherwise.
func decodeCloudEvent(h natsgo.Header, body []byte) (cloudEvent, error) {
	ev := cloudEvent{}
	var contentType string
	binary := false
	// Header names are matched whatever their case: nats.go keeps the
	// sender's.
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		switch lk := strings.ToLower(k); {
		case lk == "content-type":
			contentType = vs[0]
		case strings.HasPrefix(lk, "ce-") && len(lk) > len("ce-"):
			ev[lk[len("ce-"):]] = appendJSONString(nil, vs[0])
			binary = binary || lk == "ce-specversion"
		}
	}
	if binary {
		if contentType != "" {
			ev["datacontenttype"] = appendJSONString(nil, contentType)
		}
		switch {
		case len(body) == 0:
		case isJSONType(contentType) && json.Valid(body):
			ev["data"] = body
		default:
			ev["data_base64"] = appendJSONString(nil, base64.StdEncoding.EncodeToString(body))
		}
		return ev, nil
	}
	ev = cloudEvent{}
	if err := json.Unmarshal(body, &ev); err != nil || ev == nil || ev["specversion"] == nil {
		return nil, fmt.Errorf("%w: %s", errNotCloudEvent, excerpt(body))
	}
	for k, v := range ev {
		if k == "data" {
			continue
		}
		var s string
		if v[0] == '"' && json.Unmarshal(v, &s) == nil {
			ev[k] = appendJSONString(nil, s)
		}
	}
	return ev, nil
}

// isJSONType reports whether the media type is JSON: application/json,
// text/json or a +json type. No content type is JSON, as the JSON event
// format assumes of an event without datacontenttype.
func isJSONType(contentType string) bool {
	if contentType == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// excerpt describes a body that is not an event: its size and its start.
func excerpt(body []byte) string {
	const n = 64
	if len(body) <= n {
		return fmt.Sprintf("%d bytes: %q", len(body), body)
	}
	return fmt.Sprintf("%d bytes: %q…", len(body), body[:n])
}

// attrOrder is the order of the attributes the CloudEvents spec defines;
// extensions follow by name, data last.
var attrOrder = []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}

func rank(name string) int {
	if i := slices.Index(attrOrder, name); i >= 0 {
		return i
	}
	switch name {
	case "data":
		return len(attrOrder) + 1
	case "data_base64":
		return len(attrOrder) + 2
	}
	return len(attrOrder) // an extension
}

func (ev cloudEvent) appendJSON(b []byte) []byte {
	names := make([]string, 0, len(ev))
	for k := range ev {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(a, b))
	})
	b = append(b, '{')
	for i, k := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = append(b, ev[k]...)
	}
	return append(b, '}')
}

// str returns the attribute called name as text: a string's value, any
// other JSON value as written, "" when the event has none.
func (ev cloudEvent) str(name string) string {
	v, ok := ev[name]
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}

// appendJSONString appends s as a JSON string, with <, > and & kept as
// they are (encoding/json would escape them for HTML).
func appendJSONString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/hookbridge/hookbridge/bridge/signature"
	"github.com/hookbridge/hookbridge/sinks"
)

// TypePrefix prefixes Browser Use's event types to make CloudEvents types.
const TypePrefix = "com.browser-use."

// StatusUpdateType is the CloudEvents type of a task status change.
const StatusUpdateType = TypePrefix + "agent.task.status_update"

// Event is one normalized delivery: a CloudEvents 1.0 event.
type Event struct {
	ID      string    // content-derived: a redelivery keeps it
	Source  string    // the source's name
	Type    string    // e.g. com.browser-use.agent.task.status_update
	TaskID  string    // the CloudEvents subject; may be empty
	Status  string    // the task status, an open string
	Time    time.Time // the event's own time, else the signed header's, else receipt
	Test    bool      // a test delivery: verified and answered, never routed
	Attrs   []sinks.Attr
	JSON    []byte // the structured CloudEvent
	Payload []byte // the CloudEvent's data: the task payload, JSON
}

// ErrNoStatus is returned by Normalize for a body that is not a test
// delivery and carries no status.
var ErrNoStatus = errors.New(`no "status" string in the task payload`)

// Normalize turns a verified, canonicalized body into an Event.
//
// Both shapes Browser Use sends are accepted. The envelope
// {"type", "timestamp", "payload": {...}} yields data = payload, type =
// TypePrefix + type and time = timestamp. The older flat form {"task_id",
// "status", ...} yields data = the whole body. Test deliveries ({"test":
// ...} without a status, or an envelope of type "test") come back with Test
// set. Nothing in the body is lost: envelope keys other than type, payload
// and a parseable timestamp travel in the "browseruseenvelope" extension
// attribute as a JSON string.
//
// The id is a SHA-256 over the source and the canonical body; the flat form
// has no time of its own, so headerTS joins the hash: a task that reports
// the same status twice sends identical flat bodies, and two real events
// must never be merged.
func Normalize(source, headerTS string, received time.Time, c signature.Canonical, trace Trace) (*Event, error) {
	if !c.Object {
		return nil, errors.New("body is not a JSON object")
	}
	ev := &Event{Source: source, Type: StatusUpdateType}

	var envType, envTS, payload, status, taskID, test []byte
	var extra [][2][]byte // envelope members to keep beside data
	hasType := false
	for k, v := range signature.ObjectMembers(c.JSON) {
		switch string(k) {
		case "type":
			envType, hasType = v, true
		case "timestamp":
			envTS = v
		case "payload":
			payload = v
		case "status":
			status = v
		case "task_id":
			taskID = v
		case "test":
			test = v
		}
	}
	envelope := hasType && len(payload) > 0 && payload[0] == '{'
	data := c.JSON
	var eventTime time.Time
	if envelope {
		data = payload
		status, taskID = nil, nil
		for k, v := range signature.ObjectMembers(payload) {
			switch string(k) {
			case "status":
				status = v
			case "task_id":
				taskID = v
			}
		}
		if string(envType) == `"agent.task.status_update"` {
			// The type nearly every delivery has: no copy to make.
			ev.Type = StatusUpdateType
		} else if t, ok := signature.Unquote(envType); ok {
			ev.Type = TypePrefix + t
			ev.Test = t == "test"
		} else {
			extra = append(extra, [2][]byte{[]byte("type"), envType})
		}
		if ts, ok := signature.Unquote(envTS); ok {
			if t, err := signature.ParseTimestamp(ts); err == nil {
				eventTime = t
			} else {
				extra = append(extra, [2][]byte{[]byte("timestamp"), envTS})
			}
		} else if envTS != nil {
			extra = append(extra, [2][]byte{[]byte("timestamp"), envTS})
		}
		for k, v := range signature.ObjectMembers(c.JSON) {
			switch string(k) {
			case "type", "timestamp", "payload":
			default:
				extra = append(extra, [2][]byte{k, v})
			}
		}
	}
	ev.Status, _ = signature.Unquote(status)
	ev.TaskID, _ = signature.Unquote(taskID)
	if !envelope && status == nil && test != nil {
		ev.Test = true
	}
	if !ev.Test && (status == nil || status[0] != '"') {
		return nil, ErrNoStatus
	}

	// The id: the envelope carries its own time, so its body alone names
	// the event; the flat form does not, so the signed timestamp joins in.
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write(c.JSON)
	if !envelope {
		h.Write([]byte{0})
		h.Write([]byte(headerTS))
	}
	var sum [sha256.Size]byte
	ev.ID = hex.EncodeToString(h.Sum(sum[:0])[:16])

	if eventTime.IsZero() {
		if t, err := signature.ParseTimestamp(headerTS); err == nil {
			eventTime = t
		} else {
			eventTime = received
		}
	}
	ev.Time = eventTime.UTC()

	var envJSON []byte
	if len(extra) > 0 {
		envJSON = append(envJSON, '{')
		for i, m := range extra {
			if i > 0 {
				envJSON = append(envJSON, ',')
			}
			envJSON = append(envJSON, '"')
			envJSON = append(envJSON, m[0]...)
			envJSON = append(envJSON, '"', ':')
			envJSON = signature.AppendJSONSafe(envJSON, m[1])
		}
		envJSON = append(envJSON, '}')
	}
	ev.build(data, c.NonFinite, envJSON, trace)
	return ev, nil
}

// Trace is the W3C trace context a webhook came with. It travels with the
// event as the CloudEvents distributed-tracing extension (attributes
// "traceparent" and "tracestate"), so a trace continues from the sender
// through the bus to consumers. It is not part of the event id.
type Trace struct {
	Parent string // the traceparent header, "" if absent or malformed
	State  string // the tracestate header, "" if absent, malformed or without a parent
}

// ParseTrace returns the trace context of W3C headers, dropping values
// that do not follow the spec rather than passing garbage on.
func ParseTrace(traceparent, tracestate string) Trace {
	if !validTraceparent(traceparent) {
		return Trace{}
	}
	t := Trace{Parent: traceparent}
	if len(tracestate) <= 512 && printableASCII(tracestate) {
		t.State = tracestate
	}
	return t
}

// validTraceparent checks version-traceid-parentid-flags: 2, 32, 16 and 2
// lowercase hex digits; version ff and all-zero ids are invalid.
func validTraceparent(s string) bool {
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' || (len(s) > 55 && (s[0:2] == "00" || s[55] != '-')) {
		return false
	}
	hex := func(part string) bool {
		zero := true
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
			zero = zero && c == '0'
		}
		return !zero
	}
	version, traceID, parentID, flags := s[0:2], s[3:35], s[36:52], s[53:55]
	return hex(traceID) && hex(parentID) && version != "ff" &&
		(hex(version) || version == "00") && (hex(flags) || flags == "00")
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// build writes the structured CloudEvent and its attributes.
func (ev *Event) build(data []byte, nonFinite bool, envelope []byte, trace Trace) {
	timeStr := ev.Time.Format(time.RFC3339Nano)
	ev.Attrs = make([]sinks.Attr, 0, 11)
	ev.Attrs = append(ev.Attrs,
		sinks.Attr{Name: "specversion", Value: "1.0"},
		sinks.Attr{Name: "id", Value: ev.ID},
		sinks.Attr{Name: "source", Value: ev.Source},
		sinks.Attr{Name: "type", Value: ev.Type},
	)
	if ev.TaskID != "" {
		ev.Attrs = append(ev.Attrs, sinks.Attr{Name: "subject", Value: ev.TaskID})
	}
	ev.Attrs = append(ev.Attrs, sinks.Attr{Name: "time", Value: timeStr})
	if !ev.Test {
		ev.Attrs = append(ev.Attrs, sinks.Attr{Name: "status", Value: ev.Status})
	}
	if trace.Parent != "" {
		ev.Attrs = append(ev.Attrs, sinks.Attr{Name: "traceparent", Value: trace.Parent})
		if trace.State != "" {
			ev.Attrs = append(ev.Attrs, sinks.Attr{Name: "tracestate", Value: trace.State})
		}
	}
	// Last of the common ones: SQS carries only 10 attributes, and this
	// one is always "application/json".
	ev.Attrs = append(ev.Attrs, sinks.Attr{Name: "datacontenttype", Value: "application/json"})
	if envelope != nil {
		ev.Attrs = append(ev.Attrs, sinks.Attr{Name: "browseruseenvelope", Value: string(envelope)})
	}

	// Size the event once: each attribute is "name":"value", plus room
	// for a few escapes.
	size := len(`{,"data":}`) + len(data) + 16
	for _, a := range ev.Attrs {
		size += len(a.Name) + len(a.Value) + len(`,"":""`)
	}
	b := make([]byte, 0, size+size/16)
	b = append(b, '{')
	for i, a := range ev.Attrs {
		if i > 0 {
			b = append(b, ',')
		}
		b = signature.AppendQuote(b, a.Name)
		b = append(b, ':')
		b = signature.AppendQuote(b, a.Value)
	}
	b = append(b, `,"data":`...)
	start := len(b)
	if nonFinite && bytes.ContainsAny(data, "NI") {
		b = signature.AppendJSONSafe(b, data)
	} else {
		b = append(b, data...)
	}
	ev.Payload = b[start:]
	b = append(b, '}')
	ev.JSON = b
}

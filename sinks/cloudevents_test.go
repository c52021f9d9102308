package sinks

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestMessageData(t *testing.T) {
	tests := []struct {
		name, body, want string
		err              bool
	}{
		{name: "hookbridge's shape", body: `{"specversion":"1.0","id":"a\"b\\","data":{"task_id":"t","n":1.0}}`, want: `{"task_id":"t","n":1.0}`},
		{name: "data not last", body: `{"data":[1,{"a":"}"}],"id":"x"}`, want: `[1,{"a":"}"}]`},
		{name: "data inside data is not the data", body: `{"x":{"data":1},"data":"s\"}"}`, want: `"s\"}"`},
		{name: "escaped quote before the key", body: `{"k":"\\","data":true}`, want: `true`},
		{name: "spaces", body: " {\n \"id\" : \"x\" ,\t\"data\" :  -1.5e3 \n} ", want: `-1.5e3`},
		{name: "null data", body: `{"data":null}`, want: `null`},
		{name: "no data", body: `{"id":"x"}`, want: ``},
		{name: "empty object", body: `{}`, want: ``},
		{name: "empty body", body: ``, err: true},
		{name: "not an object", body: `["data",1]`, err: true},
		{name: "truncated", body: `{"id":"x","data":{"a":1`, err: true},
		{name: "unterminated string", body: `{"id":"x`, err: true},
		{name: "control character in a string", body: "{\"id\":\"a\x01\",\"data\":1}", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Message{Body: []byte(tt.body)}
			got, err := m.Data()
			if (err != nil) != tt.err || string(got) != tt.want {
				t.Errorf("Data() = %q, %v; want %q, error %v", got, err, tt.want, tt.err)
			}
			if err != nil && !errors.Is(err, errNotStructured) {
				t.Errorf("error %v does not say the body is not a structured CloudEvent", err)
			}
		})
	}
}

// FuzzMessageData holds Data to encoding/json: on any valid JSON object
// whose member names have no escapes, it finds the value encoding/json
// finds for the first "data" member, byte for byte, and it never fails on
// valid JSON.
func FuzzMessageData(f *testing.F) {
	for _, s := range []string{`{"id":"x","data":{"a":[1,2.50,"é"]}}`, `{"data":1}`, `{}`, `{"a":{"data":2},"data":[]}`, ` { "data" : "\u00e9\\" } `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := (&Message{Body: body}).Data()
		if !json.Valid(body) {
			return // anything but a panic will do
		}
		d := json.NewDecoder(bytes.NewReader(body))
		if tok, _ := d.Token(); tok != json.Delim('{') {
			if err == nil {
				t.Fatalf("%q is not an object, yet Data() = %q", body, got)
			}
			return
		}
		if err != nil {
			t.Fatalf("Data(%q) failed on valid JSON: %v", body, err)
		}
		var want []byte
		for d.More() {
			key, _ := d.Token()
			var v json.RawMessage
			if err := d.Decode(&v); err != nil {
				t.Fatal(err)
			}
			if key == "data" && want == nil {
				want = v
			}
		}
		if bytes.Contains(body, []byte(`\`)) && !bytes.Equal(got, want) {
			return // an escaped member name ("d\u0061ta") is not hookbridge's: not compared
		}
		if !bytes.Equal(bytes.TrimSpace(got), want) && !(want == nil && got == nil) {
			t.Fatalf("Data(%q) = %q, encoding/json finds %q", body, got, want)
		}
	})
}

func TestContentModeCheck(t *testing.T) {
	for _, m := range []ContentMode{Structured, Binary} {
		if err := m.Check("content_mode"); err != nil {
			t.Errorf("%q: %v", m, err)
		}
	}
	for _, m := range []ContentMode{"", "Binary", "hybrid"} {
		err := m.Check("content_mode")
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != "content_mode" || !strings.Contains(ce.Problem, `use "structured"`) {
			t.Errorf("%q: %v, want a ConfigError for content_mode naming the modes", m, err)
		}
	}
	var m ContentMode
	m.SetDefault()
	if m != Structured {
		t.Errorf("default mode %q", m)
	}
}

// TestTraceHeaders: the publish's trace context wins over the event's
// attributes, which are the fallback; a tracestate without a traceparent
// is dropped; and finding them allocates nothing, since every sink calls
// it once per message.
func TestTraceHeaders(t *testing.T) {
	const (
		eventParent   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		publishParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"
	)
	attrs := func(a ...string) []Attr {
		var out []Attr
		for i := 0; i < len(a); i += 2 {
			out = append(out, Attr{Name: a[i], Value: a[i+1]})
		}
		return out
	}
	tests := []struct {
		name          string
		m             Message
		parent, state string
	}{
		{"nothing", Message{Attrs: attrs("id", "e1")}, "", ""},
		{"the event's", Message{Attrs: attrs("id", "e1", "traceparent", eventParent, "tracestate", "a=1")}, eventParent, "a=1"},
		{"the event's, no tracestate", Message{Attrs: attrs("traceparent", eventParent)}, eventParent, ""},
		{"the event's tracestate alone", Message{Attrs: attrs("tracestate", "a=1")}, "", ""},
		{"the publish's wins", Message{Attrs: attrs("traceparent", eventParent, "tracestate", "a=1"), Trace: TraceContext{Parent: publishParent, State: "b=2"}}, publishParent, "b=2"},
		// The publish's context is a whole: the event's tracestate
		// belongs to the event's parent, not to the publish's.
		{"the publish's, no tracestate", Message{Attrs: attrs("traceparent", eventParent, "tracestate", "a=1"), Trace: TraceContext{Parent: publishParent}}, publishParent, ""},
		{"the publish's on an untraced event", Message{Attrs: attrs("id", "e1"), Trace: TraceContext{Parent: publishParent, State: "b=2"}}, publishParent, "b=2"},
		{"a publish tracestate alone is no context", Message{Attrs: attrs("traceparent", eventParent, "tracestate", "a=1"), Trace: TraceContext{State: "b=2"}}, eventParent, "a=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := [2]Attr{{"traceparent", tt.parent}, {"tracestate", tt.state}}
			if got := tt.m.TraceHeaders(); got != want {
				t.Errorf("TraceHeaders() = %v, want %v", got, want)
			}
			if n := testing.AllocsPerRun(100, func() { _ = tt.m.TraceHeaders() }); n != 0 {
				t.Errorf("TraceHeaders allocates %v times, want none", n)
			}
		})
	}
}

// BenchmarkMessageData finds data in a typical structured body: eight
// attributes, then a 130-byte payload.
func BenchmarkMessageData(b *testing.B) {
	m := Message{Body: []byte(`{"specversion":"1.0","id":"3f1c9a7e5b2d4c6e8a0b1c2d3e4f5a6b","source":"browser-use","type":"com.browser-use.agent.task.status_update","subject":"5b73fb3f-a3cb-4912-be40-17ce9e9e1a45","time":"2025-05-25T09:22:22.269116Z","status":"finished","datacontenttype":"application/json","data":{"session_id":"cd9cc7bf-e3af-4181-80a2-73f083bc94b4","status":"finished","task_id":"5b73fb3f-a3cb-4912-be40-17ce9e9e1a45"}}`)}
	b.SetBytes(int64(len(m.Body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Data(); err != nil {
			b.Fatal(err)
		}
	}
}

package event

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/signature"
)

func normalize(t *testing.T, source, ts, body string) (*Event, error) {
	t.Helper()
	var cz signature.Canonicalizer
	c, err := cz.Canonicalize([]byte(body))
	if err != nil {
		t.Fatalf("canonicalize %s: %v", body, err)
	}
	return Normalize(source, ts, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), c, Trace{})
}

// cloudEvent decodes an event's JSON with the standard library: what a
// consumer sees.
func cloudEvent(t *testing.T, ev *Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(ev.JSON, &m); err != nil {
		t.Fatalf("event JSON does not decode: %v\n%s", err, ev.JSON)
	}
	return m
}

func TestNormalizeShapes(t *testing.T) {
	tests := []struct {
		name   string
		ts     string
		body   string
		want   map[string]any // every top-level CloudEvents member
		status string
		test   bool
	}{
		{
			name: "envelope",
			ts:   "1748164942",
			body: `{"type": "agent.task.status_update", "timestamp": "2025-05-25T09:22:22.269116+00:00", "payload": {"session_id": "s1", "task_id": "t1", "status": "finished", "metadata": {"campaign": "q4", "team": "marketing"}, "extra": [1, 2.50]}}`,
			want: map[string]any{
				"specversion": "1.0", "source": "browser-use", "type": "com.browser-use.agent.task.status_update",
				"subject": "t1", "time": "2025-05-25T09:22:22.269116Z", "datacontenttype": "application/json", "status": "finished",
				"data": map[string]any{"session_id": "s1", "task_id": "t1", "status": "finished",
					"metadata": map[string]any{"campaign": "q4", "team": "marketing"}, "extra": []any{1.0, 2.5}},
			},
			status: "finished",
		},
		{
			name: "flat takes the header time",
			ts:   "1776397250",
			body: `{"session_id": "s1", "task_id": "t1", "status": "initializing"}`,
			want: map[string]any{
				"specversion": "1.0", "source": "browser-use", "type": "com.browser-use.agent.task.status_update",
				"subject": "t1", "time": "2026-04-17T03:40:50Z", "datacontenttype": "application/json", "status": "initializing",
				"data": map[string]any{"session_id": "s1", "task_id": "t1", "status": "initializing"},
			},
			status: "initializing",
		},
		{
			name: "flat with an unparseable header time takes receipt time",
			ts:   "yesterday",
			body: `{"status": "started"}`,
			want: map[string]any{
				"specversion": "1.0", "source": "browser-use", "type": "com.browser-use.agent.task.status_update",
				"time": "2026-01-02T03:04:05Z", "datacontenttype": "application/json", "status": "started",
				"data": map[string]any{"status": "started"},
			},
			status: "started",
		},
		{
			name: "envelope without offset is UTC; unknown status and type kept",
			ts:   "1",
			body: `{"type":"agent.task.v2","timestamp":"2025-05-25T09:22:22","payload":{"task_id":"t","status":"timed_out","metadata":null}}`,
			want: map[string]any{
				"specversion": "1.0", "source": "browser-use", "type": "com.browser-use.agent.task.v2",
				"subject": "t", "time": "2025-05-25T09:22:22Z", "datacontenttype": "application/json", "status": "timed_out",
				"data": map[string]any{"task_id": "t", "status": "timed_out", "metadata": nil},
			},
			status: "timed_out",
		},
		{
			name: "envelope extras and a bad timestamp travel in an extension",
			ts:   "1776397250",
			body: `{"type":"agent.task.status_update","timestamp":"soon","version":2,"payload":{"status":"paused"}}`,
			want: map[string]any{
				"specversion": "1.0", "source": "browser-use", "type": "com.browser-use.agent.task.status_update",
				"time": "2026-04-17T03:40:50Z", "datacontenttype": "application/json", "status": "paused",
				"browseruseenvelope": `{"timestamp":"soon","version":2}`,
				"data":               map[string]any{"status": "paused"},
			},
			status: "paused",
		},
		{
			name: "non-finite numbers become strings in data",
			ts:   "1776397250",
			body: `{"status":"finished","a":NaN,"b":Infinity,"c":-Infinity,"d":1e400,"s":"NaN"}`,
			want: map[string]any{
				"specversion": "1.0", "source": "browser-use", "type": "com.browser-use.agent.task.status_update",
				"time": "2026-04-17T03:40:50Z", "datacontenttype": "application/json", "status": "finished",
				"data": map[string]any{"status": "finished", "a": "NaN", "b": "Infinity", "c": "-Infinity", "d": "Infinity", "s": "NaN"},
			},
			status: "finished",
		},
		{
			name: "flat test ping",
			ts:   "1776397250",
			body: `{"test": "ok"}`,
			want: map[string]any{
				"specversion": "1.0", "source": "browser-use", "type": "com.browser-use.agent.task.status_update",
				"time": "2026-04-17T03:40:50Z", "datacontenttype": "application/json",
				"data": map[string]any{"test": "ok"},
			},
			test: true,
		},
		{
			name: "envelope test ping",
			ts:   "1776397250",
			body: `{"type": "test", "timestamp": "2024-03-21T12:00:00Z", "payload": {"test": "ok"}}`,
			want: map[string]any{
				"specversion": "1.0", "source": "browser-use", "type": "com.browser-use.test",
				"time": "2024-03-21T12:00:00Z", "datacontenttype": "application/json",
				"data": map[string]any{"test": "ok"},
			},
			test: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := normalize(t, "browser-use", tt.ts, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			got := cloudEvent(t, ev)
			if got["id"] != ev.ID || len(ev.ID) != 32 {
				t.Errorf("id = %v, Event.ID = %q", got["id"], ev.ID)
			}
			delete(got, "id")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("event =\n%v\nwant\n%v", got, tt.want)
			}
			if ev.Status != tt.status || ev.Test != tt.test {
				t.Errorf("Status, Test = %q, %v; want %q, %v", ev.Status, ev.Test, tt.status, tt.test)
			}
			// Every attribute in the JSON is also in Attrs (the headers), and
			// the other way round.
			for _, a := range ev.Attrs {
				if v, ok := got[a.Name]; a.Name != "id" && (!ok || v != a.Value) {
					t.Errorf("attr %s = %q, JSON has %v", a.Name, a.Value, v)
				}
			}
			if len(ev.Attrs) != len(got) { // got lacks id and has data
				t.Errorf("%d attrs for %d JSON members", len(ev.Attrs), len(got))
			}
		})
	}
}

// TestNormalizeLossless checks that data carries every member of the task
// payload, unicode and big numbers included, as a standard JSON decoder
// reads them.
func TestNormalizeLossless(t *testing.T) {
	body := `{"task_id":"t","status":"finished","note":"h\u00e9llo ✓ 🎉 \u2028 <&>","big":18446744073709551617,"f":1.50,"nested":{"b":[true,false,null],"a":{}},"metadata":{"k":"v"}}`
	ev, err := normalize(t, "s", "1", body)
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	dec := json.NewDecoder(stringsReader(body))
	dec.UseNumber()
	if err := dec.Decode(&want); err != nil {
		t.Fatal(err)
	}
	dec = json.NewDecoder(stringsReader(string(ev.Payload)))
	dec.UseNumber()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	// 1.50 is 1.5 in canonical form: the same number.
	want.(map[string]any)["f"] = json.Number("1.5")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("data =\n%v\nwant\n%v", got, want)
	}
}

func TestNormalizeIDs(t *testing.T) {
	env := `{"type":"agent.task.status_update","timestamp":"2025-05-25T09:22:22Z","payload":{"task_id":"t","status":"finished"}}`
	envSpaced := `{"payload": {"status": "finished", "task_id": "t"}, "timestamp": "2025-05-25T09:22:22Z", "type": "agent.task.status_update"}`
	flat := `{"task_id":"t","status":"finished"}`
	id := func(source, ts, body string) string {
		ev, err := normalize(t, source, ts, body)
		if err != nil {
			t.Fatal(err)
		}
		return ev.ID
	}
	if id("s", "1", env) != id("s", "2", env) {
		t.Error("a redelivered envelope (new header timestamp) changed id")
	}
	if id("s", "1", env) != id("s", "1", envSpaced) {
		t.Error("the same envelope serialized differently changed id")
	}
	if id("s", "1", flat) == id("s", "2", flat) {
		t.Error("two flat deliveries at different times share an id: distinct events would be merged")
	}
	if first, again := id("s", "1", flat), id("s", "1", flat); first != again {
		t.Error("the same flat delivery changed id")
	}
	if id("a", "1", env) == id("b", "1", env) {
		t.Error("two sources share an id")
	}
}

func TestNormalizeErrors(t *testing.T) {
	for _, body := range []string{
		`{}`,
		`{"task_id":"t"}`,
		`{"status":null}`,
		`{"status":3}`,
		`{"type":"agent.task.status_update","payload":{"task_id":"t"}}`,
		`{"type":"agent.task.status_update","status":"finished","payload":{"task_id":"t"}}`,
	} {
		if _, err := normalize(t, "s", "1", body); !errors.Is(err, ErrNoStatus) {
			t.Errorf("%s: err = %v, want ErrNoStatus", body, err)
		}
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

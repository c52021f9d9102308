package queue

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/sinks"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

func testRecord(body string) Record {
	return Record{
		Sink: "nats",
		Message: sinks.Message{
			Target: "events.nats", Key: "task-id", ID: "id",
			Attrs: []sinks.Attr{{Name: "id", Value: "id"}, {Name: "type", Value: "com.browser-use.task"}},
			Body:  []byte(body),
		},
		Received: t0,
	}
}

func TestDecodeGarbage(t *testing.T) {
	r := testRecord("some body")
	r.NextTry, r.Died, r.Reason, r.LastError, r.Attempts = t0, t0, "why", "err", 7
	good := Marshal(&r)
	got, err := Unmarshal(9, good)
	if err != nil {
		t.Fatal(err)
	}
	// Decoded times are local and without a monotonic reading: compare
	// them with Equal, and the rest as it is.
	if got.Seq != 9 || !got.Received.Equal(r.Received) || !got.NextTry.Equal(r.NextTry) || !got.Died.Equal(r.Died) {
		t.Errorf("decoded %+v, want %+v", got, r)
	}
	got.Seq, got.Received, got.NextTry, got.Died = 0, r.Received, r.NextTry, r.Died
	if !reflect.DeepEqual(got, r) {
		t.Errorf("decoded %+v, want %+v", got, r)
	}

	cases := map[string][]byte{
		"empty":           {},
		"version":         append([]byte{2}, good[1:]...),
		"flags":           append([]byte{formatV1, 0x80}, good[2:]...),
		"trailing":        append(append([]byte{}, good...), 0),
		"huge length":     append(append([]byte{}, good[:len(good)-len("some body")-1]...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"bad varint":      {formatV1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"attribute count": {formatV1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
	}
	for i := range len(good) {
		cases[fmt.Sprintf("truncated at %d", i)] = good[:i]
	}
	for name, b := range cases {
		if _, err := decodeRecord(1, b); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: err %v", name, err)
		}
	}
	// Every single-byte corruption either decodes or errors: never panics.
	for i := range good {
		for _, x := range []byte{0x00, 0x01, 0x7f, 0x80, 0xff} {
			b := bytes.Clone(good)
			b[i] = x
			decodeRecord(1, b)
			Summarize(b)
		}
	}
}

// TestTraceContextTravels: a record's trace context survives the
// encoding; a record without one encodes exactly as before tracing
// existed (no flag, no bytes), so old and new records read alike.
func TestTraceContextTravels(t *testing.T) {
	plain := testRecord("body")
	traced := testRecord("body")
	traced.Trace = sinks.TraceContext{Parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", State: "rojo=00f067aa0ba902b7"}

	got, err := Unmarshal(1, Marshal(&traced))
	if err != nil {
		t.Fatal(err)
	}
	if got.Trace != traced.Trace {
		t.Errorf("trace context %+v, want %+v", got.Trace, traced.Trace)
	}
	if traced.Size() != plain.Size()+int64(len(traced.Trace.Parent)+len(traced.Trace.State)) {
		t.Errorf("Size %d does not count the trace context (untraced %d)", traced.Size(), plain.Size())
	}

	old := Marshal(&plain)
	if old[1]&flagTrace != 0 {
		t.Fatalf("an untraced record has the trace flag: %x", old[:2])
	}
	// What the build before tracing wrote for the same record (Marshal at
	// d0d7eed): the flag's absence alone would not show that no bytes
	// were added.
	const before = "01027400aab4fad8d181d6a830046e6174730b6576656e74732e6e617473077461736b2d6964026964000002026964026964047479706514636f6d2e62726f777365722d7573652e7461736b04626f6479"
	if got := hex.EncodeToString(old); got != before {
		t.Errorf("an untraced record encodes as %s, before tracing %s", got, before)
	}
	if got, err := Unmarshal(1, old); err != nil || got.Trace != (sinks.TraceContext{}) {
		t.Errorf("untraced record: trace %+v, err %v", got.Trace, err)
	}
	// The flag with an empty traceparent is not a record this build wrote.
	bad := plain
	bad.Trace = sinks.TraceContext{Parent: "x"}
	b := Marshal(&bad)
	i := bytes.Index(b, []byte("\x01x"))
	if i < 0 || bytes.Count(b, []byte("\x01x")) != 1 {
		// Elsewhere, emptying it would fail the decoding for another
		// reason, and the check below would pass without the flag's.
		t.Fatal("traceparent not found once in the encoding")
	}
	b = append(b[:i:i], append([]byte{0}, b[i+2:]...)...)
	if _, err := Unmarshal(1, b); !errors.Is(err, errCorrupt) {
		t.Errorf("empty traceparent under the flag: err %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	r := testRecord("body")
	f.Add(encodeRecord(&r, r.Size()))
	r.Trace = sinks.TraceContext{Parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	f.Add(encodeRecord(&r, r.Size()))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord(1, b)
		if err != nil {
			return
		}
		// What decodes must re-encode to a value that decodes the same.
		sum, _ := Summarize(b)
		again, err := decodeRecord(1, encodeRecord(&rec, sum.Size))
		if err != nil || !reflect.DeepEqual(again.Message, rec.Message) || again.Trace != rec.Trace {
			t.Fatalf("round trip: %v", err)
		}
	})
}

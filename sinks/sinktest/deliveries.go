package sinktest

import (
	"fmt"
	"strings"
)

// The webhook bodies the hot path's benchmarks share (canonicalize and
// verify, normalize, the whole handler), as Browser Use's Python sender
// writes them (json.dumps defaults: insertion order, ", " and ": "), so
// that their figures compare.
var (
	// Delivery200 is a ~200-byte status update in the envelope form.
	Delivery200 = []byte(`{"type": "agent.task.status_update", "timestamp": "2025-05-25T09:22:22.269116+00:00", "payload": {"session_id": "cd9cc7bf-e3af-4181-80a2-73f083bc94b4", "task_id": "5b73fb3f-a3cb-4912-be40-17ce9e9e1a45", "status": "finished"}}`)
	// DeliveryFlat200 is a ~200-byte status update in the older flat
	// form, which has no time of its own.
	DeliveryFlat200 = []byte(`{"session_id": "cd9cc7bf-e3af-4181-80a2-73f083bc94b4", "task_id": "5b73fb3f-a3cb-4912-be40-17ce9e9e1a45", "status": "finished", "updated_at": "2025-05-25T09:22:22.269116+00:00"}`)
)

// Delivery20K returns a ~20 KB envelope with metadata and nested data of
// every kind: non-ASCII text, escapes, floats, booleans, nulls.
func Delivery20K() []byte {
	var b strings.Builder
	b.WriteString(`{"type": "agent.task.status_update", "timestamp": "2025-05-25T09:22:22.269116+00:00", "payload": {"session_id": "cd9cc7bf-e3af-4181-80a2-73f083bc94b4", "task_id": "5b73fb3f-a3cb-4912-be40-17ce9e9e1a45", "status": "finished", "metadata": {"campaign": "q4-automation", "team": "marketing", "owner": "J\u00fcrgen \u00d8stergaard", "note": "r\u00e9sum\u00e9 \u2713 \ud83d\ude80"}, "steps": [`)
	for i := 0; b.Len() < 20000; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"step": %d, "url": "https://example.com/items/%d?q=a&b=c", "title": "Item %d \u2014 caf\u00e9", "duration_s": %g, "ok": %t, "tokens": [%d, %d, %d], "extracted": {"price": %d.%02d, "currency": "EUR", "tags": ["a", "b"], "description": "line one\nline two \"quoted\""}, "error": null}`,
			i, i*7, i, float64(i)*0.37+0.1, i%3 != 0, i, i*i, i*31, 10+i, i%100)
	}
	b.WriteString(`]}}`)
	return []byte(b.String())
}

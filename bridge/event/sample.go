package event

import (
	"maps"
	"slices"
	"time"

	"github.com/hookbridge/hookbridge/bridge/signature"
)

// Sample is a webhook body as Browser Use sends it, for `hookbridge send`
// and for tests: the current envelope form, or the older flat form.
type Sample struct {
	Status    string
	TaskID    string
	SessionID string
	// Time is the envelope's timestamp (the flat form has none).
	Time time.Time
	// Metadata is the task's user-defined metadata, in the envelope form.
	Metadata map[string]string
	// Flat writes the older flat form instead of the envelope.
	Flat bool
	// Test writes the test delivery the dashboard sends when a webhook is
	// created, instead of a status update.
	Test bool
}

// Body writes the sample the way Browser Use's Python sender does
// (json.dumps with its default ", " and ": " separators).
func (s Sample) Body() []byte {
	q := func(v string) string { return string(signature.AppendQuote(nil, v)) }
	ts := q(s.Time.UTC().Format("2006-01-02T15:04:05.000000+00:00"))
	switch {
	case s.Test && s.Flat:
		return []byte(`{"test": "ok"}`)
	case s.Test:
		return []byte(`{"type": "test", "timestamp": ` + ts + `, "payload": {"test": "ok"}}`)
	case s.Flat:
		return []byte(`{"session_id": ` + q(s.SessionID) + `, "task_id": ` + q(s.TaskID) + `, "status": ` + q(s.Status) + `}`)
	}
	b := []byte(`{"type": "agent.task.status_update", "timestamp": ` + ts + `, "payload": {"session_id": ` + q(s.SessionID) +
		`, "task_id": ` + q(s.TaskID) + `, "status": ` + q(s.Status))
	if len(s.Metadata) > 0 {
		b = append(b, `, "metadata": {`...)
		for i, k := range slices.Sorted(maps.Keys(s.Metadata)) {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = append(b, q(k)+": "+q(s.Metadata[k])...)
		}
		b = append(b, '}')
	}
	return append(b, "}}"...)
}

package sinktest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/hookbridge/hookbridge/sinks"
)

// CloudEvent is what tests read of a structured CloudEvent a broker holds:
// its context attributes and the task payload hookbridge puts in data.
type CloudEvent struct {
	SpecVersion string `json:"specversion"`
	ID          string `json:"id"`
	Source      string `json:"source"`
	Type        string `json:"type"`
	Subject     string `json:"subject"`
	Time        string `json:"time"`
	Status      string `json:"status"`
	Data        struct {
		TaskID   string            `json:"task_id"`
		Status   string            `json:"status"`
		Metadata map[string]string `json:"metadata"`
	} `json:"data"`
}

// N is the event's data.metadata.n, the sequence number tests put in the
// events of one task to check their order; -1 when there is none.
func (ce CloudEvent) N() int {
	n, err := strconv.Atoi(ce.Data.Metadata["n"])
	if err != nil {
		return -1
	}
	return n
}

// ParseCloudEvent decodes a structured CloudEvent's JSON.
func ParseCloudEvent(body []byte) (CloudEvent, error) {
	var ce CloudEvent
	if err := json.Unmarshal(body, &ce); err != nil {
		return CloudEvent{}, fmt.Errorf("not a CloudEvent: %w: %.200s", err, body)
	}
	if ce.SpecVersion != "1.0" || ce.ID == "" {
		return CloudEvent{}, fmt.Errorf("not a CloudEvent 1.0 (specversion %q, id %q): %.200s", ce.SpecVersion, ce.ID, body)
	}
	return ce, nil
}

// ReadCloudEvent is ParseCloudEvent failing the test.
func ReadCloudEvent(t testing.TB, body []byte) CloudEvent {
	t.Helper()
	ce, err := ParseCloudEvent(body)
	if err != nil {
		t.Fatal(err)
	}
	return ce
}

// Event returns a message for target shaped like the ones the bridge
// builds: key is the task id (Message.Key and the "subject" attribute),
// id the event id (Message.ID and the "id" attribute), the CloudEvents
// attributes the bridge sets, in its order, and a structured CloudEvent
// body on one line whose data holds non-ASCII text and escapes.
func Event(target, key, id string) sinks.Message {
	const (
		source = "https://api.browser-use.com"
		typ    = "com.browser-use.task.finished"
		time   = "2026-01-02T03:04:05Z"
	)
	body, err := json.Marshal(map[string]any{
		"specversion": "1.0", "id": id, "source": source, "type": typ, "subject": key, "time": time,
		"status": "finished", "datacontenttype": "application/json",
		"data": map[string]string{"task_id": key, "status": "finished", "note": "résumé ✓ 🚀 \"quoted\" \\ back\\slash"},
	})
	if err != nil {
		panic(err) // strings always marshal
	}
	return sinks.Message{
		Target: target, Key: key, ID: id,
		Attrs: []sinks.Attr{
			{Name: "specversion", Value: "1.0"},
			{Name: "id", Value: id},
			{Name: "source", Value: source},
			{Name: "type", Value: typ},
			{Name: "subject", Value: key},
			{Name: "time", Value: time},
			{Name: "datacontenttype", Value: "application/json"},
			{Name: "status", Value: "finished"},
		},
		Body: body,
	}
}

// BodyID returns the "id" of a structured CloudEvent body, "" when body is
// not one: where a structured message keeps its event id.
func BodyID(body []byte) string {
	var ev struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(body, &ev) != nil {
		return ""
	}
	return ev.ID
}

package sinktest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/hookbridge/hookbridge/sinks"
)

// Message returns a message for target whose body is a small structured
// CloudEvent with id, the task "task-"+id as its key.
func Message(id, target string) sinks.Message {
	return sinks.Message{
		Target: target, Key: "task-" + id, ID: id,
		Attrs: []sinks.Attr{{Name: "specversion", Value: "1.0"}, {Name: "id", Value: id}, {Name: "status", Value: "finished"}},
		Body:  []byte(`{"specversion":"1.0","id":"` + id + `","data":{"task_id":"task-` + id + `"}}`),
	}
}

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

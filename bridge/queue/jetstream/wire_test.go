package jetstream

import (
	"testing"

	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/sinks"
)

// TestWireLayout pins the spool's names in NATS. Running streams hold
// messages under them: a test that fails here means a change that strands
// what older replicas wrote.
func TestWireLayout(t *testing.T) {
	l := layout{prefix: "hookbridge.spool", partitions: 16}
	rec := &queue.Record{Sink: "bus", Message: sinks.Message{ID: "0f1e", Target: "task.finished", Key: "task-7"}}
	for _, tt := range []struct{ got, want string }{
		{l.all(), "hookbridge.spool.>"},
		{l.waiting("bus", 3), "hookbridge.spool.q.bus.3"},
		{l.waitingFor("bus"), "hookbridge.spool.q.bus.>"},
		{l.waitingPrefix("bus"), "hookbridge.spool.q.bus."},
		{l.anyWaiting(), "hookbridge.spool.q.>"},
		{l.dead("bus"), "hookbridge.spool.dead.bus"},
		{l.deadPrefix(), "hookbridge.spool.dead."},
		{l.anyDead(), "hookbridge.spool.dead.>"},
		{l.subjectOf(rec), "hookbridge.spool.q.bus.12"},
		{consumerName("bus", 3), "hookbridge_bus_3"},
		{msgID(rec), "0f1e:bus:task.finished"},
		{deadMsgID(rec), "0f1e:bus:task.finished:dead"},
		{replayMsgID(rec, 42), "0f1e:bus:task.finished:replay:42"},
		{buryMsgID("HOOKBRIDGE_SPOOL", 42), "HOOKBRIDGE_SPOOL:bury:42"},
		{partitionsKey, "hookbridge_partitions"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// TestPartitionIsStable pins the lane hash: every replica, of any
// release, must put a task's messages in the same lane.
func TestPartitionIsStable(t *testing.T) {
	l := layout{prefix: "p", partitions: 16}
	for _, tt := range []struct {
		key, id string
		want    int
	}{
		{"task-7", "x", 12}, // FNV-1a 32 of the key, mod 16, computed independently
		{"5b73fb3f-a3cb-4912-be40-17ce9e9e1a45", "x", 8},
		{"", "0f1e", l.partition("0f1e", "")}, // no task: the event id
	} {
		if got := l.partition(tt.key, tt.id); got != tt.want {
			t.Errorf("partition(%q, %q) = %d, want %d", tt.key, tt.id, got, tt.want)
		}
	}
	if a, b := (layout{partitions: 1}).partition("a", ""), (layout{partitions: 1}).partition("b", ""); a != 0 || b != 0 {
		t.Errorf("one partition: lanes %d and %d", a, b)
	}
}

func TestParseSubject(t *testing.T) {
	l := layout{prefix: "hb.spool", partitions: 4}
	for _, tt := range []struct {
		subject  string
		sink     string
		dead, ok bool
	}{
		{"hb.spool.q.bus.3", "bus", false, true},
		{"hb.spool.dead.bus", "bus", true, true},
		{"hb.spool.dead.", "", false, false},
		{"hb.spool.other.x", "", false, false},
		{"other.q.bus.1", "", false, false},
	} {
		sink, dead, ok := l.parse(tt.subject)
		if sink != tt.sink || dead != tt.dead || ok != tt.ok {
			t.Errorf("parse(%q) = %q, %v, %v; want %q, %v, %v", tt.subject, sink, dead, ok, tt.sink, tt.dead, tt.ok)
		}
	}
	for _, tt := range []struct {
		name string
		lane int
		ok   bool
	}{
		{"hookbridge_bus_3", 3, true},
		{"hookbridge_my_sink_12", 12, true},
		{"theirs_3", 0, false},
		{"hookbridge_bus_x", 0, false},
	} {
		if lane, ok := consumerLane(tt.name); lane != tt.lane || ok != tt.ok {
			t.Errorf("consumerLane(%q) = %d, %v; want %d, %v", tt.name, lane, ok, tt.lane, tt.ok)
		}
	}
}

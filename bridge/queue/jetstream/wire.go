package jetstream

import (
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/hookbridge/hookbridge/bridge/queue"
)

// This file is the spool's layout in NATS: subjects, consumer names,
// message ids and the stream's metadata. It is a contract with streams
// that running replicas (of this and of older releases) have written:
// change nothing here without a migration, and keep wire_test.go, which
// pins every name, in step.
//
//	<prefix>.q.<sink>.<partition>   a message waiting for sink, in the task's lane
//	<prefix>.dead.<sink>            a dead letter of sink, read by no consumer
//	hookbridge_<sink>_<partition>   the durable consumer of one lane
//
// The message ids (Nats-Msg-Id) make the stream store a repeat once within
// its duplicates window:
//
//	<event id>:<sink>:<target>                     a waiting message
//	<event id>:<sink>:<target>:dead                its dead letter
//	<event id>:<sink>:<target>:replay:<sequence>   a dead letter put back in line
//	<stream>:bury:<sequence>                       an unreadable message moved aside

// partitionsKey is the stream metadata key recording the partition count
// its messages are laid out in.
const partitionsKey = "hookbridge_partitions"

// consumerPrefix starts every consumer name hookbridge makes.
const consumerPrefix = "hookbridge_"

// layout names the subjects of one stream.
type layout struct {
	prefix     string
	partitions int
}

// all is the stream's one subject filter.
func (l layout) all() string { return l.prefix + ".>" }

// waiting is where a message for sink in lane p waits.
func (l layout) waiting(sink string, p int) string {
	return l.prefix + ".q." + sink + "." + strconv.Itoa(p)
}

// waitingPrefix starts the subjects of every lane of sink.
func (l layout) waitingPrefix(sink string) string { return l.prefix + ".q." + sink + "." }

// waitingFor matches every lane of sink.
func (l layout) waitingFor(sink string) string { return l.waitingPrefix(sink) + ">" }

// anyWaiting matches every waiting message.
func (l layout) anyWaiting() string { return l.prefix + ".q.>" }

// dead is where sink's dead letters wait.
func (l layout) dead(sink string) string { return l.deadPrefix() + sink }

// deadPrefix starts every dead letter's subject.
func (l layout) deadPrefix() string { return l.prefix + ".dead." }

// anyDead matches every dead letter.
func (l layout) anyDead() string { return l.deadPrefix() + ">" }

// parse tells what a subject of the stream holds: a waiting message or a
// dead letter, and of which sink. ok is false for a subject of neither
// form.
func (l layout) parse(subject string) (sink string, dead, ok bool) {
	if sink, found := strings.CutPrefix(subject, l.deadPrefix()); found && sink != "" {
		return sink, true, true
	}
	if rest, found := strings.CutPrefix(subject, l.prefix+".q."); found {
		sink, _, _ := strings.Cut(rest, ".")
		return sink, false, sink != ""
	}
	return "", false, false
}

// partition is the lane of a task: a stable hash (FNV-1a, 32 bits) of its
// key, so that every replica puts a task's messages on the same subject.
// Messages without a task key spread by their event id.
func (l layout) partition(key, eventID string) int {
	if key == "" {
		key = eventID
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(l.partitions))
}

// subjectOf is where r waits.
func (l layout) subjectOf(r *queue.Record) string {
	return l.waiting(r.Sink, l.partition(r.Message.Key, r.Message.ID))
}

// consumerName is the durable consumer of sink's lane p.
func consumerName(sink string, p int) string { return consumerPrefix + sink + "_" + strconv.Itoa(p) }

// consumerLane returns the lane of a consumer hookbridge made, or false.
func consumerLane(name string) (int, bool) {
	if !strings.HasPrefix(name, consumerPrefix) {
		return 0, false
	}
	p, err := strconv.Atoi(name[strings.LastIndexByte(name, '_')+1:])
	return p, err == nil
}

// msgID is the id of a waiting message: an event goes to a (sink, target)
// once, whichever replica accepted it.
func msgID(r *queue.Record) string { return r.Message.ID + ":" + r.Sink + ":" + r.Message.Target }

// deadMsgID is the id of r's dead letter.
func deadMsgID(r *queue.Record) string { return msgID(r) + ":dead" }

// replayMsgID is the id of dead letter seq put back in line: its own, as
// the original's may still be in the duplicates window.
func replayMsgID(r *queue.Record, seq uint64) string {
	return msgID(r) + ":replay:" + strconv.FormatUint(seq, 10)
}

// buryMsgID is the id of unreadable message seq of stream moved aside.
func buryMsgID(stream string, seq uint64) string {
	return stream + ":bury:" + strconv.FormatUint(seq, 10)
}

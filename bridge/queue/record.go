package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hookbridge/hookbridge/sinks"
)

// Record is one message waiting for one sink.
type Record struct {
	// Seq is assigned by Append: increasing across the whole store, never
	// reused (also after restarts).
	Seq uint64
	// Sink is the sink's name.
	Sink string
	// Message is what to publish.
	Message sinks.Message
	// Received is when the webhook was accepted.
	Received time.Time
	// Attempts counts the failed publish attempts so far.
	Attempts int
	// NextTry is when the record is due again; zero means due now.
	NextTry time.Time
	// LastError is the last attempt's error, "" if none.
	LastError string
	// DeadLetter marks a record that forwards a dead letter to the
	// dead-letter target: if it dies too it is not forwarded again.
	DeadLetter bool
	// Reason says why a dead letter died (set by Kill).
	Reason string
	// Died is when a dead letter died (set by Kill).
	Died time.Time
	// Trace is the W3C trace context the record's delivery continues: the
	// span that queued it (a webhook's hookbridge.deliver span), empty
	// when it was queued untraced. It travels with the record, so a
	// publish from the spool hours later, or from another replica,
	// belongs to the webhook's trace.
	Trace sinks.TraceContext
}

// recordOverhead approximates what a record costs beyond its variable-length
// message fields: the backend's bookkeeping, the format header and the
// time stamps.
const recordOverhead = 64

// Size returns the approximate stored size of r: body, attributes, target,
// key, id and trace context plus a fixed overhead. It deliberately leaves out the fields
// that change while a record waits (LastError, Reason, Attempts) so that a
// record's share of Options.MaxBytes stays the same from Append to Done.
func (r *Record) Size() int64 {
	m := &r.Message
	n := int64(recordOverhead + len(m.Body) + len(m.Target) + len(m.Key) + len(m.ID) + len(r.Trace.Parent) + len(r.Trace.State))
	for _, a := range m.Attrs {
		n += int64(len(a.Name) + len(a.Value))
	}
	return n
}

// formatV1 is the first byte of every encoded record. A different value
// means a format this build does not understand, so decoding refuses it
// instead of guessing.
const formatV1 = 1

// Flag bits of the second byte. Times carry their own "present" bit because
// the zero time.Time has no UnixNano representation.
const (
	flagDeadLetter = 1 << iota
	flagReceived
	flagNextTry
	flagDied
	// flagTrace: the record carries a trace context (Record.Trace), after
	// its reason. Records written before tracing existed lack the flag
	// and decode as before; a build older than this one refuses a record
	// that has it (an unknown flag), rather than drop its trace silently.
	flagTrace
	flagsKnown = flagDeadLetter | flagReceived | flagNextTry | flagDied | flagTrace
)

// errCorrupt is returned (wrapped) for values that are not a complete record
// of a known format.
var errCorrupt = errors.New("corrupt spool record")

// encodeRecord returns the binary form of r (without Seq, which is the key).
//
// Layout (v1): version byte, flags byte, uvarint size (the Size() at encode
// time, so removal subtracts exactly what was added even if the formula
// changes later), uvarint attempts, varint unix-nano times for the flagged
// times (received, next try, died), then length-prefixed strings sink,
// target, key, id, last error, reason, the flagged trace context
// (traceparent, tracestate), uvarint attribute count with
// length-prefixed name/value pairs, and finally the length-prefixed body.
// It is binary rather than JSON because Append is on the webhook hot path.
func encodeRecord(r *Record, size int64) []byte {
	capacity := size + int64(len(r.Sink)+len(r.LastError)+len(r.Reason)) + 18*binary.MaxVarintLen64
	for range r.Message.Attrs {
		capacity += 2 * binary.MaxVarintLen64
	}
	return appendRecord(make([]byte, 0, capacity), r, size)
}

// appendRecord appends the encoding of r to b.
func appendRecord(b []byte, r *Record, size int64) []byte {
	m := &r.Message
	var flags byte
	if r.DeadLetter {
		flags |= flagDeadLetter
	}
	if !r.Received.IsZero() {
		flags |= flagReceived
	}
	if !r.NextTry.IsZero() {
		flags |= flagNextTry
	}
	if !r.Died.IsZero() {
		flags |= flagDied
	}
	if r.Trace.Parent != "" {
		flags |= flagTrace
	}
	b = append(b, formatV1, flags)
	b = binary.AppendUvarint(b, uint64(size))
	b = binary.AppendUvarint(b, uint64(max(r.Attempts, 0)))
	if flags&flagReceived != 0 {
		b = binary.AppendVarint(b, r.Received.UnixNano())
	}
	if flags&flagNextTry != 0 {
		b = binary.AppendVarint(b, r.NextTry.UnixNano())
	}
	if flags&flagDied != 0 {
		b = binary.AppendVarint(b, r.Died.UnixNano())
	}
	for _, s := range [...]string{r.Sink, m.Target, m.Key, m.ID, r.LastError, r.Reason} {
		b = appendString(b, s)
	}
	if flags&flagTrace != 0 {
		b = appendString(b, r.Trace.Parent)
		b = appendString(b, r.Trace.State)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Attrs)))
	for _, a := range m.Attrs {
		b = appendString(b, a.Name)
		b = appendString(b, a.Value)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Body)))
	return append(b, m.Body...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader walks an encoded record. The first failure sticks, so callers can
// read a whole record and check err once; every length is checked against
// what is left, so garbage yields errCorrupt rather than a panic or a huge
// allocation.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: bad %s", errCorrupt, what)
	}
}

func (r *reader) byte(what string) byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail(what)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes returns the next length-prefixed field without copying: the result
// aliases the input.
func (r *reader) bytes(what string) []byte {
	n := r.uvarint(what)
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail(what)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string(what string) string {
	return string(r.bytes(what))
}

// header reads the fixed part shared by decodeRecord and Summarize.
func (r *reader) header() (flags byte, size int64) {
	total := len(r.b) // the header comes first: this is the whole record
	if v := r.byte("version"); r.err == nil && v != formatV1 {
		r.err = fmt.Errorf("%w: unknown format version %d", errCorrupt, v)
	}
	flags = r.byte("flags")
	if r.err == nil && flags&^flagsKnown != 0 {
		r.fail("flags")
	}
	sz := r.uvarint("size")
	// Size() counts parts of the record plus a fixed overhead, so it can
	// never exceed the encoded length by more than that overhead: a larger
	// value is garbage, and trusting it would size allocations (found by
	// FuzzDecode).
	if r.err == nil && sz > uint64(total)+recordOverhead {
		r.fail("size")
	}
	return flags, int64(sz)
}

// schedule is the part of a record after its header and up to its task
// key: everything a dispatcher decides on. The byte fields alias the
// input.
type schedule struct {
	attempts                uint64
	received, nextTry, died time.Time // zero when the record has none
	sink, target, key       []byte
}

// schedule reads the schedule part of a record whose header said flags.
func (r *reader) schedule(flags byte) schedule {
	var s schedule
	s.attempts = r.uvarint("attempts")
	if flags&flagReceived != 0 {
		s.received = time.Unix(0, r.varint("received"))
	}
	if flags&flagNextTry != 0 {
		s.nextTry = time.Unix(0, r.varint("next try"))
	}
	if flags&flagDied != 0 {
		s.died = time.Unix(0, r.varint("died"))
	}
	s.sink = r.bytes("sink")
	s.target = r.bytes("target")
	s.key = r.bytes("key")
	return s
}

// decodeRecord parses val (as written by encodeRecord) into a Record with
// the given seq. The result owns its memory: nothing aliases val, which a
// backend may reuse.
func decodeRecord(seq uint64, val []byte) (Record, error) {
	r := reader{b: val}
	flags, _ := r.header()
	sc := r.schedule(flags)
	if r.err == nil && sc.attempts > math.MaxInt32 {
		r.fail("attempts")
	}
	rec := Record{
		Seq: seq, DeadLetter: flags&flagDeadLetter != 0, Attempts: int(sc.attempts),
		Received: sc.received, NextTry: sc.nextTry, Died: sc.died, Sink: string(sc.sink),
		Message: sinks.Message{Target: string(sc.target), Key: string(sc.key)},
	}
	rec.Message.ID = r.string("id")
	rec.LastError = r.string("last error")
	rec.Reason = r.string("reason")
	if flags&flagTrace != 0 {
		rec.Trace = sinks.TraceContext{Parent: r.string("traceparent"), State: r.string("tracestate")}
		if r.err == nil && rec.Trace.Parent == "" {
			r.fail("traceparent")
		}
	}
	n := r.uvarint("attribute count")
	// Every attribute takes at least two bytes, which bounds the allocation
	// for a garbled count.
	if r.err == nil && n > uint64(len(r.b)/2) {
		r.fail("attribute count")
	}
	if r.err == nil && n > 0 {
		rec.Message.Attrs = make([]sinks.Attr, n)
		for i := range rec.Message.Attrs {
			rec.Message.Attrs[i] = sinks.Attr{Name: r.string("attribute name"), Value: r.string("attribute value")}
		}
	}
	if body := r.bytes("body"); len(body) > 0 {
		rec.Message.Body = append([]byte(nil), body...)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return Record{}, r.err
	}
	return rec, nil
}

// Marshal encodes r, its Seq aside, in the record format both backends
// store: one versioned format, and one decoder that FuzzDecode hardens.
// The encoding carries r.Size(), the share of a queue's max_bytes the
// record takes.
func Marshal(r *Record) []byte { return encodeRecord(r, r.Size()) }

// MarshalSized is Marshal recording size instead of r.Size(): a backend
// that rewrites a record (a retry, a dead letter) keeps the size it was
// first counted with, so that its counters get back exactly what they
// added.
func MarshalSized(r *Record, size int64) []byte { return encodeRecord(r, size) }

// AppendMarshal is MarshalSized appending to b: a backend encodes
// straight into its write buffer.
func AppendMarshal(b []byte, r *Record, size int64) []byte { return appendRecord(b, r, size) }

// Unmarshal decodes what Marshal made; seq becomes the record's Seq. The
// result owns its memory.
func Unmarshal(seq uint64, b []byte) (Record, error) { return decodeRecord(seq, b) }

// Summary is what a backend indexes of an encoded record without
// decoding it: enough to count it, order it and schedule it. Its byte
// fields alias the encoded record.
type Summary struct {
	// Size is the size the record was counted with (see MarshalSized).
	Size int64
	// Sink and Key are the record's sink and task key.
	Sink, Key []byte
	// Received and NextTry are zero when the record has none.
	Received, NextTry time.Time
}

// Summarize reads an encoded record's Summary, checking its header but
// not decoding (or copying) the rest.
func Summarize(b []byte) (Summary, error) {
	r := reader{b: b}
	flags, size := r.header()
	s := r.schedule(flags)
	if r.err != nil {
		return Summary{}, r.err
	}
	return Summary{Size: size, Sink: s.sink, Key: s.key, Received: s.received, NextTry: s.nextTry}, nil
}

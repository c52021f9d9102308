package local

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/hookbridge/hookbridge/bridge/queue"
)

// state is the index of the log: every current record, where its latest
// version is, and the counters. Recovery builds it by replaying the log;
// the writer changes it as it builds each commit, with the same put and
// drop, so that the index after a restart is the index before it.
type state struct {
	mu    sync.Mutex
	recs  map[uint64]*entry    // every current record, pending or dead
	lists map[string]*sinkList // pending records by sink
	segs  []*segment           // oldest first; the last one is written
	next  uint64               // the Seq the next record gets
	count int64                // pending records; the others in recs are dead letters
	bytes int64                // their summed Size()

	cached     int64 // bytes of records held in memory (entry.rec)
	cacheLimit int64
	loading    bool // recovery: lists are sorted once at the end
	// peak is the most records recs held since it was last rebuilt: Go
	// maps keep their size, so one that held a long outage's backlog is
	// rebuilt once it is mostly empty (shrink).
	peak int
}

// shrink rebuilds recs once it holds an eighth of what it held at its
// peak, so that a drained backlog gives its memory back.
func (st *state) shrink() {
	n := len(st.recs)
	st.peak = max(st.peak, n)
	if st.peak < 1<<16 || n*8 > st.peak {
		return
	}
	recs := make(map[uint64]*entry, n)
	for seq, e := range st.recs {
		recs[seq] = e
	}
	st.recs, st.peak = recs, n
}

// deadLetters counts the dead letters: every current record is either
// pending or dead, so they need no counter of their own to keep right.
func (st *state) deadLetters() int { return len(st.recs) - int(st.count) }

// entry is a current record. It is kept small: a spool may index a
// million of them (config.SpoolIndexPerMessage, held to by
// TestIndexMemory).
type entry struct {
	seq     uint64
	nextTry int64     // unix nanoseconds; 0: due now
	off     int64     // where its latest version is in seg
	list    *sinkList // its sink's
	seg     *segment
	// rec is the record itself while cached, else nil: it is handed out
	// as it is (the fields it shares are never written), so delivering
	// decodes nothing.
	rec  *queue.Record
	key  string // its task key
	size uint32 // its share of max_bytes (a record is at most maxRecord)
	n    uint32 // its encoded length
	dead bool
	gone bool // no longer current: lists skip it
}

func (e *entry) bytes() int64 { return int64(e.size) }

// sinkList is one sink's pending records in Seq order. Removed records
// are marked gone and skipped, and swept out once they are many.
type sinkList struct {
	name    string
	entries []*entry
	holes   int // entries that are gone
}

// live counts the list's pending records.
func (l *sinkList) live() int { return len(l.entries) - l.holes }

func (l *sinkList) insert(e *entry, unsorted bool) {
	n := len(l.entries)
	if unsorted || n == 0 || l.entries[n-1].seq < e.seq {
		l.entries = append(l.entries, e)
		return
	}
	i, _ := slices.BinarySearchFunc(l.entries, e.seq, func(x *entry, seq uint64) int { return cmpSeq(x.seq, seq) })
	l.entries = slices.Insert(l.entries, i, e)
}

func (l *sinkList) remove(e *entry) {
	e.gone = true
	l.holes++
	i := 0
	for i < len(l.entries) && l.entries[i].gone {
		i++
	}
	if i > 0 {
		clear(l.entries[:i])
		l.entries = l.entries[i:]
		l.holes -= i
		if len(l.entries) == 0 {
			l.entries = nil // a drained backlog's array goes with it
		}
	}
	if l.holes > 64 && l.holes*2 > len(l.entries) {
		l.sweep()
	}
}

func (l *sinkList) sweep() {
	l.entries = slices.DeleteFunc(l.entries, func(e *entry) bool { return e.gone })
	l.holes = 0
}

// first returns the list's first pending record, nil if none.
func (l *sinkList) first() *entry {
	for _, e := range l.entries {
		if !e.gone {
			return e
		}
	}
	return nil
}

// list returns sink's list, creating it.
func (st *state) list(sink string) *sinkList {
	l := st.lists[sink]
	if l == nil {
		l = &sinkList{name: sink}
		st.lists[sink] = l
	}
	return l
}

// listOf is list for a name read from the log, allocating only for a new
// sink.
func (st *state) listOf(sink []byte) *sinkList {
	if l := st.lists[string(sink)]; l != nil {
		return l
	}
	return st.list(string(sink))
}

// put makes ne the current version of its record: a new record, or a
// record written again (a retry, a dead letter, a compaction). A record
// that stays where it was (pending for the same sink, or dead) is updated
// in place, keeping its place in its list.
func (st *state) put(ne entry) {
	ne.gone = false
	if ne.seq >= st.next {
		st.next = ne.seq + 1
	}
	if e := st.recs[ne.seq]; e != nil {
		if e.dead == ne.dead && (e.dead || e.list == ne.list) {
			st.release(e)
			if !e.dead {
				st.bytes += ne.bytes() - e.bytes()
			}
			*e = ne
			st.hold(e)
			return
		}
		st.drop(e)
	}
	e := new(entry)
	*e = ne
	st.recs[e.seq] = e
	st.hold(e)
	if e.dead {
		return
	}
	st.count++
	st.bytes += e.bytes()
	e.list.insert(e, st.loading)
}

// putNew indexes r, a new pending record whose put op the writer just
// added to b: its record starts at buffer position at and is n bytes
// long. r is kept as the cached record: it must not be written after.
func (st *state) putNew(r *queue.Record, size int64, b *batch, at, n int) {
	st.put(entry{
		seq: r.Seq, list: st.list(r.Sink), key: r.Message.Key,
		nextTry: unixNano(r.NextTry), size: uint32(size),
		seg: b.seg, off: b.at(at), n: uint32(n), rec: r,
	})
}

// drop removes a current record from the index.
func (st *state) drop(e *entry) {
	delete(st.recs, e.seq)
	st.release(e)
	if e.dead {
		return
	}
	st.count--
	st.bytes -= e.bytes()
	e.list.remove(e)
}

// dropSeqs drops the current records of seqs that match and returns
// their seqs.
func (st *state) dropSeqs(seqs []uint64, match func(*entry) bool) []uint64 {
	gone := make([]uint64, 0, len(seqs))
	for _, seq := range seqs {
		if e := st.recs[seq]; e != nil && match(e) {
			st.drop(e)
			gone = append(gone, seq)
		}
	}
	return gone
}

// hold counts e in its segment and keeps its record in memory while the
// cache has room.
func (st *state) hold(e *entry) {
	e.seg.live++
	e.seg.liveBytes += int64(e.n)
	if e.rec != nil {
		if st.cached+e.bytes() <= st.cacheLimit {
			st.cached += e.bytes()
		} else {
			e.rec = nil
		}
	}
}

// release undoes hold.
func (st *state) release(e *entry) {
	e.seg.live--
	e.seg.liveBytes -= int64(e.n)
	if e.rec != nil {
		st.cached -= e.bytes()
		e.rec = nil
	}
}

// rewrite writes e again into batch b, unchanged: compaction moves it out
// of an old segment.
func (st *state) rewrite(e *entry, b *batch, val []byte) {
	state := statePending
	if e.dead {
		state = stateDead
	}
	at := b.fb.put(e.seq, state, val)
	ne := *e
	ne.seg, ne.off = b.seg, b.at(at)
	st.put(ne)
}

// value returns e's encoded record: encoded again from memory, or read
// from its segment.
func (st *state) value(e *entry) ([]byte, error) {
	if e.rec != nil {
		return queue.MarshalSized(e.rec, e.bytes()), nil
	}
	b := make([]byte, e.n)
	if _, err := e.seg.f.ReadAt(b, e.off); err != nil {
		return nil, fmt.Errorf("read %s at %d: %w", e.seg.path, e.off, err)
	}
	return b, nil
}

// record returns e's record: a copy of the cached one, or decoded from
// its segment.
func (st *state) record(e *entry) (queue.Record, error) {
	if e.rec != nil {
		return *e.rec, nil
	}
	v, err := st.value(e)
	if err != nil {
		return queue.Record{}, err
	}
	return queue.Unmarshal(e.seq, v)
}

// pending returns sink's pending record seq, decoded, or an error
// wrapping queue.ErrNotFound.
func (st *state) pending(sink string, seq uint64) (*entry, queue.Record, error) {
	e := st.recs[seq]
	if e == nil || e.dead || e.list.name != sink {
		return nil, queue.Record{}, queue.ErrNotFound
	}
	r, err := st.record(e)
	if err != nil {
		return nil, queue.Record{}, err
	}
	return e, r, nil
}

// load rebuilds the index by replaying st.segs. A frame that ends the
// last segment half-written (a crash during a write that was therefore
// never acknowledged) is cut off and counted in rep; damage anywhere
// else stops the load: it is not what a crash leaves.
func (st *state) load(rep *Recovery) error {
	st.recs = map[uint64]*entry{}
	st.lists = map[string]*sinkList{}
	st.next, st.count, st.bytes, st.cached = 0, 0, 0, 0
	st.loading = true
	defer func() { st.loading = false }()
	var ops []op
	for i, seg := range st.segs {
		seg.live, seg.liveBytes = 0, 0
		last := i == len(st.segs)-1
		fr := &frameReader{
			r:    bufio.NewReaderSize(io.NewSectionReader(seg.f, int64(len(segmentMagic)), seg.size-int64(len(segmentMagic))), 1<<20),
			off:  int64(len(segmentMagic)),
			size: seg.size,
		}
		for {
			payload, at, err := fr.next()
			if err == io.EOF {
				break
			}
			if err == nil {
				ops = ops[:0]
				err = parseOps(payload, func(o op) error { ops = append(ops, o); return nil })
			}
			if errors.Is(err, errTorn) && last {
				rep.TornWrites++
				rep.TornBytes += seg.size - at
				if err := seg.f.Truncate(at); err != nil {
					return fmt.Errorf("cut the torn end off %s: %w", seg.path, err)
				}
				if err := datasync(seg.f); err != nil {
					return err
				}
				seg.size = at
				break
			}
			if errors.Is(err, errTorn) {
				return fmt.Errorf("segment %s is damaged at offset %d (%v); it is not the last segment, so no crash cut it short: restore the spool directory, or move it aside to start with an empty spool (its records are then lost)", seg.path, at, err)
			}
			if err != nil {
				return err
			}
			base := at + frameHeader
			for _, o := range ops {
				if err := st.apply(o, seg, base); err != nil {
					return fmt.Errorf("segment %s at offset %d: %w", seg.path, at, err)
				}
			}
		}
	}
	for _, l := range st.lists {
		l.sweep()
		slices.SortFunc(l.entries, func(a, b *entry) int { return cmpSeq(a.seq, b.seq) })
	}
	return nil
}

// apply replays one op of the log, from a frame whose payload begins at
// base in seg.
func (st *state) apply(o op, seg *segment, base int64) error {
	switch o.kind {
	case opPut:
		sum, err := queue.Summarize(o.val)
		if err != nil {
			return fmt.Errorf("seq %d: %w (written by a newer hookbridge?)", o.seq, err)
		}
		st.put(entry{
			seq: o.seq, list: st.listOf(sum.Sink), key: string(sum.Key),
			nextTry: unixNano(sum.NextTry), size: uint32(sum.Size),
			seg: seg, off: base + int64(o.valAt), n: uint32(len(o.val)), dead: o.state == stateDead,
		})
	case opDelete:
		for _, seq := range o.seqs {
			if e := st.recs[seq]; e != nil {
				st.drop(e)
			}
		}
	case opNext:
		st.next = max(st.next, o.seq)
	}
	return nil
}

// Package local is the queue of spool.backend: local, a log on this
// replica's disk: a webhook is answered once its messages are in the log
// and fsynced, and the dispatchers (package delivery) publish them later
// and remove them only after the sink confirmed. Store is the log; Queue
// and Admin put it behind the interfaces of package queue.
//
// The log is append-only (segment.go has the format). Every change (an
// append, a removal, a retry, a dead letter) is a frame written at its
// end; concurrent changes share one write and one fdatasync (group
// commit), the least a durable append costs. The records waiting are
// indexed in memory, their bytes kept there too up to Options.CacheBytes,
// so delivering reads nothing back from disk in the common case. A
// segment whose records are all settled is deleted; the few long-lived
// records of a mostly settled one (retries, dead letters) are written
// again at the end so that they cannot pin old segments. Recovery replays
// the log and cuts off a frame a crash left half-written.
//
// The store only stores: it starts no goroutine except the group-commit
// writer, publishes nothing and has no retry policy.
package local

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookbridge/hookbridge/bridge/queue"
)

// Options tunes a Store.
type Options struct {
	// MaxBytes caps the summed Size() of pending records; 0 means unlimited.
	MaxBytes int64
	// MaxEvents caps the number of pending records; 0 means unlimited.
	MaxEvents int
	// OpenTimeout is how long Open waits for the directory's lock held by
	// another process; 0 means one second.
	OpenTimeout time.Duration
	// Now is the clock of dead letters' and retries' times; nil means
	// time.Now.
	Now func() time.Time
	// SegmentBytes is the size past which the log goes on in a new
	// segment file; 0 means 64 MiB.
	SegmentBytes int64
	// CacheBytes bounds the encoded records kept in memory for delivery;
	// the others are read back from the log when due. 0 means 8 MiB, a
	// negative value keeps none.
	CacheBytes int64
	// ObserveSync, when set, is told how long each group commit's write
	// and fdatasync took and how many requests it answered.
	ObserveSync func(took time.Duration, requests int)
	// Log receives what the store does on its own that an operator
	// should know: a new segment it could not create. nil discards it.
	Log *slog.Logger
}

// Defaults of Options.
const (
	DefaultSegmentBytes = 64 << 20
	DefaultCacheBytes   = 8 << 20
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("spool is closed")

// errLocked is lockFile's answer when another process holds the lock.
var errLocked = errors.New("spool directory is locked")

// LockName is the file in the spool directory whose lock marks the
// spool in use by a process.
const LockName = "LOCK"

// maxBatch bounds how many requests one group commit takes, so a burst
// cannot build an unboundedly large write.
const maxBatch = 1024

// maxSinkName keeps sink names to a sane length.
const maxSinkName = 1024

// maxRecord bounds one encoded record.
const maxRecord = 256 << 20

// removeDelay is the longest a DoneLater removal waits for an append's
// commit to ride along with before it is written on its own.
const removeDelay = 100 * time.Millisecond

// compactChunk bounds the bytes one compaction step writes again, so that
// appends never wait long behind it.
const compactChunk = 1 << 20

// Recovery is what Open found in the log.
type Recovery struct {
	// Segments and Bytes are the log's files and their size.
	Segments int
	Bytes    int64
	// Pending and Dead count the records recovered.
	Pending, Dead int
	// TornBytes is the size of the end of the last segment that a crash
	// left half-written, cut off: a write that was never acknowledged.
	// TornWrites is 1 when there was one.
	TornBytes  int64
	TornWrites int
	// Migrated counts the records moved over from a bbolt spool file of
	// an earlier hookbridge (see MigratedSuffix); Unreadable, those of
	// its records that could not be read and stayed behind in it.
	Migrated, Unreadable int
	// Took is how long opening took.
	Took time.Duration
}

// Store is an open spool. Its methods are safe for concurrent use.
type Store struct {
	dir  string
	opts Options
	now  func() time.Time // Options.Now
	lock *os.File

	// mu guards closed and sends on reqs, so that Close can close reqs
	// knowing that no request is about to be sent on it.
	mu     sync.RWMutex
	closed bool
	reqs   chan *writeReq
	// writerDone is closed when the writer goroutine has answered every
	// queued request and exited.
	writerDone chan struct{}

	// commits counts the group commits written, for tests and
	// benchmarks; committed counts the requests they carried.
	commits   atomic.Uint64
	committed atomic.Uint64

	// st is the index of the log; its mu guards it.
	st state

	// Removals from DoneLater, already gone from the index, wait in
	// queued until a commit writes them.
	remMu   sync.Mutex
	queued  []uint64
	remKick chan struct{}

	// writeAt and datasync are the file operations of a commit, apart so
	// that tests can make the disk fail.
	writeAt  func(f *os.File, b []byte, off int64) error
	datasync func(f *os.File) error
	// broken is set when a failed commit could not be taken back out of
	// the log: nothing more is written until a restart recovers.
	broken error
	// rollFailing is set while new segments cannot be created, so that
	// the first failure is logged and the recovery too, not every commit.
	rollFailing bool
	// compactTodo holds the records of compacting, the oldest segment,
	// still to write again (the writer's own).
	compacting  *segment
	compactTodo []*entry
	buf         []byte // the writer's frame buffer, reused

	recovery Recovery
}

// writeReq is one change waiting for the writer. build runs in the
// writer, with the index locked: it checks the change against the index,
// applies it there and writes its ops into the batch, or fails and
// changes nothing.
type writeReq struct {
	build func(b *batch) error
	err   error
	done  chan struct{}
}

// batch is one group commit being built: frames for the active segment,
// starting at base.
type batch struct {
	fb   frameBuilder
	seg  *segment
	base int64
}

// at returns where in the segment a record that starts at buffer
// position i will be.
func (b *batch) at(i int) int64 { return b.base + int64(i) }

// Open opens (creating if needed) the spool in dir: the directory is
// created with mode 0o750, the files with 0o600. The log is replayed into
// the index; a frame the last crash left half-written is cut off. A bbolt
// spool file of an earlier hookbridge is migrated first. If another
// process holds the directory, Open waits up to Options.OpenTimeout and
// then fails.
func Open(dir string, opts Options) (*Store, error) {
	started := time.Now()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create spool directory: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = time.Second
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.CacheBytes == 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	lock, err := acquire(dir, opts.OpenTimeout)
	if err != nil {
		return nil, err
	}
	s := &Store{
		dir: dir, opts: opts, now: opts.Now, lock: lock,
		reqs:       make(chan *writeReq, maxBatch),
		writerDone: make(chan struct{}),
		remKick:    make(chan struct{}, 1),
		writeAt: func(f *os.File, b []byte, off int64) error {
			_, err := f.WriteAt(b, off)
			return err
		},
		datasync: datasync,
	}
	if err := s.open(); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	s.recovery.Took = time.Since(started)
	go s.writer()
	return s, nil
}

// acquire takes the lock of the spool in dir, waiting up to timeout.
func acquire(dir string, timeout time.Duration) (*os.File, error) {
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open spool lock: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := lockFile(f)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, errLocked) {
			f.Close()
			return nil, fmt.Errorf("lock spool %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("spool %s is in use by another hookbridge process (lock not acquired within %s): stop it first", dir, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// open migrates a bbolt spool if there is one, opens the segments and
// replays them into the index.
func (s *Store) open() error {
	mig, err := migrate(s.dir, s.opts.OpenTimeout)
	if err != nil {
		return err
	}
	s.recovery.Migrated, s.recovery.Unreadable = mig.moved, mig.unreadable
	ids, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	var segs []*segment
	for i, id := range ids {
		seg, err := openSegment(s.dir, id)
		if errors.Is(err, errTorn) && i == len(ids)-1 {
			// A crash while the segment was being created: it never
			// held a frame anyone was answered for.
			s.recovery.TornWrites++
			s.recovery.TornBytes += seg.size
			seg.f.Close()
			if err := os.Remove(seg.path); err != nil {
				return err
			}
			break
		}
		if err != nil {
			closeSegments(segs)
			return err
		}
		segs = append(segs, seg)
	}
	s.st.segs = segs
	s.st.cacheLimit = max(s.opts.CacheBytes, 0)
	if err := s.st.load(&s.recovery); err != nil {
		return err
	}
	if len(s.st.segs) == 0 {
		seg, err := createSegment(s.dir, 1, max(s.st.next, 1))
		if err != nil {
			return err
		}
		s.st.segs = []*segment{seg}
		s.st.next = max(s.st.next, 1)
	}
	for _, seg := range s.st.segs {
		s.recovery.Bytes += seg.size
	}
	s.recovery.Segments = len(s.st.segs)
	s.recovery.Pending, s.recovery.Dead = int(s.st.count), s.st.deadLetters()
	return nil
}

// openSegment opens segment id and checks its magic. A file too short
// for it, or holding only part of it, is reported as torn (with size set).
func openSegment(dir string, id uint64) (*segment, error) {
	path := filepath.Join(dir, segmentName(id))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	seg := &segment{id: id, path: path, f: f, size: fi.Size()}
	magic := make([]byte, len(segmentMagic))
	n, _ := f.ReadAt(magic, 0)
	if n < len(magic) || string(magic) != segmentMagic {
		if string(magic[:n]) == segmentMagic[:n] && seg.size < int64(len(segmentMagic))+frameHeader+16 {
			return seg, fmt.Errorf("%w: segment %s was cut short while being created", errTorn, path)
		}
		f.Close()
		return nil, fmt.Errorf("%s is not a spool segment of this hookbridge (unknown header): move it out of the spool directory", path)
	}
	return seg, nil
}

// Recovery reports what Open found.
func (s *Store) Recovery() Recovery { return s.recovery }

// Close stops the writer (after it has answered every queued request and
// written the queued removals) and closes the files. Calling Close again
// returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.writerDone
	return s.closeFiles()
}

func (s *Store) closeFiles() error {
	err := closeSegments(s.st.segs)
	s.st.segs = nil
	if s.lock != nil {
		err = errors.Join(err, s.lock.Close()) // releases the lock
		s.lock = nil
	}
	return err
}

func closeSegments(segs []*segment) error {
	var errs []error
	for _, seg := range segs {
		errs = append(errs, seg.f.Close())
	}
	return errors.Join(errs...)
}

// submit hands req to the writer and waits for its commit.
func (s *Store) submit(build func(b *batch) error) error {
	req := &writeReq{build: build, done: make(chan struct{})}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	s.reqs <- req
	s.mu.RUnlock()
	<-req.done
	return req.err
}

// writer is the group-commit loop: it blocks for one request, takes every
// other one already queued, writes them and the queued removals with one
// write and one fdatasync, and answers them all. While it commits, new
// requests queue up and form the next batch. Removals queued by DoneLater
// ride along with the next commit; if none comes within removeDelay, they
// are written on their own.
func (s *Store) writer() {
	defer close(s.writerDone)
	batch := make([]*writeReq, 0, maxBatch)
	var flush <-chan time.Time // armed while removals wait
	for {
		select {
		case r, ok := <-s.reqs:
			if !ok {
				s.commit(nil) // what DoneLater queued before Close
				return
			}
			batch = append(batch[:0], r)
		case <-s.remKick:
			if flush == nil {
				flush = time.After(removeDelay)
			}
			continue
		case <-flush:
			flush = nil
			s.commit(nil)
			s.maintain()
			continue
		}
	more:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		s.commit(batch)
		for i, r := range batch {
			close(r.done)
			batch[i] = nil
		}
		s.maintain()
	}
}

// commit builds batch, and the queued removals, into frames, writes them
// at the end of the log and fdatasyncs once. A request whose build fails
// gets its error and writes nothing; if the write or the sync fails,
// every request gets that error and the log and the index are taken back
// to what they were.
func (s *Store) commit(reqs []*writeReq) {
	s.remMu.Lock()
	removed := s.queued
	s.queued = nil
	s.remMu.Unlock()
	if len(reqs) == 0 && len(removed) == 0 {
		return
	}
	if s.broken != nil {
		s.fail(reqs, removed, s.broken)
		return
	}
	seg := s.roll()
	b := &batch{seg: seg, base: seg.size, fb: frameBuilder{buf: s.buf[:0]}}
	st := &s.st
	st.mu.Lock()
	if len(removed) > 0 {
		b.fb.begin()
		b.fb.delete(removed)
		b.fb.end()
	}
	for _, r := range reqs {
		b.fb.begin()
		if r.err = r.build(b); r.err != nil {
			b.fb.abort()
			continue
		}
		b.fb.end()
	}
	st.mu.Unlock()
	s.buf = b.fb.buf
	if len(b.fb.buf) == 0 {
		return
	}
	started := time.Now()
	err := s.writeAt(seg.f, b.fb.buf, b.base)
	if err == nil {
		err = s.datasync(seg.f)
	}
	if s.opts.ObserveSync != nil {
		s.opts.ObserveSync(time.Since(started), len(reqs))
	}
	if err != nil {
		s.undo(seg, b.base, removed)
		s.fail(reqs, nil, fmt.Errorf("spool write: %w", err))
		return
	}
	st.mu.Lock() // LogStats reads it
	seg.size = b.base + int64(len(b.fb.buf))
	st.mu.Unlock()
	s.commits.Add(1)
	s.committed.Add(uint64(len(reqs)))
	if cap(s.buf) > 4<<20 {
		s.buf = nil // one huge batch should not pin its buffer
	}
}

// fail answers every request not yet failed with err, and puts removals
// back in line for the next commit.
func (s *Store) fail(reqs []*writeReq, removed []uint64, err error) {
	for _, r := range reqs {
		if r.err == nil {
			r.err = err
		}
	}
	if len(removed) > 0 {
		s.remMu.Lock()
		s.queued = append(removed, s.queued...)
		s.remMu.Unlock()
	}
}

// undo takes a commit that failed back out: the segment is cut back to
// base, where the batch began, and the index is rebuilt from the log, as
// a restart would, with the removals DoneLater queued applied again. The
// cut needs no fdatasync of its own: the next commit's makes it durable
// before anything is acknowledged, and should a crash come first, the
// failed commit's frames may come back, requests that were answered with
// an error: a duplicate at worst. If the segment cannot be cut back, the
// store is broken: nothing more is written, and the next start recovers
// from the log.
func (s *Store) undo(seg *segment, base int64, removed []uint64) {
	err := seg.f.Truncate(base)
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err == nil {
		var r Recovery
		err = st.load(&r)
	}
	if err != nil {
		s.broken = fmt.Errorf("spool log could not be restored after a failed write (%w): restart hookbridge to recover it", err)
		return
	}
	s.remMu.Lock()
	s.queued = append(removed, s.queued...)
	queued := s.queued
	s.remMu.Unlock()
	for _, seq := range queued {
		if e := st.recs[seq]; e != nil && !e.dead {
			st.drop(e)
		}
	}
}

// roll returns the segment the next commit goes to: the active one, or a
// new one once the active one is full. If the new one cannot be created
// (a read-only directory, a full disk) the active one takes the commit.
func (s *Store) roll() *segment {
	st := &s.st
	st.mu.Lock()
	active := st.segs[len(st.segs)-1]
	next := st.next
	st.mu.Unlock()
	if active.size < s.opts.SegmentBytes {
		return active
	}
	seg, err := createSegment(s.dir, active.id+1, next)
	if err != nil {
		if !s.rollFailing {
			s.rollFailing = true
			s.opts.Log.Warn("spool: cannot start a new log segment; writing on in the current one, which grows past spool segment size until the directory takes files again",
				"dir", s.dir, "segment_bytes", active.size, "err", err)
		}
		return active // retried at the next commit
	}
	if s.rollFailing {
		s.rollFailing = false
		s.opts.Log.Info("spool: new log segments can be created again", "dir", s.dir)
	}
	st.mu.Lock()
	st.segs = append(st.segs, seg)
	st.mu.Unlock()
	return seg
}

// maintain runs after each commit: it deletes the oldest segments once
// none of their records is current, and compacts the oldest segment when
// it is mostly settled but pinned by a few records, writing those again
// at the end of the log. One compaction chunk at most per commit, so that
// appends never wait behind more than one.
func (s *Store) maintain() {
	if s.broken != nil {
		return
	}
	s.reclaim()
	if s.compact() {
		s.reclaim()
	}
}

// reclaim deletes the oldest segments that hold no current record, and
// shrinks the index after a backlog drained.
func (s *Store) reclaim() {
	st := &s.st
	st.mu.Lock()
	st.shrink()
	var gone []*segment
	for len(st.segs) > 1 && st.segs[0].live == 0 {
		gone = append(gone, st.segs[0])
		st.segs = st.segs[1:]
	}
	st.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	for _, seg := range gone {
		seg.f.Close()
		os.Remove(seg.path)
	}
	_ = syncDir(s.dir)
}

// compact writes the current records of the oldest segment again at the
// end of the log, a chunk at a time, when at least two more segments
// follow it and at most two thirds of it are current, writing at most
// three bytes again per byte it frees. With the oldest segment sparse,
// the log holds what waits at most 1.5 times over, plus two segments. An
// oldest segment that is mostly current (a backlog) is left, and so are
// the segments after it, however empty: only the front of the log can go,
// as a later segment may hold the removals of an earlier one's records
// (docs/delivery.md, The local log).
func (s *Store) compact() bool {
	st := &s.st
	st.mu.Lock()
	if len(st.segs) < 3 || st.segs[0].live == 0 || st.segs[0].liveBytes*3 > st.segs[0].size*2 {
		st.mu.Unlock()
		return false
	}
	head := st.segs[0]
	if s.compacting != head || len(s.compactTodo) == 0 {
		// Find head's records once, not at every chunk: the index may
		// hold a long outage's backlog.
		s.compacting, s.compactTodo = head, s.compactTodo[:0]
		for _, e := range st.recs {
			if e.seg == head {
				s.compactTodo = append(s.compactTodo, e)
			}
		}
	}
	st.mu.Unlock()
	moved := 0
	req := &writeReq{build: func(b *batch) error {
		var bytes int64
		for len(s.compactTodo) > 0 && bytes < compactChunk {
			e := s.compactTodo[0]
			s.compactTodo = s.compactTodo[1:]
			if st.recs[e.seq] != e || e.seg != head {
				continue // settled, or written again, since the scan
			}
			val, err := st.value(e)
			if err != nil {
				return err
			}
			st.rewrite(e, b, val)
			moved++
			bytes += int64(len(val))
		}
		return nil
	}}
	s.commit([]*writeReq{req})
	return req.err == nil && moved > 0
}

// Append durably adds records as pending, all or nothing. On success it
// has set each record's Seq (in the caller's slice) and the records are
// fsynced. It fails with an error wrapping queue.ErrFull, storing nothing,
// if they would take the pending records over Options.MaxEvents or
// Options.MaxBytes.
//
// Concurrent Appends share one write and one fdatasync (group commit): a
// single writer goroutine takes every request queued while the previous
// commit ran. There is no timer: an idle store commits at once.
func (s *Store) Append(records []queue.Record) error {
	if len(records) == 0 {
		return nil
	}
	sizes := make([]int64, len(records))
	var total int64
	for i := range records {
		r := &records[i]
		if err := checkSink(r.Sink); err != nil {
			return err
		}
		sizes[i] = r.Size()
		if sizes[i] > maxRecord {
			return fmt.Errorf("record for sink %q is too large (%d bytes)", r.Sink, sizes[i])
		}
		total += sizes[i]
	}
	var first uint64
	// The writer encodes the records straight into its buffer: a copy
	// and an allocation less per record than encoding them here.
	err := s.submit(func(b *batch) error {
		st := &s.st
		if err := s.checkLimits(int64(len(records)), total); err != nil {
			return err
		}
		first = st.next
		for i := range records {
			rec := records[i] // the caller's copy is the caller's
			rec.Seq = first + uint64(i)
			at, n := b.fb.putRecord(rec.Seq, statePending, &rec, sizes[i])
			st.putNew(&rec, sizes[i], b, at, n)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range records {
		records[i].Seq = first + uint64(i)
	}
	return nil
}

// checkLimits reports queue.ErrFull if adding n records of size bytes to
// the pending ones would exceed the configured limits. The index must be
// locked.
func (s *Store) checkLimits(n, size int64) error {
	st := &s.st
	if s.opts.MaxEvents > 0 && st.count+n > int64(s.opts.MaxEvents) {
		return fmt.Errorf("%w: %d events / %d bytes pending (max_events %d)", queue.ErrFull, st.count, st.bytes, s.opts.MaxEvents)
	}
	if s.opts.MaxBytes > 0 && st.bytes+size > s.opts.MaxBytes {
		return fmt.Errorf("%w: %d events / %d bytes pending (max_bytes %d)", queue.ErrFull, st.count, st.bytes, s.opts.MaxBytes)
	}
	return nil
}

// Pending returns up to n records of sink with Seq > after, in Seq order.
// A dispatcher pages through its backlog by passing the last Seq it got.
func (s *Store) Pending(sink string, after uint64, n int) ([]queue.Record, error) {
	if n <= 0 {
		return nil, nil
	}
	recs, _, _, err := s.PendingDue(sink, after, n, func(string, time.Time) (bool, bool) { return true, false })
	return recs, err
}

// PendingDue pages through sink's pending records with Seq > after, in
// Seq order, and decodes only those choose takes: it is given each
// record's task key and NextTry, and says whether to take the record and
// whether to stop after it. It looks at most n records and returns the
// ones taken, the Seq of the last one looked at (to pass as after next
// time) and how many it looked at. A dispatcher skips most of a backlog
// (later messages of a task wait for its first), and decoding only what
// it sends saves copying the rest.
func (s *Store) PendingDue(sink string, after uint64, n int, choose func(key string, nextTry time.Time) (take, stop bool)) (taken []queue.Record, last uint64, looked int, err error) {
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	l := st.lists[sink]
	if l == nil {
		return nil, 0, 0, nil
	}
	i, _ := slices.BinarySearchFunc(l.entries, after+1, func(e *entry, seq uint64) int { return cmpSeq(e.seq, seq) })
	for ; i < len(l.entries) && looked < n; i++ {
		e := l.entries[i]
		if e.gone {
			continue
		}
		last = e.seq
		looked++
		var nextTry time.Time
		if e.nextTry != 0 {
			nextTry = time.Unix(0, e.nextTry)
		}
		take, stop := choose(e.key, nextTry)
		if take {
			r, err := st.record(e)
			if err != nil {
				return nil, 0, 0, fmt.Errorf("spool pending %q: seq %d: %w", sink, e.seq, err)
			}
			taken = append(taken, r)
		}
		if stop {
			break
		}
	}
	return taken, last, looked, nil
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// DoneLater removes delivered records of sink, as DropPending does, but
// without waiting: they leave the index at once, and their removal rides
// along with the next commit (at most removeDelay away), so that under
// load deleting costs no fsync of its own, and at a low rate no more than
// one per removeDelay. A crash before that commit delivers them again: a
// duplicate, never a loss.
func (s *Store) DoneLater(sink string, seqs []uint64) {
	if len(seqs) == 0 {
		return
	}
	st := &s.st
	st.mu.Lock()
	removed := st.dropSeqs(seqs, pendingFor(sink))
	st.mu.Unlock()
	if len(removed) == 0 {
		return
	}
	s.remMu.Lock()
	s.queued = append(s.queued, removed...)
	s.remMu.Unlock()
	select {
	case s.remKick <- struct{}{}:
	default:
	}
}

// DropPending deletes pending records of sink without delivering them (the
// operator's `spool drop --pending`) and returns how many it deleted.
func (s *Store) DropPending(sink string, seqs []uint64) (int, error) {
	n, err := s.dropLogged(seqs, pendingFor(sink))
	if err != nil {
		return 0, fmt.Errorf("spool drop pending %q: %w", sink, err)
	}
	return n, nil
}

// PurgePending deletes every record waiting for sink and returns how
// many there were, reading none of them.
func (s *Store) PurgePending(sink string) (int, error) {
	n := 0
	err := s.submit(func(b *batch) error {
		st := &s.st
		var seqs []uint64
		if l := st.lists[sink]; l != nil {
			for _, e := range l.entries {
				if !e.gone {
					seqs = append(seqs, e.seq)
				}
			}
		}
		gone := st.dropSeqs(seqs, pendingFor(sink))
		b.fb.delete(gone)
		n = len(gone)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("spool purge pending %q: %w", sink, err)
	}
	return n, nil
}

// dropLogged removes the current records of seqs that match from the
// index and the log, in the writer's next commit, and returns how many.
func (s *Store) dropLogged(seqs []uint64, match func(*entry) bool) (int, error) {
	n := 0
	err := s.submit(func(b *batch) error {
		gone := s.st.dropSeqs(seqs, match)
		b.fb.delete(gone)
		n = len(gone)
		return nil
	})
	return n, err
}

// pendingFor matches the records waiting for sink.
func pendingFor(sink string) func(*entry) bool {
	return func(e *entry) bool { return !e.dead && e.list.name == sink }
}

// Retry records a failed attempt of a pending record: Attempts is
// incremented and NextTry and LastError are set. It returns an error
// wrapping queue.ErrNotFound if the record is not pending.
func (s *Store) Retry(sink string, seq uint64, nextTry time.Time, lastErr string) error {
	err := s.submit(func(b *batch) error {
		st := &s.st
		e, r, err := st.pending(sink, seq)
		if err != nil {
			return err
		}
		r.Attempts++
		r.NextTry = nextTry
		r.LastError = lastErr
		// The stored size stays: the counters get back what Append added.
		at, n := b.fb.putRecord(seq, statePending, &r, e.bytes())
		ne := *e
		ne.nextTry, ne.seg, ne.off, ne.n, ne.rec = unixNano(nextTry), b.seg, b.at(at), uint32(n), &r
		st.put(ne)
		return nil
	})
	if err != nil {
		return fmt.Errorf("spool retry %q seq %d: %w", sink, seq, err)
	}
	return nil
}

// Kill makes a pending record a dead letter, keeping its Attempts and
// LastError and setting Reason and Died. If forward is not nil it is
// appended as a new pending record in the same frame (its Seq is set on
// success), so a crash can neither lose the dead letter's forwarding nor
// forward it twice. Forward records ignore MaxBytes and MaxEvents: a full
// spool must still be able to dead-letter. Kill returns an error wrapping
// queue.ErrNotFound if the record is not pending; then nothing is
// forwarded.
func (s *Store) Kill(sink string, seq uint64, reason string, forward *queue.Record) error {
	var fwdVal []byte
	var fwdSize int64
	if forward != nil {
		if err := checkSink(forward.Sink); err != nil {
			return err
		}
		fwdSize = forward.Size()
		fwdVal = queue.MarshalSized(forward, fwdSize)
		if len(fwdVal) > maxRecord || fwdSize > maxRecord {
			return fmt.Errorf("record for sink %q is too large (%d bytes)", forward.Sink, len(fwdVal))
		}
	}
	died := s.now()
	var fwdSeq uint64
	err := s.submit(func(b *batch) error {
		st := &s.st
		e, r, err := st.pending(sink, seq)
		if err != nil {
			return err
		}
		r.Reason = reason
		r.Died = died
		at, n := b.fb.putRecord(seq, stateDead, &r, e.bytes())
		ne := *e
		ne.dead, ne.seg, ne.off, ne.n, ne.rec = true, b.seg, b.at(at), uint32(n), nil
		st.put(ne)
		if forward != nil {
			fwdSeq = st.next
			fwd := *forward
			fwd.Seq = fwdSeq
			at := b.fb.put(fwdSeq, statePending, fwdVal)
			st.putNew(&fwd, fwdSize, b, at, len(fwdVal))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("spool kill %q seq %d: %w", sink, seq, err)
	}
	if forward != nil {
		forward.Seq = fwdSeq
	}
	return nil
}

// Dead returns up to n dead letters of all sinks with Seq > after, in Seq
// order. A dead letter keeps the Seq it had while pending.
func (s *Store) Dead(after uint64, n int) ([]queue.Record, error) {
	if n <= 0 {
		return nil, nil
	}
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	var seqs []uint64
	for seq, e := range st.recs {
		if e.dead && seq > after {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	var out []queue.Record
	for _, seq := range seqs[:min(n, len(seqs))] {
		r, err := st.record(st.recs[seq])
		if err != nil {
			return nil, fmt.Errorf("spool dead: seq %d: %w", seq, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Replay moves dead letters back to pending for their sink, with Attempts
// 0, NextTry zero and LastError, Reason and Died cleared, and returns how
// many it moved (unknown seqs are ignored). A replayed record gets a new
// Seq: a dispatcher pages with Pending(sink, after, n) and would never
// look back at an old Seq. Replay ignores MaxBytes and MaxEvents: it is an
// operator's explicit request.
func (s *Store) Replay(seqs []uint64) (int, error) {
	moved := 0
	err := s.submit(func(b *batch) error {
		st := &s.st
		moved = 0
		// Read them all first: a record that cannot be read fails the
		// replay before anything changed.
		type replay struct {
			e   *entry
			rec queue.Record
		}
		var todo []replay
		seen := map[uint64]bool{}
		for _, seq := range seqs {
			e := st.recs[seq]
			if e == nil || !e.dead || seen[seq] {
				continue
			}
			seen[seq] = true
			r, err := st.record(e)
			if err == nil {
				err = checkSink(r.Sink)
			}
			if err != nil {
				return fmt.Errorf("seq %d: %w", seq, err)
			}
			todo = append(todo, replay{e, r})
		}
		for _, t := range todo {
			r := t.rec
			r.Attempts, r.NextTry, r.LastError, r.Reason, r.Died = 0, time.Time{}, "", "", time.Time{}
			b.fb.delete([]uint64{t.e.seq})
			st.drop(t.e)
			r.Seq = st.next
			at, n := b.fb.putRecord(r.Seq, statePending, &r, t.e.bytes())
			st.putNew(&r, t.e.bytes(), b, at, n)
			moved++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("spool replay: %w", err)
	}
	return moved, nil
}

// Drop deletes dead letters and returns how many it deleted (unknown seqs
// are ignored).
func (s *Store) Drop(seqs []uint64) (int, error) {
	dropped, err := s.dropLogged(seqs, func(e *entry) bool { return e.dead })
	if err != nil {
		return 0, fmt.Errorf("spool drop: %w", err)
	}
	return dropped, nil
}

// Stats returns the spool's counts, from the index.
func (s *Store) Stats() (queue.Stats, error) {
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	out := queue.Stats{Pending: int(st.count), PendingBytes: st.bytes, Dead: st.deadLetters(), BySink: map[string]int{}}
	for name, l := range st.lists {
		live := l.live()
		if live == 0 {
			continue
		}
		out.BySink[name] = live
		// Received grows with Seq except for replayed and forwarded
		// records, which keep the original time: the first is exact for
		// ordinary traffic, and cheap always.
		e := l.first()
		if e == nil {
			continue
		}
		r, err := st.record(e)
		if err != nil {
			return queue.Stats{}, fmt.Errorf("spool stats: sink %q seq %d: %w", name, e.seq, err)
		}
		if !r.Received.IsZero() && (out.Oldest.IsZero() || r.Received.Before(out.Oldest)) {
			out.Oldest = time.Unix(0, r.Received.UnixNano()) // the same whether cached or read back
		}
	}
	return out, nil
}

// LogStats describes the log itself.
type LogStats struct {
	Segments int
	Bytes    int64
	// Commits counts the group commits (one fdatasync each) since Open,
	// Requests the changes they carried.
	Commits, Requests uint64
}

// LogStats returns the log's size and its commits since Open.
func (s *Store) LogStats() LogStats {
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	ls := LogStats{Segments: len(st.segs), Commits: s.commits.Load(), Requests: s.committed.Load()}
	for _, seg := range st.segs {
		ls.Bytes += seg.size
	}
	return ls
}

// Probe writes and fsyncs a few bytes, to tell whether the log can be
// written: readiness asks after an append failed.
func (s *Store) Probe() error {
	return s.submit(func(b *batch) error {
		b.fb.next(s.st.next)
		return nil
	})
}

func checkSink(name string) error {
	if name == "" {
		return errors.New("spool record has no sink")
	}
	if len(name) > maxSinkName {
		return fmt.Errorf("spool sink name is too long (%d bytes)", len(name))
	}
	return nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

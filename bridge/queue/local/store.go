// Package local is the queue of spool.backend: local, one bbolt file per
// replica: a webhook is answered once its messages are fsynced here, and
// the dispatchers (package delivery) publish them later and remove them
// only after the sink confirmed. Store is the file; Queue and Admin put it
// behind the interfaces of package queue.
//
// The store is a single bbolt file. Its layout:
//
//	pending/<sink>/<seq>  encoded Record waiting for that sink
//	dead/<seq>            encoded dead letter (the sink is in the record)
//	meta/next             next Seq to assign
//	meta/count            number of pending records
//	meta/bytes            summed Size() of pending records
//
// Seqs are 8-byte big-endian so that bbolt's byte order is Seq order. The
// meta counters are updated in the same transaction as the data they
// describe, so they are always consistent with it, including after a crash.
//
// The store only stores: it starts no goroutine except the group-commit
// writer behind Append, publishes nothing and has no retry policy.
package local

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hookbridge/hookbridge/bridge/queue"
)

// Options tunes a Store.
type Options struct {
	// MaxBytes caps the summed Size() of pending records; 0 means unlimited.
	MaxBytes int64
	// MaxEvents caps the number of pending records; 0 means unlimited.
	MaxEvents int
	// OpenTimeout is how long Open waits for the file lock held by another
	// process; 0 means one second.
	OpenTimeout time.Duration
	// Now is the clock of dead letters' and retries' times; nil means
	// time.Now.
	Now func() time.Time
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("spool is closed")

// FileName is the name of the bbolt file inside the spool directory.
const FileName = "spool.db"

var (
	bucketPending = []byte("pending")
	bucketDead    = []byte("dead")
	bucketMeta    = []byte("meta")

	keyNext  = []byte("next")
	keyProbe = []byte("probe")
	keyCount = []byte("count")
	keyBytes = []byte("bytes")
)

// maxBatch bounds how many Append requests one group commit takes, so a
// burst cannot build an unboundedly large transaction.
const maxBatch = 1024

// maxSinkName keeps sink names well inside bbolt's key size limit.
const maxSinkName = 1024

// Store is an open spool. Its methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
	opts Options
	now  func() time.Time // Options.Now

	// mu guards closed and sends on reqs, so that Close can close reqs
	// knowing that no Append is about to send on it.
	mu     sync.RWMutex
	closed bool
	reqs   chan *writeReq
	// writerDone is closed when the writer goroutine has answered every
	// queued request and exited.
	writerDone chan struct{}

	// commits counts the write transactions of the group-commit writer, for
	// tests and benchmarks.
	commits atomic.Uint64

	// Removals from DoneLater wait in queued until a commit takes them;
	// removing holds their seqs until that commit is done, so that
	// PendingDue and Pending skip records already delivered.
	remMu    sync.Mutex
	queued   []*writeReq                // removals nobody waits for
	removing map[string]map[uint64]bool // by sink
	remKick  chan struct{}              // DoneLater queued something
}

// removeDelay is the longest a DoneLater removal waits for an append's
// commit to ride along with before it is committed on its own.
const removeDelay = 100 * time.Millisecond

// writeReq is one Append, or one removal of pending records, waiting for
// the writer. Removals ride in the same group commits as appends: under
// load, deleting what was delivered costs no fsync of its own.
type writeReq struct {
	sinks []string
	vals  [][]byte // encoded records, built by the caller off the writer
	size  int64    // summed Size()
	first uint64   // Seq of the first record, set on success

	removeSink string   // a removal when set
	removeSeqs []uint64 // the records to remove
	removed    int      // how many were pending and are gone

	err  error
	done chan struct{} // nil for a DoneLater removal: nobody waits
}

// meta holds the counters of the meta bucket during a transaction.
type meta struct {
	next  uint64
	count int64
	bytes int64
}

// Open opens (creating if needed) the spool in dir: the directory is created
// with mode 0o750 and the bbolt file dir/spool.db with 0o600. The counters
// are recovered from the file. If another process holds the file, Open waits
// up to Options.OpenTimeout and then fails.
func Open(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create spool directory: %w", err)
	}
	timeout := opts.OpenTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: timeout,
		// The freelist is rebuilt on open instead of being written by every
		// commit: a spool churns pages constantly, so this saves a write per
		// Append at the price of a scan at start-up. Durability of the data
		// is unaffected.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("spool %s is in use by another hookbridge process (file lock not acquired within %s): stop it first", path, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", path, err)
	}
	s := &Store{
		db:         db,
		path:       path,
		opts:       opts,
		now:        opts.Now,
		reqs:       make(chan *writeReq, maxBatch),
		writerDone: make(chan struct{}),
		removing:   map[string]map[uint64]bool{},
		remKick:    make(chan struct{}, 1),
	}
	if err := db.Update(s.recover); err != nil {
		db.Close()
		return nil, fmt.Errorf("open spool %s: %w", path, err)
	}
	go s.writer()
	return s, nil
}

// recover creates the buckets of a new file and makes the counters safe to
// trust: if the meta bucket lacks them (a file from a crash before the first
// commit cannot, but a hand-edited or foreign one can), they are recounted
// from the records, and next is raised past every Seq in the file so that a
// Seq is never reused.
func (s *Store) recover(tx *bolt.Tx) error {
	pend, err := tx.CreateBucketIfNotExists(bucketPending)
	if err != nil {
		return err
	}
	dead, err := tx.CreateBucketIfNotExists(bucketDead)
	if err != nil {
		return err
	}
	mb, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	m, err := readMeta(tx)
	if err != nil {
		return err
	}
	maxSeq := uint64(0)
	if k, _ := dead.Cursor().Last(); k != nil {
		maxSeq = max(maxSeq, binary.BigEndian.Uint64(k))
	}
	recount := mb.Get(keyCount) == nil || mb.Get(keyBytes) == nil
	var count, bytes int64
	err = forEachSink(pend, func(_ []byte, b *bolt.Bucket) error {
		if k, _ := b.Cursor().Last(); k != nil {
			maxSeq = max(maxSeq, binary.BigEndian.Uint64(k))
		}
		if !recount {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			size, err := queue.StoredSize(v)
			if err != nil {
				return fmt.Errorf("seq %d: %w", binary.BigEndian.Uint64(k), err)
			}
			count++
			bytes += size
			return nil
		})
	})
	if err != nil {
		return err
	}
	changed := recount
	if recount {
		m.count, m.bytes = count, bytes
	}
	if m.next <= maxSeq {
		m.next, changed = maxSeq+1, true
	}
	if m.next == 0 {
		// Seq 0 is reserved so that Pending(sink, 0, n) returns everything.
		m.next, changed = 1, true
	}
	if !changed {
		return nil
	}
	return writeMeta(tx, m)
}

// Close stops the writer (after it has answered every queued Append) and
// closes the file. Calling Close again returns nil.
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
	return s.db.Close()
}

// Append durably adds records as pending, all or nothing. On success it has
// set each record's Seq (in the caller's slice) and the records are fsynced.
// It fails with an error wrapping queue.ErrFull, storing nothing, if they would
// take the pending records over Options.MaxEvents or Options.MaxBytes.
//
// Concurrent Appends share one write transaction and so one fsync (group
// commit): a single writer goroutine takes every request queued while the
// previous commit ran. There is no timer: an idle store commits at once.
func (s *Store) Append(records []queue.Record) error {
	if len(records) == 0 {
		return nil
	}
	req := &writeReq{
		sinks: make([]string, len(records)),
		vals:  make([][]byte, len(records)),
		done:  make(chan struct{}),
	}
	// Encode here, in the callers' goroutines, so the single writer only
	// copies bytes into pages.
	for i := range records {
		r := &records[i]
		if err := checkSink(r.Sink); err != nil {
			return err
		}
		size := r.Size()
		v := queue.MarshalSized(r, size)
		if len(v) > bolt.MaxValueSize {
			return fmt.Errorf("record for sink %q is too large (%d bytes)", r.Sink, len(v))
		}
		req.sinks[i] = r.Sink
		req.vals[i] = v
		req.size += size
	}
	if err := s.submit(req); err != nil {
		return err
	}
	for i := range records {
		records[i].Seq = req.first + uint64(i)
	}
	return nil
}

// submit hands req to the writer and waits for its commit.
func (s *Store) submit(req *writeReq) error {
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

// appendFill is how full the writer packs the pages it splits: records
// are appended in key order, so fuller pages are never split again.
const appendFill = 0.95

// errNothingApplied rolls back a group commit in which every request was
// refused, so that it costs no fsync.
var errNothingApplied = errors.New("nothing applied")

// writer is the group-commit loop: it blocks for one request, takes every
// other one already queued, commits them in one transaction and answers
// them all. While it commits (and fsyncs), new requests queue up and form
// the next batch.
//
// Removals queued by DoneLater ride along with the next commit; if none
// comes within removeDelay, they are committed on their own.
func (s *Store) writer() {
	defer close(s.writerDone)
	batch := make([]*writeReq, 0, maxBatch)
	var flush <-chan time.Time // armed while removals wait
	for {
		var req *writeReq
		select {
		case r, ok := <-s.reqs:
			if !ok {
				s.commit(nil) // what DoneLater queued before Close
				return
			}
			req = r
		case <-s.remKick:
			if flush == nil {
				flush = time.After(removeDelay)
			}
			continue
		case <-flush:
			flush = nil
			s.commit(nil)
			continue
		}
		batch = append(batch[:0], req)
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
	}
}

// commit applies batch, and the removals DoneLater queued, in one
// db.Update, in order. An append that would exceed the limits gets queue.ErrFull
// and is skipped; the others commit. If the transaction fails, every
// applied request gets its error (nothing was stored) and the removals
// wait for the next commit.
func (s *Store) commit(batch []*writeReq) {
	s.remMu.Lock()
	later := s.queued
	s.queued = nil
	s.remMu.Unlock()
	if len(batch) == 0 && len(later) == 0 {
		return
	}
	all := batch // the queued removals first, in the order they came
	if len(later) > 0 {
		all = append(later[:len(later):len(later)], batch...)
	}
	applied := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		applied = 0
		m, err := readMeta(tx)
		if err != nil {
			return err
		}
		pend := tx.Bucket(bucketPending)
		var buckets map[string]*bolt.Bucket
		for _, r := range all {
			r.err = nil
			if r.removeSink != "" {
				r.removed = 0
				n, err := removeFrom(pend, &m, r.removeSink, r.removeSeqs)
				if errors.Is(err, errGarbled) {
					// This removal fails (a DoneLater one leaves the
					// record pending, and reading it fails loudly
					// elsewhere); the batch goes on.
					r.err = err
					continue
				}
				if err != nil {
					return err
				}
				if n > 0 {
					r.removed = n
					applied++
				}
				continue
			}
			if err := s.checkLimits(m, int64(len(r.vals)), r.size); err != nil {
				r.err = err
				continue
			}
			// Keys must stay valid until the commit: one buffer per request.
			keys := make([]byte, 8*len(r.vals))
			for i, v := range r.vals {
				b := buckets[r.sinks[i]]
				if b == nil {
					if b, err = pend.CreateBucketIfNotExists([]byte(r.sinks[i])); err != nil {
						return err
					}
					// Seqs only grow: nothing is ever inserted into a
					// full page, so fill pages up rather than half
					// (bbolt's default), for fewer pages to write.
					b.FillPercent = appendFill
					if buckets == nil {
						buckets = make(map[string]*bolt.Bucket)
					}
					buckets[r.sinks[i]] = b
				}
				k := keys[8*i : 8*i+8]
				binary.BigEndian.PutUint64(k, m.next+uint64(i))
				if err := b.Put(k, v); err != nil {
					return err
				}
			}
			r.first = m.next
			m.next += uint64(len(r.vals))
			m.count += int64(len(r.vals))
			m.bytes += r.size
			applied++
		}
		if applied == 0 {
			return errNothingApplied
		}
		return writeMeta(tx, m)
	})
	if applied > 0 {
		s.commits.Add(1)
	}
	s.remMu.Lock()
	if err == nil || errors.Is(err, errNothingApplied) {
		for _, rm := range later {
			for _, seq := range rm.removeSeqs {
				delete(s.removing[rm.removeSink], seq)
			}
		}
	} else {
		s.queued = append(later, s.queued...) // the next commit retries them
	}
	s.remMu.Unlock()
	if err == nil || errors.Is(err, errNothingApplied) {
		return
	}
	err = fmt.Errorf("spool append: %w", err)
	for _, r := range batch {
		if r.err == nil {
			r.err = err
		}
	}
}

// checkLimits reports queue.ErrFull if adding n records of size bytes to the
// pending ones described by m would exceed the configured limits.
func (s *Store) checkLimits(m meta, n, size int64) error {
	if s.opts.MaxEvents > 0 && m.count+n > int64(s.opts.MaxEvents) {
		return fmt.Errorf("%w: %d events / %d bytes pending (max_events %d)", queue.ErrFull, m.count, m.bytes, s.opts.MaxEvents)
	}
	if s.opts.MaxBytes > 0 && m.bytes+size > s.opts.MaxBytes {
		return fmt.Errorf("%w: %d events / %d bytes pending (max_bytes %d)", queue.ErrFull, m.count, m.bytes, s.opts.MaxBytes)
	}
	return nil
}

// Pending returns up to n records of sink with Seq > after, in Seq order.
// A dispatcher pages through its backlog by passing the last Seq it got.
func (s *Store) Pending(sink string, after uint64, n int) ([]queue.Record, error) {
	if n <= 0 {
		return nil, nil
	}
	var out []queue.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPending).Bucket([]byte(sink))
		if b == nil {
			return nil
		}
		return scan(b, after, n, func(r queue.Record) bool {
			if s.delivered(sink, r.Seq) {
				return false
			}
			out = append(out, r)
			return true
		})
	})
	if err != nil {
		return nil, fmt.Errorf("spool pending %q: %w", sink, err)
	}
	return out, nil
}

// PendingDue pages through sink's pending records with Seq > after, in Seq
// order, and decodes only those choose takes: it is given each record's
// task key (which aliases the store: copy it to keep it) and NextTry, and
// says whether to take the record and whether to stop after it. It looks
// at most n records and returns the ones taken, the Seq of the last one
// looked at (to pass as after next time) and how many it looked at. A
// dispatcher skips most of a backlog (later messages of a task wait for
// its first), and decoding only what it sends saves copying the rest.
func (s *Store) PendingDue(sink string, after uint64, n int, choose func(key []byte, nextTry time.Time) (take, stop bool)) (taken []queue.Record, last uint64, looked int, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPending).Bucket([]byte(sink))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && looked < n; k, v = c.Next() {
			if v == nil || len(k) != 8 {
				continue // not a record (cannot happen in a file written by this package)
			}
			seq := binary.BigEndian.Uint64(k)
			if s.delivered(sink, seq) {
				continue
			}
			key, nextTry, err := queue.PeekSchedule(v)
			if err != nil {
				return fmt.Errorf("seq %d: %w", seq, err)
			}
			last = seq
			looked++
			take, stop := choose(key, nextTry)
			if take {
				r, err := queue.Unmarshal(seq, v)
				if err != nil {
					return fmt.Errorf("seq %d: %w", seq, err)
				}
				taken = append(taken, r)
			}
			if stop {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("spool pending %q: %w", sink, err)
	}
	return taken, last, looked, nil
}

// scan decodes records of b with Seq > after until f has counted n of
// them.
func scan(b *bolt.Bucket, after uint64, n int, f func(queue.Record) (counted bool)) error {
	c := b.Cursor()
	for k, v := c.Seek(seqKey(after + 1)); k != nil && n > 0; k, v = c.Next() {
		if v == nil || len(k) != 8 {
			continue // not a record (cannot happen in a file written by this package)
		}
		seq := binary.BigEndian.Uint64(k)
		r, err := queue.Unmarshal(seq, v)
		if err != nil {
			return fmt.Errorf("seq %d: %w", seq, err)
		}
		if f(r) {
			n--
		}
	}
	return nil
}

// DoneLater removes delivered records of sink, as DropPending removes
// records, but without waiting: the removal rides along with the next commit (at most
// removeDelay away), so that under load deleting costs no fsync of its
// own, and at a low rate no more than one per removeDelay. Until then
// PendingDue and Pending skip the records. A crash before that commit
// delivers them again: a duplicate, never a loss.
func (s *Store) DoneLater(sink string, seqs []uint64) {
	if len(seqs) == 0 {
		return
	}
	s.remMu.Lock()
	m := s.removing[sink]
	if m == nil {
		m = map[uint64]bool{}
		s.removing[sink] = m
	}
	for _, seq := range seqs {
		m[seq] = true
	}
	s.queued = append(s.queued, &writeReq{removeSink: sink, removeSeqs: seqs})
	s.remMu.Unlock()
	select {
	case s.remKick <- struct{}{}:
	default:
	}
}

// delivered reports whether DoneLater queued sink's seq for removal.
func (s *Store) delivered(sink string, seq uint64) bool {
	s.remMu.Lock()
	defer s.remMu.Unlock()
	return s.removing[sink][seq]
}

// DropPending deletes pending records of sink without delivering them (the
// operator's `spool drop --pending`) and returns how many it deleted.
func (s *Store) DropPending(sink string, seqs []uint64) (int, error) {
	n, err := s.removePending(sink, seqs)
	if err != nil {
		return 0, fmt.Errorf("spool drop pending %q: %w", sink, err)
	}
	return n, nil
}

// removePending deletes the given pending records and their share of the
// counters, in the writer's next commit.
func (s *Store) removePending(sink string, seqs []uint64) (int, error) {
	req := &writeReq{removeSink: sink, removeSeqs: seqs, done: make(chan struct{})}
	if err := s.submit(req); err != nil {
		return 0, err
	}
	return req.removed, nil
}

// errGarbled marks a stored record whose size cannot be read.
var errGarbled = errors.New("garbled record")

// removeFrom deletes seqs from sink's pending bucket within a transaction,
// updating m, and returns how many were there. A garbled record fails the
// removal before anything is deleted, so it cannot spoil the other
// requests sharing the commit.
func removeFrom(pend *bolt.Bucket, m *meta, sink string, seqs []uint64) (int, error) {
	b := pend.Bucket([]byte(sink))
	if b == nil {
		return 0, nil
	}
	sizes := make([]int64, len(seqs))
	for i, seq := range seqs {
		sizes[i] = -1
		if v := b.Get(seqKey(seq)); v != nil {
			size, err := queue.StoredSize(v)
			if err != nil {
				return 0, fmt.Errorf("%w: seq %d: %v", errGarbled, seq, err)
			}
			sizes[i] = size
		}
	}
	removed := 0
	for i, seq := range seqs {
		if sizes[i] < 0 {
			continue
		}
		if err := b.Delete(seqKey(seq)); err != nil {
			return removed, err
		}
		m.count--
		m.bytes -= sizes[i]
		removed++
	}
	return removed, nil
}

// Retry records a failed attempt of a pending record: Attempts is
// incremented and NextTry and LastError are set. It returns an error wrapping
// queue.ErrNotFound if the record is not pending.
func (s *Store) Retry(sink string, seq uint64, nextTry time.Time, lastErr string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, r, err := getPending(tx, sink, seq)
		if err != nil {
			return err
		}
		r.Attempts++
		r.NextTry = nextTry
		r.LastError = lastErr
		size, err := queue.StoredSize(b.Get(seqKey(seq)))
		if err != nil {
			return err
		}
		// Reuse the stored size: the counters must get back exactly what
		// Append added.
		return b.Put(seqKey(seq), queue.MarshalSized(&r, size))
	})
	if err != nil {
		return fmt.Errorf("spool retry %q seq %d: %w", sink, seq, err)
	}
	return nil
}

// Kill moves a pending record to the dead letters, keeping its Attempts and
// LastError and setting Reason and Died. If forward is not nil it is appended
// as a new pending record in the same transaction (its Seq is set on
// success), so a crash cannot lose the dead letter's forwarding nor forward
// it twice. Forward records ignore MaxBytes and MaxEvents: a full spool must
// still be able to dead-letter. Kill returns an error wrapping queue.ErrNotFound if
// the record is not pending; then nothing is forwarded.
func (s *Store) Kill(sink string, seq uint64, reason string, forward *queue.Record) error {
	var fwdVal []byte
	var fwdSize int64
	if forward != nil {
		if err := checkSink(forward.Sink); err != nil {
			return err
		}
		fwdSize = forward.Size()
		fwdVal = queue.MarshalSized(forward, fwdSize)
		if len(fwdVal) > bolt.MaxValueSize {
			return fmt.Errorf("record for sink %q is too large (%d bytes)", forward.Sink, len(fwdVal))
		}
	}
	died := s.now()
	var fwdSeq uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, r, err := getPending(tx, sink, seq)
		if err != nil {
			return err
		}
		k := seqKey(seq)
		size, err := queue.StoredSize(b.Get(k))
		if err != nil {
			return err
		}
		m, err := readMeta(tx)
		if err != nil {
			return err
		}
		r.Reason = reason
		r.Died = died
		if err := tx.Bucket(bucketDead).Put(k, queue.MarshalSized(&r, size)); err != nil {
			return err
		}
		if err := b.Delete(k); err != nil {
			return err
		}
		m.count--
		m.bytes -= size
		if forward != nil {
			fb, err := tx.Bucket(bucketPending).CreateBucketIfNotExists([]byte(forward.Sink))
			if err != nil {
				return err
			}
			fwdSeq = m.next
			if err := fb.Put(seqKey(fwdSeq), fwdVal); err != nil {
				return err
			}
			m.next++
			m.count++
			m.bytes += fwdSize
		}
		return writeMeta(tx, m)
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
	var out []queue.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		return scan(tx.Bucket(bucketDead), after, n, func(r queue.Record) bool { out = append(out, r); return true })
	})
	if err != nil {
		return nil, fmt.Errorf("spool dead: %w", err)
	}
	return out, nil
}

// Replay moves dead letters back to pending for their sink, with Attempts 0,
// NextTry zero and LastError, Reason and Died cleared, and returns how many
// it moved (unknown seqs are ignored). A replayed record gets a new Seq: a
// dispatcher pages with Pending(sink, after, n) and would never look back at
// an old Seq. Replay ignores MaxBytes and MaxEvents: it is an operator's
// explicit request.
func (s *Store) Replay(seqs []uint64) (int, error) {
	moved := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		moved = 0
		dead := tx.Bucket(bucketDead)
		pend := tx.Bucket(bucketPending)
		m, err := readMeta(tx)
		if err != nil {
			return err
		}
		for _, seq := range seqs {
			k := seqKey(seq)
			v := dead.Get(k)
			if v == nil {
				continue
			}
			size, err := queue.StoredSize(v)
			if err != nil {
				return fmt.Errorf("seq %d: %w", seq, err)
			}
			r, err := queue.Unmarshal(seq, v)
			if err != nil {
				return fmt.Errorf("seq %d: %w", seq, err)
			}
			if err := checkSink(r.Sink); err != nil {
				return fmt.Errorf("seq %d: %w", seq, err)
			}
			r.Attempts, r.NextTry, r.LastError, r.Reason, r.Died = 0, time.Time{}, "", "", time.Time{}
			b, err := pend.CreateBucketIfNotExists([]byte(r.Sink))
			if err != nil {
				return err
			}
			if err := b.Put(seqKey(m.next), queue.MarshalSized(&r, size)); err != nil {
				return err
			}
			if err := dead.Delete(k); err != nil {
				return err
			}
			m.next++
			m.count++
			m.bytes += size
			moved++
		}
		if moved == 0 {
			return nil
		}
		return writeMeta(tx, m)
	})
	if err != nil {
		return 0, fmt.Errorf("spool replay: %w", err)
	}
	return moved, nil
}

// Drop deletes dead letters and returns how many it deleted (unknown seqs
// are ignored).
func (s *Store) Drop(seqs []uint64) (int, error) {
	dropped := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		dropped = 0
		dead := tx.Bucket(bucketDead)
		for _, seq := range seqs {
			k := seqKey(seq)
			if dead.Get(k) == nil {
				continue
			}
			if err := dead.Delete(k); err != nil {
				return err
			}
			dropped++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("spool drop: %w", err)
	}
	return dropped, nil
}

// Stats returns the spool's counts from one consistent snapshot.
//
// Oldest looks only at the first (lowest Seq) record of each sink: Received
// grows with Seq except for replayed and forwarded records, which keep the
// original time, so it is exact for ordinary traffic and cheap always.
func (s *Store) Stats() (queue.Stats, error) {
	st := queue.Stats{BySink: map[string]int{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		m, err := readMeta(tx)
		if err != nil {
			return err
		}
		st.Pending = int(m.count)
		st.PendingBytes = m.bytes
		st.Dead = tx.Bucket(bucketDead).Stats().KeyN
		return forEachSink(tx.Bucket(bucketPending), func(name []byte, b *bolt.Bucket) error {
			k, v := b.Cursor().First()
			if k == nil {
				return nil
			}
			r, err := queue.Unmarshal(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return fmt.Errorf("sink %q seq %d: %w", name, binary.BigEndian.Uint64(k), err)
			}
			if !r.Received.IsZero() && (st.Oldest.IsZero() || r.Received.Before(st.Oldest)) {
				st.Oldest = r.Received
			}
			st.BySink[string(name)] = b.Stats().KeyN
			return nil
		})
	})
	if err != nil {
		return queue.Stats{}, fmt.Errorf("spool stats: %w", err)
	}
	return st, nil
}

// getPending returns the bucket of sink and the decoded pending record seq.
func getPending(tx *bolt.Tx, sink string, seq uint64) (*bolt.Bucket, queue.Record, error) {
	b := tx.Bucket(bucketPending).Bucket([]byte(sink))
	if b == nil {
		return nil, queue.Record{}, queue.ErrNotFound
	}
	v := b.Get(seqKey(seq))
	if v == nil {
		return nil, queue.Record{}, queue.ErrNotFound
	}
	r, err := queue.Unmarshal(seq, v)
	if err != nil {
		return nil, queue.Record{}, err
	}
	return b, r, nil
}

// forEachSink calls f for each sink bucket inside pending.
func forEachSink(pend *bolt.Bucket, f func(name []byte, b *bolt.Bucket) error) error {
	return pend.ForEachBucket(func(k []byte) error {
		return f(k, pend.Bucket(k))
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

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

// readMeta reads the counters. Missing keys read as zero (a new file).
func readMeta(tx *bolt.Tx) (meta, error) {
	b := tx.Bucket(bucketMeta)
	get := func(key []byte) (uint64, error) {
		v := b.Get(key)
		if v == nil {
			return 0, nil
		}
		if len(v) != 8 {
			return 0, fmt.Errorf("corrupt spool meta %q", key)
		}
		return binary.BigEndian.Uint64(v), nil
	}
	next, err := get(keyNext)
	if err != nil {
		return meta{}, err
	}
	count, err := get(keyCount)
	if err != nil {
		return meta{}, err
	}
	bytes, err := get(keyBytes)
	if err != nil {
		return meta{}, err
	}
	return meta{next: next, count: int64(count), bytes: int64(bytes)}, nil
}

// writeMeta stores the counters; it runs in the transaction that changed
// the records they describe.
func writeMeta(tx *bolt.Tx, m meta) error {
	b := tx.Bucket(bucketMeta)
	for _, kv := range [...]struct {
		key []byte
		val uint64
	}{{keyNext, m.next}, {keyCount, uint64(m.count)}, {keyBytes, uint64(m.bytes)}} {
		v := make([]byte, 8)
		binary.BigEndian.PutUint64(v, kv.val)
		if err := b.Put(kv.key, v); err != nil {
			return err
		}
	}
	return nil
}

// Probe writes and fsyncs a few bytes, to tell whether the file can be
// written: readiness asks after an append failed.
func (s *Store) Probe() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if b == nil {
			return errors.New("spool file has no meta bucket")
		}
		return b.Put(keyProbe, binary.BigEndian.AppendUint64(nil, uint64(s.now().UnixNano())))
	})
}

package local

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// segmentFiles returns the paths of dir's segments, oldest first.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	ids, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, id := range ids {
		out = append(out, filepath.Join(dir, segmentName(id)))
	}
	return out
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// pendingIDs returns the message ids pending for sink, in Seq order.
func pendingIDs(t *testing.T, s *Store, sink string) []string {
	t.Helper()
	rs, err := s.Pending(sink, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.Message.ID)
	}
	return ids
}

// TestTornTail: whatever a crash leaves after the last whole frame of
// the last segment (part of a frame, garbage, a frame whose bytes do not
// match its checksum) is cut off at the next start and counted; every
// whole frame before it is recovered, and the log goes on from there.
func TestTornTail(t *testing.T) {
	tests := []struct {
		name string
		// damage changes the file of the last segment, whose last frame
		// starts at last and ends at end; lost says whether that frame's
		// record is gone afterwards.
		damage func(t *testing.T, path string, last, end int64)
		lost   bool
	}{
		{"cut inside the last frame", func(t *testing.T, path string, last, end int64) {
			if err := os.Truncate(path, last+frameHeader+5); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"cut inside the frame header", func(t *testing.T, path string, last, end int64) {
			if err := os.Truncate(path, last+3); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"a byte of the last frame flipped", func(t *testing.T, path string, last, end int64) {
			flip(t, path, end-2)
		}, true},
		{"garbage after the last frame", func(t *testing.T, path string, last, end int64) {
			appendBytes(t, path, []byte("\x07\x00\x00\x00garbage-that-is-no-frame"))
		}, false},
		{"a header promising more than the file holds", func(t *testing.T, path string, last, end int64) {
			h := make([]byte, frameHeader)
			binary.LittleEndian.PutUint32(h, 1<<20)
			appendBytes(t, path, h)
		}, false},
		{"zeros, as a file extended but not written", func(t *testing.T, path string, last, end int64) {
			appendBytes(t, path, make([]byte, 4096))
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if err := s.Append([]queue.Record{rec("bus", strconv.Itoa(i), strings.Repeat("x", 100))}); err != nil {
					t.Fatal(err)
				}
			}
			path := segmentFiles(t, dir)[0]
			last := fileSize(t, path)
			if err := s.Append([]queue.Record{rec("bus", "last", strings.Repeat("y", 100))}); err != nil {
				t.Fatal(err)
			}
			end := fileSize(t, path)
			s.Close()

			tt.damage(t, path, last, end)
			s = open(t, dir, Options{})
			r := s.Recovery()
			want := []string{"0", "1", "2", "3", "4", "last"}
			cut := end
			if tt.lost {
				want, cut = want[:5], last
			}
			if r.TornWrites != 1 || r.TornBytes <= 0 {
				t.Errorf("recovery %+v: want one torn write counted", r)
			}
			if got := pendingIDs(t, s, "bus"); !slices.Equal(got, want) {
				t.Errorf("recovered %v, want %v", got, want)
			}
			if size := fileSize(t, path); size != cut {
				t.Errorf("segment is %d bytes after recovery, want it cut to %d", size, cut)
			}
			// The log goes on, and the next start finds nothing torn.
			if err := s.Append([]queue.Record{rec("bus", "after", "z")}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s = open(t, dir, Options{})
			if r := s.Recovery(); r.TornWrites != 0 {
				t.Errorf("second start found a torn write: %+v", r)
			}
			if got := pendingIDs(t, s, "bus"); !slices.Equal(got, append(want, "after")) {
				t.Errorf("after the second start %v", got)
			}
			checkStats(t, s, len(want)+1, 0, map[string]int{"bus": len(want) + 1})
		})
	}
}

func flip(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// TestDamageBeforeTheEndIsRefused: a bad frame in a segment that is not
// the last is not what a crash leaves (a segment is finished, and synced,
// before the next one starts), so Open refuses rather than drop records
// answered 200, and says what to do.
func TestDamageBeforeTheEndIsRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{SegmentBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if err := s.Append([]queue.Record{rec("bus", strconv.Itoa(i), strings.Repeat("x", 100))}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	files := segmentFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("%d segments, want several", len(files))
	}
	flip(t, files[1], fileSize(t, files[1])-10)
	_, err = Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "not the last segment") || !strings.Contains(err.Error(), files[1]) {
		t.Fatalf("Open of a log damaged in its middle: %v", err)
	}
}

// TestSegmentCutWhileCreated: a crash while a new segment was being
// created leaves a file shorter than its header; it held nothing and is
// removed.
func TestSegmentCutWhileCreated(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	if err := s.Append([]queue.Record{rec("bus", "a", "1")}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	half := filepath.Join(dir, segmentName(2))
	if err := os.WriteFile(half, []byte(segmentMagic[:5]), 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{})
	if r := s.Recovery(); r.TornWrites != 1 {
		t.Errorf("recovery %+v", r)
	}
	if _, err := os.Stat(half); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cut segment is still there: %v", err)
	}
	if got := pendingIDs(t, s, "bus"); !slices.Equal(got, []string{"a"}) {
		t.Errorf("pending %v", got)
	}

	// A whole file that is not a segment is someone else's: refused.
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, segmentName(7)), []byte("PK\x03\x04 not a spool segment at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "not a spool segment") {
		t.Fatalf("Open with a foreign file: %v", err)
	}
}

// TestReclaimAndCompact: segments whose records are all settled are
// deleted; a record that stays (a retry, a dead letter) is written again
// at the end of the log once its segment is mostly settled, so the log
// stays a few segments long however long it stays, and the record is
// intact, across restarts.
func TestReclaimAndCompact(t *testing.T) {
	dir := t.TempDir()
	const segBytes = 4096
	s := open(t, dir, Options{SegmentBytes: segBytes})
	stuck := []queue.Record{rec("slow", "stuck", strings.Repeat("s", 200)), rec("slow", "dead", strings.Repeat("d", 200))}
	stuck[1].Message.Key = "task-other"
	if err := s.Append(stuck); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill("slow", stuck[1].Seq, "poison", nil); err != nil {
		t.Fatal(err)
	}
	maxSegments := 0
	for i := range 2000 {
		rs := []queue.Record{rec("bus", strconv.Itoa(i), strings.Repeat("x", 150))}
		if err := s.Append(rs); err != nil {
			t.Fatal(err)
		}
		s.DoneLater("bus", []uint64{rs[0].Seq})
		if i == 1000 { // once: otherwise only compaction moves it
			if err := s.Retry("slow", stuck[0].Seq, t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("attempt %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		maxSegments = max(maxSegments, len(segmentFiles(t, dir)))
	}
	// 2000 appends of ~250 bytes make ~120 segments; at most three are
	// kept whole behind the one being written, plus one being compacted.
	if maxSegments > 5 {
		t.Errorf("the log grew to %d segments: a waiting record pins the old ones", maxSegments)
	}
	ls := s.LogStats()
	t.Logf("%d segments at most; now %d segments, %d bytes, %d commits", maxSegments, ls.Segments, ls.Bytes, ls.Commits)

	check := func(s *Store) {
		t.Helper()
		got, err := s.Pending("slow", 0, 10)
		if err != nil || len(got) != 1 {
			t.Fatalf("slow pending %v %v", got, err)
		}
		want := stuck[0]
		want.Attempts, want.NextTry, want.LastError = 1, t0.Add(1000*time.Second), "attempt 1000"
		same(t, got[0], want)
		dead, err := s.Dead(0, 10)
		if err != nil || len(dead) != 1 || dead[0].Message.ID != "dead" || dead[0].Reason != "poison" {
			t.Fatalf("dead %+v %v", dead, err)
		}
		checkStats(t, s, 1, 1, map[string]int{"slow": 1})
	}
	check(s)
	s.Close()
	s = open(t, dir, Options{SegmentBytes: segBytes})
	check(s)
}

// TestAppendWhenTheDiskFails: a write or an fdatasync that fails (a full
// disk, a read-only file system, an I/O error) fails every request of
// its commit and changes nothing: the log is cut back to where the
// commit began and the index rebuilt from it, removals wait for the next
// commit, and once the disk works again the spool goes on. What was
// acknowledged is there after a restart, and nothing else.
func TestAppendWhenTheDiskFails(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		sync bool // the fdatasync fails, after the write went through
	}{
		{"write: no space", syscall.ENOSPC, false},
		{"write: read-only file system", syscall.EROFS, false},
		{"fdatasync: I/O error", syscall.EIO, true},
		{"fdatasync: no space", syscall.ENOSPC, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, Options{})
			acked := map[string]bool{}
			appendOne := func(id string) error {
				err := s.Append([]queue.Record{rec("bus", id, strings.Repeat("x", 100))})
				if err == nil {
					acked[id] = true
				}
				return err
			}
			for i := range 3 {
				if err := appendOne(strconv.Itoa(i)); err != nil {
					t.Fatal(err)
				}
			}
			delivered, _ := s.Pending("bus", 0, 1)
			before := fileSize(t, segmentFiles(t, dir)[0])

			realWrite, realSync := s.writeAt, s.datasync
			failing := true
			if tt.sync {
				s.datasync = func(f *os.File) error {
					if failing {
						return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: tt.err}
					}
					return realSync(f)
				}
			} else {
				s.writeAt = func(f *os.File, b []byte, off int64) error {
					if failing {
						return &os.PathError{Op: "write", Path: f.Name(), Err: tt.err}
					}
					return realWrite(f, b, off)
				}
			}
			s.DoneLater("bus", seqsOf(delivered)) // rides along with the failing commit
			err := appendOne("refused")
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), "spool write") {
				t.Fatalf("Append on a failing disk: %v", err)
			}
			if err := s.Retry("bus", delivered[0].Seq+1, t0, "x"); !errors.Is(err, tt.err) {
				t.Fatalf("Retry on a failing disk: %v", err)
			}
			if size := fileSize(t, segmentFiles(t, dir)[0]); size != before {
				t.Errorf("segment is %d bytes after failed commits, was %d", size, before)
			}
			if got := pendingIDs(t, s, "bus"); !slices.Equal(got, []string{"1", "2"}) {
				t.Errorf("pending after failed commits %v, want the delivered one still gone", got)
			}

			failing = false
			if err := appendOne("after"); err != nil {
				t.Fatalf("Append once the disk works again: %v", err)
			}
			s.Close()
			s = open(t, dir, Options{})
			if got := pendingIDs(t, s, "bus"); !slices.Equal(got, []string{"1", "2", "after"}) {
				t.Errorf("after a restart %v, want the acknowledged ones but the delivered", got)
			}
			r, _ := s.Pending("bus", 0, 1)
			if r[0].Attempts != 0 {
				t.Errorf("the failed retry was kept: %+v", r[0])
			}
			if len(acked) != 4 {
				t.Errorf("acknowledged %v", acked)
			}
		})
	}
}

// TestNewSegmentCannotBeCreated: when the next segment cannot be created
// (a read-only directory, a full disk) the log goes on in the one it has.
func TestNewSegmentCannotBeCreated(t *testing.T) {
	dir := t.TempDir()
	var logs sinktest.Buffer // the store logs from its writer goroutine
	s := open(t, dir, Options{SegmentBytes: 512, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	// A directory where segment 2 would go makes its creation fail, also
	// for root, whom a read-only mode does not stop.
	if err := os.Mkdir(filepath.Join(dir, segmentName(2)), 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := s.Append([]queue.Record{rec("bus", strconv.Itoa(i), strings.Repeat("x", 100))}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if files := segmentFiles(t, dir); len(files) != 1 || fileSize(t, files[0]) < 2000 {
		t.Fatalf("segments %v", files)
	}
	// Said once, not at every commit; and said again when it works.
	if err := os.Remove(filepath.Join(dir, segmentName(2))); err != nil {
		t.Fatal(err)
	}
	if err := s.Append([]queue.Record{rec("bus", "20", "x")}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if n := strings.Count(logs.String(), "cannot start a new log segment"); n != 1 || !strings.Contains(logs.String(), "can be created again") {
		t.Errorf("logged the failure %d times:\n%s", n, logs.String())
	}
	s = open(t, dir, Options{SegmentBytes: 512})
	if n := len(pendingIDs(t, s, "bus")); n != 21 {
		t.Fatalf("%d pending after restart", n)
	}
}

// legacySpool writes a bbolt spool file as hookbridge before the log
// wrote it: pending/<sink>/<seq>, dead/<seq> and meta/next, with one
// record that is garbage.
func legacySpool(t *testing.T, dir string) (pending, dead []queue.Record) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, LegacyFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key := func(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }
	pending = []queue.Record{rec("nats", "a", "A"), rec("kafka", "b", "B"), rec("nats", "c", "C")}
	pending[0].Seq, pending[1].Seq, pending[2].Seq = 3, 5, 9
	pending[2].Attempts, pending[2].NextTry, pending[2].LastError = 2, t0.Add(time.Minute), "timeout"
	dead = []queue.Record{rec("nats", "d", "D")}
	dead[0].Seq, dead[0].Reason, dead[0].Died = 4, "poison", t0
	err = db.Update(func(tx *bolt.Tx) error {
		pend, _ := tx.CreateBucket([]byte("pending"))
		for _, r := range pending {
			b, err := pend.CreateBucketIfNotExists([]byte(r.Sink))
			if err != nil {
				return err
			}
			if err := b.Put(key(r.Seq), queue.Marshal(&r)); err != nil {
				return err
			}
		}
		b, _ := pend.CreateBucketIfNotExists([]byte("nats"))
		if err := b.Put(key(7), []byte{9, 9, 9}); err != nil { // unreadable
			return err
		}
		db, _ := tx.CreateBucket([]byte("dead"))
		if err := db.Put(key(dead[0].Seq), queue.Marshal(&dead[0])); err != nil {
			return err
		}
		mb, _ := tx.CreateBucket([]byte("meta"))
		return mb.Put([]byte("next"), key(12))
	})
	if err != nil {
		t.Fatal(err)
	}
	return pending, dead
}

// TestMigrateFromBbolt: a spool file of an earlier version is moved into
// the log at the first start, Seqs and all, and kept aside renamed; a
// migration cut short by a crash starts over; a directory holding both
// formats is refused with what to do.
func TestMigrateFromBbolt(t *testing.T) {
	dir := t.TempDir()
	pending, dead := legacySpool(t, dir)
	// A crash during an earlier try left a half-written log behind.
	if err := os.WriteFile(filepath.Join(dir, migrationTmp), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, Options{})
	if r := s.Recovery(); r.Migrated != 4 || r.Unreadable != 1 {
		t.Errorf("recovery %+v, want 4 migrated and 1 unreadable", r)
	}
	check := func(s *Store) {
		t.Helper()
		for _, sink := range []string{"nats", "kafka"} {
			got, err := s.Pending(sink, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			var want []queue.Record
			for _, r := range pending {
				if r.Sink == sink {
					want = append(want, r)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%s: %d pending, want %d", sink, len(got), len(want))
			}
			for i := range got {
				same(t, got[i], want[i])
			}
		}
		got, err := s.Dead(0, 10)
		if err != nil || len(got) != 1 {
			t.Fatalf("dead %v %v", got, err)
		}
		same(t, got[0], dead[0])
	}
	check(s)
	for _, name := range []string{LegacyFile, migrationTmp} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, LegacyFile+MigratedSuffix)); err != nil {
		t.Errorf("the migrated file is not kept: %v", err)
	}
	// Seqs go on after the old file's next.
	rs := []queue.Record{rec("nats", "new", "N")}
	if err := s.Append(rs); err != nil || rs[0].Seq < 12 {
		t.Fatalf("append after migration: seq %d, %v", rs[0].Seq, err)
	}
	if n, err := s.DropPending("nats", seqsOf(rs)); n != 1 || err != nil {
		t.Fatalf("drop %d %v", n, err)
	}
	s.Close()
	s = open(t, dir, Options{})
	if r := s.Recovery(); r.Migrated != 0 {
		t.Errorf("migrated again: %+v", r)
	}
	check(s)
	s.Close()

	// An old spool file beside a log: which is current is not ours to
	// guess.
	legacySpool(t, dir)
	_, err := Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "holds both") || !strings.Contains(err.Error(), "move "+LegacyFile) {
		t.Fatalf("Open with both formats: %v", err)
	}
}

// TestMigrationFinishesAfterACrash: a crash between renaming the old file
// and the new log leaves only the new log to rename.
func TestMigrationFinishesAfterACrash(t *testing.T) {
	dir := t.TempDir()
	legacySpool(t, dir)
	s := open(t, dir, Options{})
	want := pendingIDs(t, s, "nats")
	if !slices.Equal(want, []string{"a", "c"}) {
		// Compared with an empty spool, the check below would hold
		// whether the migration finished or not.
		t.Fatalf("migrated %v, want the legacy spool's readable records", want)
	}
	s.Close()
	first := segmentFiles(t, dir)[0]
	if err := os.Rename(first, filepath.Join(dir, migrationTmp)); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{})
	if got := pendingIDs(t, s, "nats"); !slices.Equal(got, want) {
		t.Fatalf("after the interrupted rename %v, want %v", got, want)
	}
}

// BenchmarkRecovery opens a log of HOOKBRIDGE_BENCH_RECOVERY_MB
// megabytes (64 unless set; docs/performance.md has the figure for 1024)
// of 1 KiB records, half of them delivered.
func BenchmarkRecovery(b *testing.B) {
	mb := 64
	if v := os.Getenv("HOOKBRIDGE_BENCH_RECOVERY_MB"); v != "" {
		var err error
		if mb, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	proto := benchRecord()
	batch := make([]queue.Record, 64)
	for s.LogStats().Bytes < int64(mb)<<20 {
		for i := range batch {
			batch[i] = proto
			batch[i].Message.Key = fmt.Sprintf("task-%d", i)
		}
		if err := s.Append(batch); err != nil {
			b.Fatal(err)
		}
		s.DoneLater("nats", seqsOf(batch[:32]))
	}
	s.Close()
	b.ResetTimer()
	var r Recovery
	for b.Loop() {
		s, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		r = s.Recovery()
		s.Close()
	}
	b.ReportMetric(float64(r.Bytes)/(1<<20), "MB")
	b.ReportMetric(float64(r.Pending), "records")
	b.ReportMetric(float64(r.Bytes)/(1<<20)/(float64(b.Elapsed().Seconds())/float64(b.N)), "MB/s")
}

// TestIndexMemory holds the index to what config.SpoolIndexPerMessage
// promises for each waiting message (hookbridge check adds it up against
// the memory limit), with a task id as long as Browser Use's.
func TestIndexMemory(t *testing.T) {
	if DefaultCacheBytes != config.SpoolCacheBytes {
		t.Errorf("DefaultCacheBytes %d, config.SpoolCacheBytes %d", DefaultCacheBytes, config.SpoolCacheBytes)
	}
	s := open(t, t.TempDir(), Options{CacheBytes: -1})
	const n = 50000
	// The index keeps each task id's bytes (a string of its own, as the
	// event's decoding makes it), so they count; the slice holding them
	// here does not.
	keys := make([]string, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range keys {
		keys[i] = fmt.Sprintf("0f3c9a2e-8b1d-4c6f-9e7a-%012d", i)
	}
	batch := make([]queue.Record, 100)
	for i := 0; i < n; i += len(batch) {
		for j := range batch {
			batch[j] = rec("nats", "x", "body")
			batch[j].Message.Key = keys[i+j]
		}
		if err := s.Append(batch); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes of heap per waiting message", per)
	if per > config.SpoolIndexPerMessage {
		t.Errorf("%.0f bytes per waiting message, over config.SpoolIndexPerMessage (%d): update it, and the docs that quote it", per, config.SpoolIndexPerMessage)
	}
	runtime.KeepAlive(keys)
}

// TestConcurrentUse runs what a serving spool does at once, on small
// segments so that they roll, are reclaimed and compacted meanwhile:
// appends from many goroutines, a dispatcher taking records and settling
// them (done, or a retry now and then), and readers of the counters.
// Every record appended is delivered exactly once or still waits, and a
// restart finds the same.
func TestConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 8 << 10})
	const writers, each = 8, 150
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := rec("bus", fmt.Sprintf("%d-%d", w, i), strings.Repeat("x", 64))
				r.Message.Key = fmt.Sprintf("task-%d", w)
				if err := s.Append([]queue.Record{r}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Stats(); err != nil {
				t.Error(err)
			}
			s.LogStats()
		}
	})
	delivered := map[string]int{}
	retried := map[uint64]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(delivered) < writers*each && time.Now().Before(deadline) {
		due, _, _, err := s.PendingDue("bus", 0, 64, func(string, time.Time) (bool, bool) { return true, false })
		if err != nil {
			t.Fatal(err)
		}
		var done []uint64
		for _, r := range due {
			if r.Seq%7 == 0 && !retried[r.Seq] { // fails once: rewritten, then delivered
				retried[r.Seq] = true
				if err := s.Retry("bus", r.Seq, time.Time{}, "try again"); err != nil {
					t.Fatal(err)
				}
				continue
			}
			delivered[r.Message.ID]++
			done = append(done, r.Seq)
		}
		s.DoneLater("bus", done)
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if len(delivered) != writers*each {
		t.Fatalf("%d of %d delivered", len(delivered), writers*each)
	}
	for id, n := range delivered {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	checkStats(t, s, 0, 0, nil)
	t.Logf("%d segments now, %d commits", s.LogStats().Segments, s.LogStats().Commits)
	s.Close()
	s = open(t, dir, Options{SegmentBytes: 8 << 10})
	checkStats(t, s, 0, 0, nil)
}

// FuzzTornTail appends arbitrary bytes to a log's last segment, as a
// crash during a write (or a disk returning garbage past the last sync)
// can leave them: Open must neither fail nor panic, must keep every whole
// frame written before, and must cut off whatever does not end in a whole
// frame. Bytes that happen to form whole frames of the log's own format
// are kept: they are indistinguishable from a write that completed.
func FuzzTornTail(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4})
	f.Add([]byte{5, 0, 0, 0, 0, 0, 0, 0, opDelete, 1, 1})
	f.Add(append([]byte{12, 0, 0, 0}, make([]byte, 20)...))
	base := f.TempDir()
	s, err := Open(base, Options{})
	if err != nil {
		f.Fatal(err)
	}
	var want []string
	for i := range 5 {
		id := strconv.Itoa(i)
		if err := s.Append([]queue.Record{rec("bus", id, strings.Repeat("x", 50))}); err != nil {
			f.Fatal(err)
		}
		want = append(want, id)
	}
	s.Close()
	seg, err := os.ReadFile(segmentFiles(f, base)[0])
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), append(append([]byte(nil), seg...), tail...), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("Open with %d bytes after the last frame: %v", len(tail), err)
		}
		defer s.Close()
		got := pendingIDs(t, s, "bus")
		if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
			t.Fatalf("recovered %v, want %v first", got, want)
		}
		r := s.Recovery()
		if size := fileSize(t, filepath.Join(dir, segmentName(1))); size+r.TornBytes != int64(len(seg)+len(tail)) || size < int64(len(seg)) {
			t.Fatalf("segment is %d bytes, %d cut off, of %d + %d", size, r.TornBytes, len(seg), len(tail))
		}
		// What is left is a log the next start reads whole.
		if err := s.Append([]queue.Record{rec("bus", "after", "y")}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s2, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if r := s2.Recovery(); r.TornWrites != 0 {
			t.Fatalf("second start cut off %d bytes", r.TornBytes)
		}
		if got2 := pendingIDs(t, s2, "bus"); len(got2) != len(got)+1 || got2[len(got2)-1] != "after" {
			t.Fatalf("after restart %v, before %v", got2, got)
		}
	})
}

// TestDrainedBacklogGivesMemoryBack: after a backlog of 100,000 messages
// is delivered, the index lets go of what it held for them (a Go map
// keeps its size unless rebuilt).
func TestDrainedBacklogGivesMemoryBack(t *testing.T) {
	s := open(t, t.TempDir(), Options{CacheBytes: -1})
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	empty := heap()
	batch := make([]queue.Record, 1000)
	var seqs []uint64
	for range 100 {
		for j := range batch {
			batch[j] = rec("bus", "x", "b")
		}
		if err := s.Append(batch); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seqsOf(batch)...)
	}
	full := heap()
	s.DoneLater("bus", seqs)
	// Maintenance runs after a commit, once its requests are answered:
	// the second commit is taken only after the first one's.
	for range 2 {
		if err := s.Probe(); err != nil {
			t.Fatal(err)
		}
	}
	drained := heap()
	t.Logf("heap: empty %d KiB, 100,000 waiting %d KiB, drained %d KiB", empty>>10, full>>10, drained>>10)
	// Without rebuilding the map, about a fifth stays (measured: 2.6 of
	// 13.6 MiB); rebuilt, about 2%.
	if drained-empty > (full-empty)/10 {
		t.Errorf("the drained index still holds %d KiB of the %d KiB the backlog took", (drained-empty)>>10, (full-empty)>>10)
	}
}

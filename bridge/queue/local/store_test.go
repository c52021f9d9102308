package local

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/sinks"
)

func open(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

func rec(sink, id string, body string) queue.Record {
	return queue.Record{
		Sink: sink,
		Message: sinks.Message{
			Target: "events." + sink,
			Key:    "task-" + id,
			ID:     id,
			Attrs:  []sinks.Attr{{Name: "id", Value: id}, {Name: "type", Value: "com.browser-use.task"}},
			Body:   []byte(body),
		},
		Received: t0,
	}
}

// same compares records field by field; times with Equal since decoding
// yields local-zone times without monotonic readings.
func same(t *testing.T, got, want queue.Record) {
	t.Helper()
	for _, tm := range []struct {
		name string
		g, w time.Time
	}{{"Received", got.Received, want.Received}, {"NextTry", got.NextTry, want.NextTry}, {"Died", got.Died, want.Died}} {
		if !tm.g.Equal(tm.w) {
			t.Errorf("seq %d %s = %v, want %v", want.Seq, tm.name, tm.g, tm.w)
		}
	}
	got.Received, want.Received, got.NextTry, want.NextTry, got.Died, want.Died = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("record mismatch:\n got %+v\nwant %+v", got, want)
	}
}

func checkStats(t *testing.T, s *Store, pending int, dead int, bySink map[string]int) queue.Stats {
	t.Helper()
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != pending || st.Dead != dead {
		t.Errorf("stats pending %d dead %d, want %d %d", st.Pending, st.Dead, pending, dead)
	}
	want := map[string]int{}
	for k, v := range bySink {
		if v != 0 {
			want[k] = v
		}
	}
	bySink = want
	if !reflect.DeepEqual(st.BySink, bySink) {
		t.Errorf("stats by sink %v, want %v", st.BySink, bySink)
	}
	// The counters must agree with the records themselves.
	var bytes int64
	n := 0
	for name := range st.BySink {
		rs, err := s.Pending(name, 0, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		for i := range rs {
			bytes += rs[i].Size()
		}
		n += len(rs)
	}
	if n != st.Pending || bytes != st.PendingBytes {
		t.Errorf("stats say %d records / %d bytes, records are %d / %d", st.Pending, st.PendingBytes, n, bytes)
	}
	if pending == 0 && !st.Oldest.IsZero() {
		t.Errorf("oldest %v with nothing pending", st.Oldest)
	}
	return st
}

func seqsOf(rs []queue.Record) []uint64 {
	out := make([]uint64, len(rs))
	for i := range rs {
		out[i] = rs[i].Seq
	}
	return out
}

func TestAppendPendingDone(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	full := queue.Record{
		Sink: "nats",
		Message: sinks.Message{
			Target: "subj", Key: "k", ID: "id-1",
			Attrs: []sinks.Attr{{Name: "id", Value: "id-1"}, {Name: "empty", Value: ""}, {Name: "ünï", Value: "\x00\xff"}},
			Body:  []byte{0, 1, 2, 0xff, '{', '}'},
		},
		Received:   t0,
		Attempts:   3,
		NextTry:    t0.Add(time.Minute),
		LastError:  "boom",
		DeadLetter: true,
	}
	batch := []queue.Record{full, rec("kafka", "a", "A"), rec("nats", "b", "B"), {Sink: "nats"}}
	if err := s.Append(batch); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(batch); i++ {
		if batch[i].Seq <= batch[i-1].Seq || batch[0].Seq == 0 {
			t.Fatalf("seqs not increasing: %v", seqsOf(batch))
		}
	}
	more := []queue.Record{rec("nats", "c", "C")}
	if err := s.Append(more); err != nil {
		t.Fatal(err)
	}
	if more[0].Seq <= batch[3].Seq {
		t.Fatalf("second append seq %d not after %d", more[0].Seq, batch[3].Seq)
	}

	got, err := s.Pending("nats", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []queue.Record{batch[0], batch[2], batch[3], more[0]}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		same(t, got[i], want[i])
	}

	// Pagination with after.
	var paged []uint64
	for after := uint64(0); ; {
		page, err := s.Pending("nats", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 2 {
			t.Fatalf("page of %d", len(page))
		}
		paged = append(paged, seqsOf(page)...)
		after = page[len(page)-1].Seq
	}
	if !reflect.DeepEqual(paged, seqsOf(want)) {
		t.Fatalf("paged %v, want %v", paged, seqsOf(want))
	}
	if rs, _ := s.Pending("nope", 0, 10); len(rs) != 0 {
		t.Fatalf("unknown sink has %d records", len(rs))
	}

	checkStats(t, s, 5, 0, map[string]int{"nats": 4, "kafka": 1})

	if _, err := s.DropPending("nats", []uint64{batch[0].Seq, more[0].Seq, 999999}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DropPending("kafka", []uint64{batch[1].Seq}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Pending("nats", 0, 100)
	if !reflect.DeepEqual(seqsOf(got), []uint64{batch[2].Seq, batch[3].Seq}) {
		t.Fatalf("after done: %v", seqsOf(got))
	}
	checkStats(t, s, 2, 0, map[string]int{"nats": 2})

	if err := s.Append([]queue.Record{{Message: sinks.Message{ID: "x"}}}); err == nil {
		t.Fatal("append without sink succeeded")
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var appended []queue.Record
	for i := range 10 {
		rs := []queue.Record{rec("nats", strconv.Itoa(i), strings.Repeat("x", i))}
		if err := s.Append(rs); err != nil {
			t.Fatal(err)
		}
		appended = append(appended, rs...)
	}
	last := appended[len(appended)-1].Seq
	// Delete the newest records: their Seqs must still not be reused.
	if _, err := s.DropPending("nats", []uint64{last, last - 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill("nats", appended[0].Seq, "bad", nil); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := s.Append([]queue.Record{rec("nats", "late", "")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}

	s = open(t, dir, Options{})
	got, err := s.Pending("nats", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := appended[1 : len(appended)-2]
	if len(got) != len(want) {
		t.Fatalf("got %d records after reopen, want %d", len(got), len(want))
	}
	for i := range want {
		same(t, got[i], want[i])
	}
	after := checkStats(t, s, len(want), 1, map[string]int{"nats": len(want)})
	if !reflect.DeepEqual(before, after) {
		t.Errorf("stats changed over reopen: %+v -> %+v", before, after)
	}
	rs := []queue.Record{rec("nats", "new", "")}
	if err := s.Append(rs); err != nil {
		t.Fatal(err)
	}
	if rs[0].Seq <= last {
		t.Fatalf("seq %d reused (last before reopen %d)", rs[0].Seq, last)
	}
}

// TestCrashChild is the subprocess of TestCrashSafety: it appends until it
// is killed, printing each acknowledged Seq.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("SPOOL_CRASH_DIR")
	if dir == "" {
		t.Skip("subprocess of TestCrashSafety")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				rs := []queue.Record{rec("nats", fmt.Sprintf("%d-%d", g, i), strings.Repeat("b", 512)), rec("kafka", "x", "y")}
				if err := s.Append(rs); err != nil {
					fmt.Println("append:", err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Printf("%d %d\n", rs[0].Seq, rs[1].Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a subprocess")
	}
	dir := t.TempDir()
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SPOOL_CRASH_DIR="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Everything printed counts as acknowledged, also lines read after
		// the kill: they were written before it.
		var acked []uint64
		killed := false
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			for _, w := range f {
				seq, err := strconv.ParseUint(w, 10, 64)
				if err != nil {
					cmd.Process.Kill()
					t.Fatalf("child: %s", sc.Text())
				}
				acked = append(acked, seq)
			}
			if !killed && len(acked) >= 400+300*round {
				if err := cmd.Process.Kill(); err != nil { // SIGKILL
					t.Fatal(err)
				}
				killed = true
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("child exited before being killed: %v", err)
		}

		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		present := map[uint64]bool{}
		for _, sink := range []string{"nats", "kafka"} {
			rs, err := s.Pending(sink, 0, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				present[r.Seq] = true
			}
		}
		for _, seq := range acked {
			if !present[seq] {
				t.Errorf("round %d: acknowledged seq %d lost", round, seq)
			}
		}
		st, err := s.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending != len(present) {
			t.Errorf("round %d: stats say %d pending, found %d", round, st.Pending, len(present))
		}
		t.Logf("round %d: %d acknowledged, %d present after SIGKILL", round, len(acked), len(present))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGroupCommit(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	const goroutines, each = 50, 20
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	seqs := make(chan uint64, goroutines*each)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				rs := []queue.Record{rec(fmt.Sprintf("sink%d", g%3), fmt.Sprintf("%d-%d", g, i), "body")}
				if err := s.Append(rs); err != nil {
					errs <- err
					return
				}
				seqs <- rs[0].Seq
			}
		})
	}
	wg.Wait()
	close(errs)
	close(seqs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for seq := range seqs {
		if seen[seq] {
			t.Fatalf("seq %d assigned twice", seq)
		}
		seen[seq] = true
	}
	checkStats(t, s, goroutines*each, 0, map[string]int{"sink0": 17 * each, "sink1": 17 * each, "sink2": 16 * each})
	commits := s.commits.Load()
	t.Logf("%d appends in %d commits (%.1f appends/commit)", goroutines*each, commits, float64(goroutines*each)/float64(commits))
	if commits > goroutines*each/2 {
		t.Fatalf("%d commits for %d appends: no group commit", commits, goroutines*each)
	}
}

func TestLimits(t *testing.T) {
	one := rec("nats", "1", strings.Repeat("x", 100))
	size := one.Size()
	tests := []struct {
		name  string
		opts  Options
		fits  int    // how many single-record appends fit
		limit string // what the error names
	}{
		{"events", Options{MaxEvents: 3}, 3, "max_events 3"},
		{"bytes", Options{MaxBytes: 3*size + size/2}, 3, fmt.Sprintf("max_bytes %d", 3*size+size/2)},
		{"both", Options{MaxEvents: 5, MaxBytes: 2*size + size/2}, 2, "max_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, t.TempDir(), tt.opts)
			var seqs []uint64
			for i := range tt.fits {
				rs := []queue.Record{rec("nats", strconv.Itoa(i), strings.Repeat("x", 100))}
				if err := s.Append(rs); err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
				seqs = append(seqs, rs[0].Seq)
			}
			// A multi-record append that does not fit stores none of its
			// records, even those that would have fitted alone.
			if _, err := s.DropPending("nats", seqs[:1]); err != nil {
				t.Fatal(err)
			}
			two := []queue.Record{rec("other", "a", strings.Repeat("x", 100)), rec("other", "b", strings.Repeat("x", 100))}
			err := s.Append(two)
			if !errors.Is(err, queue.ErrFull) || !strings.Contains(err.Error(), tt.limit) {
				t.Fatalf("append over the limit: %v", err)
			}
			if two[0].Seq != 0 || two[1].Seq != 0 {
				t.Fatalf("refused append set seqs %v", seqsOf(two))
			}
			checkStats(t, s, tt.fits-1, 0, map[string]int{"nats": tt.fits - 1})

			// Done freed room for one.
			if err := s.Append(two[:1]); err != nil {
				t.Fatalf("append after done: %v", err)
			}
			if err := s.Append([]queue.Record{rec("nats", "z", strings.Repeat("x", 100))}); !errors.Is(err, queue.ErrFull) {
				t.Fatalf("append when full again: %v", err)
			}

			// Kill's forward ignores the limits.
			fwd := rec("dlq", "f", strings.Repeat("x", 100))
			fwd.DeadLetter = true
			if err := s.Kill("nats", seqs[1], "poison", &fwd); err != nil {
				t.Fatalf("kill with forward on a full spool: %v", err)
			}
			if fwd.Seq <= two[0].Seq {
				t.Fatalf("forward seq %d", fwd.Seq)
			}
			checkStats(t, s, tt.fits, 1, map[string]int{"nats": tt.fits - 2, "other": 1, "dlq": 1})
			// Replay ignores them too.
			if n, err := s.Replay([]uint64{seqs[1]}); err != nil || n != 1 {
				t.Fatalf("replay on a full spool: %d %v", n, err)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	fixed := t0.Add(time.Hour)
	s.now = func() time.Time { return fixed }

	rs := []queue.Record{rec("nats", "a", "A"), rec("nats", "b", "B"), rec("kafka", "c", "C")}
	rs[1].Received = t0.Add(-time.Minute) // oldest, but not first of its sink
	rs[2].Received = t0.Add(-time.Minute)
	if err := s.Append(rs); err != nil {
		t.Fatal(err)
	}
	st := checkStats(t, s, 3, 0, map[string]int{"nats": 2, "kafka": 1})
	if !st.Oldest.Equal(t0.Add(-time.Minute)) {
		t.Errorf("oldest %v", st.Oldest)
	}
	if st.PendingBytes != rs[0].Size()+rs[1].Size()+rs[2].Size() {
		t.Errorf("pending bytes %d", st.PendingBytes)
	}

	// Retry.
	next := t0.Add(5 * time.Minute)
	for i := range 2 {
		if err := s.Retry("nats", rs[0].Seq, next, fmt.Sprintf("timeout %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.Pending("nats", 0, 1)
	want := rs[0]
	want.Attempts, want.NextTry, want.LastError = 2, next, "timeout 1"
	same(t, got[0], want)
	if err := s.Retry("nats", 12345, next, "x"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("retry of a missing record: %v", err)
	}
	checkStats(t, s, 3, 0, map[string]int{"nats": 2, "kafka": 1})

	// Kill with a forward record.
	fwd := rec("dlq", "fa", "dead letter of a")
	fwd.DeadLetter = true
	if err := s.Kill("nats", rs[0].Seq, "too many attempts", &fwd); err != nil {
		t.Fatal(err)
	}
	if fwd.Seq <= rs[2].Seq {
		t.Fatalf("forward seq %d", fwd.Seq)
	}
	dead, err := s.Dead(0, 10)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead %v %v", dead, err)
	}
	wantDead := want
	wantDead.Reason, wantDead.Died = "too many attempts", fixed
	same(t, dead[0], wantDead)
	got, _ = s.Pending("dlq", 0, 10)
	if len(got) != 1 {
		t.Fatalf("forward not pending: %v", got)
	}
	same(t, got[0], fwd)
	if err := s.Kill("nats", rs[0].Seq, "again", &fwd); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("kill of a dead record: %v", err)
	}
	checkStats(t, s, 3, 1, map[string]int{"nats": 1, "kafka": 1, "dlq": 1})

	// Kill without forward, then list the dead letters in Seq order.
	if err := s.Kill("kafka", rs[2].Seq, "rejected", nil); err != nil {
		t.Fatal(err)
	}
	dead, _ = s.Dead(0, 10)
	if !reflect.DeepEqual(seqsOf(dead), []uint64{rs[0].Seq, rs[2].Seq}) || dead[1].Sink != "kafka" {
		t.Fatalf("dead %v", dead)
	}
	if page, _ := s.Dead(rs[0].Seq, 10); !reflect.DeepEqual(seqsOf(page), []uint64{rs[2].Seq}) {
		t.Fatalf("dead after %d: %v", rs[0].Seq, seqsOf(page))
	}
	checkStats(t, s, 2, 2, map[string]int{"nats": 1, "dlq": 1})

	// Replay: back to pending under a new Seq, attempts reset.
	n, err := s.Replay([]uint64{rs[0].Seq, 999})
	if err != nil || n != 1 {
		t.Fatalf("replay %d %v", n, err)
	}
	got, _ = s.Pending("nats", rs[1].Seq, 10)
	if len(got) != 1 || got[0].Seq <= fwd.Seq {
		t.Fatalf("replayed %v", got)
	}
	wantReplayed := rs[0]
	wantReplayed.Seq = got[0].Seq
	same(t, got[0], wantReplayed)
	checkStats(t, s, 3, 1, map[string]int{"nats": 2, "dlq": 1})

	// Drop a dead letter.
	if n, err := s.Drop([]uint64{rs[2].Seq, rs[2].Seq, 4242}); err != nil || n != 1 {
		t.Fatalf("drop %d %v", n, err)
	}
	if dead, _ := s.Dead(0, 10); len(dead) != 0 {
		t.Fatalf("dead after drop %v", dead)
	}
	checkStats(t, s, 3, 0, map[string]int{"nats": 2, "dlq": 1})

	// DropPending.
	if n, err := s.DropPending("nats", []uint64{rs[1].Seq, wantReplayed.Seq, rs[0].Seq}); err != nil || n != 2 {
		t.Fatalf("drop pending %d %v", n, err)
	}
	if n, err := s.DropPending("nope", []uint64{1}); err != nil || n != 0 {
		t.Fatalf("drop pending of unknown sink %d %v", n, err)
	}
	st = checkStats(t, s, 1, 0, map[string]int{"dlq": 1})
	if !st.Oldest.Equal(fwd.Received) {
		t.Errorf("oldest %v, want %v", st.Oldest, fwd.Received)
	}
	if _, err := s.DropPending("dlq", []uint64{fwd.Seq}); err != nil {
		t.Fatal(err)
	}
	st = checkStats(t, s, 0, 0, nil)
	if st.PendingBytes != 0 {
		t.Errorf("pending bytes %d with nothing pending", st.PendingBytes)
	}
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, Options{}) // holds the lock until cleanup
	start := time.Now()
	s2, err := Open(dir, Options{OpenTimeout: 200 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second open succeeded")
	}
	if !strings.Contains(err.Error(), "in use by another hookbridge process") || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("error %q", err)
	}
	// Generous bound: this only guards against waiting forever.
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("open waited %v", d)
	}
}

func benchRecord() queue.Record {
	r := rec("nats", "bench", strings.Repeat("x", 1024))
	return r
}

func BenchmarkAppend(b *testing.B) {
	s := open(b, b.TempDir(), Options{})
	proto := benchRecord()
	b.ReportAllocs()
	b.SetBytes(proto.Size())
	b.ResetTimer()
	for b.Loop() {
		rs := []queue.Record{proto}
		if err := s.Append(rs); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/float64(s.commits.Load()), "appends/commit")
}

func BenchmarkAppendParallel(b *testing.B) {
	s := open(b, b.TempDir(), Options{})
	proto := benchRecord()
	b.ReportAllocs()
	b.SetBytes(proto.Size())
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rs := []queue.Record{proto}
			if err := s.Append(rs); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/float64(s.commits.Load()), "appends/commit")
}

// TestPendingDue: the dispatcher's scan sees every record's key and next
// try, but only the records it takes are decoded and returned; stop ends
// the page early, and paging on from last sees the rest.
func TestPendingDue(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	recs := []queue.Record{rec("bus", "a", "1"), rec("bus", "a", "2"), rec("bus", "b", "3"), rec("bus", "c", "4"), rec("bus", "d", "5")}
	recs[1].Message.Key = recs[0].Message.Key // a second message of task a
	if err := s.Append(recs); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(time.Hour)
	if err := s.Retry("bus", recs[3].Seq, later, "boom"); err != nil {
		t.Fatal(err)
	}
	var seen []string
	taken := map[string]bool{}
	choose := func(key string, nextTry time.Time) (bool, bool) {
		seen = append(seen, fmt.Sprintf("%s@%v", key, !nextTry.IsZero()))
		if taken[string(key)] || !nextTry.IsZero() {
			return false, false
		}
		taken[string(key)] = true
		return true, string(key) == "task-b" // stop after b
	}
	got, last, looked, err := s.PendingDue("bus", 0, 10, choose)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{recs[0].Seq, recs[2].Seq}; !slices.Equal(seqsOf(got), want) || last != recs[2].Seq || looked != 3 {
		t.Fatalf("first page: seqs %v (want %v), last %d, looked %d", seqsOf(got), want, last, looked)
	}
	same(t, got[1], recs[2])
	got, last, looked, err = s.PendingDue("bus", last, 10, choose)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{recs[4].Seq}; !slices.Equal(seqsOf(got), want) || last != recs[4].Seq || looked != 2 {
		t.Fatalf("second page: seqs %v (want %v), last %d, looked %d", seqsOf(got), want, last, looked)
	}
	if want := []string{"task-a@false", "task-a@false", "task-b@false", "task-c@true", "task-d@false"}; !slices.Equal(seen, want) {
		t.Errorf("choose saw %v, want %v", seen, want)
	}
	if got, _, looked, err := s.PendingDue("nosuch", 0, 10, choose); err != nil || len(got) != 0 || looked != 0 {
		t.Errorf("unknown sink: %v, %d, %v", got, looked, err)
	}
}

// TestDoneLater: a removal is invisible to the dispatcher's reads at once,
// rides along with the next append's commit (no commit of its own), is
// committed alone when no append comes, and is not lost by Close.
func TestDoneLater(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	recs := []queue.Record{rec("bus", "a", "1"), rec("bus", "b", "2"), rec("bus", "c", "3")}
	if err := s.Append(recs); err != nil {
		t.Fatal(err)
	}
	s.DoneLater("bus", []uint64{recs[0].Seq})
	got, err := s.Pending("bus", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{recs[1].Seq, recs[2].Seq}; !slices.Equal(seqsOf(got), want) {
		t.Fatalf("Pending right after DoneLater = %v, want %v", seqsOf(got), want)
	}
	due, _, _, err := s.PendingDue("bus", 0, 10, func(string, time.Time) (bool, bool) { return true, false })
	if err != nil || !slices.Equal(seqsOf(due), seqsOf(got)) {
		t.Fatalf("PendingDue right after DoneLater = %v, %v", seqsOf(due), err)
	}

	// The next append's commit takes the removal along.
	before := s.commits.Load()
	if err := s.Append([]queue.Record{rec("bus", "d", "4")}); err != nil {
		t.Fatal(err)
	}
	if n := s.commits.Load() - before; n != 1 {
		t.Errorf("%d commits for an append plus a queued removal, want 1", n)
	}
	checkStats(t, s, 3, 0, map[string]int{"bus": 3})

	// With no append to ride along with, it is committed on its own
	// (after removeDelay; the wait allows far more, so that a slow
	// machine does not fail it).
	s.DoneLater("bus", []uint64{recs[1].Seq})
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := s.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("removal not committed after 10s: %+v", st)
		}
		time.Sleep(removeDelay / 10)
	}

	// Close commits what is still queued.
	s.DoneLater("bus", []uint64{recs[2].Seq})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{})
	got, err = s.Pending("bus", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Message.ID != "d" {
		t.Fatalf("after reopen: %v, want only d", seqsOf(got))
	}
}

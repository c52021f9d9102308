package ingress

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

func TestReplayCache(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newReplayCache(5*time.Minute, 3)
	c.add("a", t0)
	c.add("b", t0.Add(time.Minute))
	tests := []struct {
		id   string
		at   time.Duration
		want bool
	}{
		{"a", 0, true},
		{"a", 4*time.Minute + 59*time.Second, true},
		{"a", 5 * time.Minute, false}, // the window has passed
		{"b", 5 * time.Minute, true},
		{"c", time.Minute, false}, // never accepted
	}
	for _, tt := range tests {
		if got := c.contains(tt.id, t0.Add(tt.at)); got != tt.want {
			t.Errorf("contains(%s, +%v) = %v, want %v", tt.id, tt.at, got, tt.want)
		}
	}
	// Past max entries the oldest goes first.
	c.add("c", t0.Add(2*time.Minute))
	c.add("d", t0.Add(2*time.Minute))
	if c.contains("a", t0.Add(2*time.Minute)) || !c.contains("d", t0.Add(2*time.Minute)) || c.len() != 3 {
		t.Errorf("eviction: a=%v d=%v len=%d", c.contains("a", t0.Add(2*time.Minute)), c.contains("d", t0.Add(2*time.Minute)), c.len())
	}
	// Expired entries are dropped as time goes on: the cache stays small.
	for i := range 1000 {
		c.add(fmt.Sprint("x", i), t0.Add(time.Duration(i)*time.Hour))
	}
	if c.len() != 1 || c.n != 1 || len(c.ring) > 3 {
		t.Errorf("after expiry: %d entries, queue %d, ring of %d (max 3)", c.len(), c.n, len(c.ring))
	}
}

// TestReplayCacheRingWraps: a full cache evicts in insertion order while
// its ring wraps around, and never holds more than max entries.
func TestReplayCacheRingWraps(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newReplayCache(time.Hour, 5)
	for i := range 12 {
		c.add(fmt.Sprint("id", i), t0.Add(time.Duration(i)*time.Second))
	}
	for i := range 12 {
		if got, want := c.contains(fmt.Sprint("id", i), t0.Add(time.Minute)), i >= 7; got != want {
			t.Errorf("contains(id%d) = %v, want %v", i, got, want)
		}
	}
	if c.len() != 5 || c.n != 5 || len(c.ring) != 5 {
		t.Errorf("%d entries, %d queued, ring of %d; want 5, 5, 5", c.len(), c.n, len(c.ring))
	}
	// Expiry walks the wrapped ring from its oldest entry.
	c.add("late", t0.Add(time.Hour+9*time.Second+1))
	for i, want := range map[int]bool{9: false, 10: true, 11: true} {
		if got := c.contains(fmt.Sprint("id", i), t0.Add(time.Hour+9*time.Second+1)); got != want {
			t.Errorf("after expiry: contains(id%d) = %v, want %v", i, got, want)
		}
	}
	if c.len() != 3 || c.n != 3 {
		t.Errorf("after expiry: %d entries, %d queued; want 3", c.len(), c.n)
	}
}

// TestReplayCacheMatchesModel drives the cache with random ids, times and
// sizes and checks every answer against a plain map and queue: the hash
// table's deletions (which move entries back along their probe runs) must
// never lose or invent an id.
func TestReplayCacheMatchesModel(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, max := range []int{1, 2, 7, 64, 300} {
		rng := rand.New(rand.NewPCG(uint64(max), 1))
		c := newReplayCache(time.Minute, max)
		type entry struct {
			id string
			at time.Time
		}
		var queue []entry
		seen := map[string]time.Time{}
		now := t0
		for step := range 20000 {
			now = now.Add(time.Duration(rng.IntN(300)) * time.Millisecond)
			// Few distinct ids, so repeats, evictions and expiries all happen.
			id := fmt.Sprintf("%032x", rng.IntN(3*max+5))
			if rng.IntN(3) == 0 {
				id = fmt.Sprint("not-hex-", rng.IntN(3*max+5))
			}
			at, ok := seen[id]
			want := ok && now.Sub(at) < time.Minute
			if got := c.contains(id, now); got != want {
				t.Fatalf("max %d, step %d: contains(%s) = %v, want %v", max, step, id, got, want)
			}
			c.add(id, now)
			for len(queue) > 0 && now.Sub(queue[0].at) >= time.Minute {
				delete(seen, queue[0].id)
				queue = queue[1:]
			}
			if _, ok := seen[id]; !ok {
				for len(queue) >= max {
					delete(seen, queue[0].id)
					queue = queue[1:]
				}
				seen[id] = now
				queue = append(queue, entry{id, now})
			}
			if c.len() != len(queue) {
				t.Fatalf("max %d, step %d: %d entries, want %d", max, step, c.len(), len(queue))
			}
		}
	}
}

// BenchmarkReplayCache is an accepted event's cost in a full cache: one
// lookup, one insert, one eviction. bytes/id is the heap a full cache of
// the default 100,000 ids holds, per id.
func BenchmarkReplayCache(b *testing.B) {
	const size = 100000
	ids := make([]string, 1<<18)
	for i := range ids {
		ids[i] = fmt.Sprintf("%032x", uint64(i)*0x9e3779b97f4a7c15)
	}
	t0 := time.Now()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newReplayCache(time.Hour, size)
	for _, id := range ids[:size] {
		c.add(id, t0)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perID := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / size
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := ids[i&(len(ids)-1)]
		if !c.contains(id, t0) {
			c.add(id, t0)
		}
	}
	b.ReportMetric(perID, "bytes/id")
}

// add records id as accepted at now, for the window: the cache as the
// tests above model it.
func (c *replayCache) add(id string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.put(keyOf(id), now.UnixNano(), now.Add(c.window).UnixNano())
}

// contains reports whether id is remembered at now.
func (c *replayCache) contains(id string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, pos := c.find(keyOf(id))
	return pos >= 0 && now.UnixNano() < c.ring[pos].until
}

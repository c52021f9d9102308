package ingress

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// replayCache remembers the ids of recently accepted events, so that a
// delivery Browser Use retries (or anyone replays) within the window is
// answered 200 without being published again: Kafka and standard SQS
// queues, which cannot de-duplicate, do not see the sender's retries.
//
// It is bounded twice: entries expire after their retention (at least
// the window), and past max
// entries the oldest go first. Only accepted events enter it; a 503 never
// does, so the sender's retry of a failed delivery is not mistaken for a
// repeat.
//
// It is built for a sidecar's memory: two flat, pointer-free arrays that
// the garbage collector never scans, 34.5 bytes per id when full (a Go
// map plus a queue took 59, and more while the map grew); the figure is
// BenchmarkReplayCache's bytes/id.
type replayCache struct {
	window time.Duration
	max    int
	seed   maphash.Seed

	mu sync.Mutex
	// ring holds the entries in insertion order, for expiry and eviction:
	// n of them from ring[head] on, wrapping. It grows up to max and is
	// then reused.
	ring    []replayEntry
	head, n int
	// slots is a hash table over ring, with linear probing: a slot holds
	// an entry's ring position + 1, or 0 when empty. It is kept at most
	// half full, so a probe rarely goes past a slot or two.
	slots []int32
	// inflight holds the keys of events being delivered, each with the
	// channel its waiting copies wait on (nil until one waits): at most
	// one copy of an event is delivered at a time.
	inflight map[replayKey]chan struct{}
	// waits counts the times a copy began waiting for another: a test
	// releases the first copy's delivery once every other copy waits.
	waits atomic.Int64
}

// replayKey is an event id in binary: a third of the memory of the hex
// string, and no pointer for the garbage collector to follow.
type replayKey [16]byte

type replayEntry struct {
	key   replayKey
	until int64 // remembered until, Unix ns (see Handler's retention)
}

func newReplayCache(window time.Duration, max int) *replayCache {
	return &replayCache{window: window, max: max, seed: maphash.MakeSeed()}
}

// keyOf is id's key. Event ids are 32 hex digits; anything else (never
// made by Normalize) is hashed so it still has a key of its own.
func keyOf(id string) replayKey {
	var k replayKey
	if len(id) == 2*len(k) {
		if _, err := hex.Decode(k[:], []byte(id)); err == nil {
			return k
		}
	}
	sum := sha256.Sum256([]byte(id))
	copy(k[:], sum[:])
	return k
}

// claimResult is what a copy of an event may do, from claim.
type claimResult int

const (
	claimed        claimResult = iota // deliver it, then settle
	claimDuplicate                    // kept already: answer duplicate
	claimWait                         // another copy is being delivered: wait for its outcome
)

// claim decides what the copy of an event with key k, received at now
// and to be remembered until until (Unix ns), may do. A copy that must
// wait is given a channel closed once the delivering copy settles; it
// then claims again. A duplicate extends the entry to until, since that
// copy passes the freshness check till then; extended reports so.
//
// The in-flight table shares the cache's lock, so that "not kept and
// not in flight" is decided in one step: two copies can never both
// claim.
func (c *replayCache) claim(k replayKey, now, until int64) (res claimResult, wait chan struct{}, extended bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, pos := c.find(k); pos >= 0 && now < c.ring[pos].until {
		if until > c.ring[pos].until {
			c.ring[pos].until, extended = until, true
		}
		return claimDuplicate, nil, extended
	}
	if ch, busy := c.inflight[k]; busy {
		// The channel is made only once a second copy arrives, so that
		// the usual lone copy costs no allocation.
		if ch == nil {
			ch = make(chan struct{})
			c.inflight[k] = ch
		}
		c.waits.Add(1)
		return claimWait, ch, false
	}
	if c.inflight == nil {
		c.inflight = make(map[replayKey]chan struct{})
	}
	c.inflight[k] = nil
	return claimed, nil, false
}

// settle ends the claim on k: kept records it until until (Unix ns) at
// now; otherwise it is forgotten, and a waiting copy claims it next.
func (c *replayCache) settle(k replayKey, kept bool, now, until int64) {
	c.mu.Lock()
	if kept {
		c.put(k, now, until)
	}
	ch := c.inflight[k]
	delete(c.inflight, k)
	c.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// put records k as kept until until, at now. An entry that is still live
// keeps its expiry (claim extends it); an expired one is renewed.
func (c *replayCache) put(k replayKey, now, until int64) {
	c.expire(now)
	if _, pos := c.find(k); pos >= 0 {
		if now >= c.ring[pos].until {
			c.ring[pos].until = until
		}
		return
	}
	for c.n >= c.max && c.n > 0 {
		c.evictOldest()
	}
	if c.n == len(c.ring) {
		c.grow()
	}
	pos := (c.head + c.n) % len(c.ring)
	c.ring[pos] = replayEntry{k, until}
	c.n++
	i := c.home(k)
	for c.slots[i] != 0 {
		i = (i + 1) & (len(c.slots) - 1)
	}
	c.slots[i] = int32(pos + 1)
}

// home is k's first slot.
func (c *replayCache) home(k replayKey) int {
	return int(maphash.Comparable(c.seed, k)) & (len(c.slots) - 1)
}

// find returns k's slot and ring position, or -1, -1.
func (c *replayCache) find(k replayKey) (slot, pos int) {
	if len(c.slots) == 0 {
		return -1, -1
	}
	for i := c.home(k); c.slots[i] != 0; i = (i + 1) & (len(c.slots) - 1) {
		if p := int(c.slots[i]) - 1; c.ring[p].key == k {
			return i, p
		}
	}
	return -1, -1
}

// grow doubles the ring (add calls it only while it holds fewer than max
// entries), capped at max, keeping the entries in order, and rebuilds the
// table for it.
func (c *replayCache) grow() {
	size := min(max(2*len(c.ring), 64), c.max) // > len(c.ring): add evicted below max first
	ring := make([]replayEntry, size)
	for i := range c.n {
		ring[i] = c.ring[(c.head+i)%len(c.ring)]
	}
	c.ring, c.head = ring, 0
	c.slots = make([]int32, 1<<bits.Len(uint(2*size-1))) // a power of two ≥ 2×size
	for pos := range c.n {
		i := c.home(ring[pos].key)
		for c.slots[i] != 0 {
			i = (i + 1) & (len(c.slots) - 1)
		}
		c.slots[i] = int32(pos + 1)
	}
}

// expire drops expired entries from the oldest on. Expiries are not in
// insertion order (each follows its copy's signed timestamp), so an entry
// may outlive its expiry behind a longer-lived one: contains-style checks
// compare each entry's own expiry, and max still bounds the memory.
func (c *replayCache) expire(now int64) {
	for c.n > 0 && now >= c.ring[c.head].until {
		c.evictOldest()
	}
}

func (c *replayCache) evictOldest() {
	slot, _ := c.find(c.ring[c.head].key)
	c.head = (c.head + 1) % len(c.ring)
	c.n--
	c.free(slot)
}

// free empties slot and moves later entries of its probe run back, so
// that every entry stays reachable from its home slot (deletion without
// tombstones, Knuth's algorithm R).
func (c *replayCache) free(slot int) {
	mask := len(c.slots) - 1
	for {
		c.slots[slot] = 0
		j := slot
		for {
			j = (j + 1) & mask
			if c.slots[j] == 0 {
				return
			}
			h := c.home(c.ring[c.slots[j]-1].key)
			// The entry at j stays if its home lies cyclically in (slot, j].
			if (slot < j && slot < h && h <= j) || (slot > j && (h > slot || h <= j)) {
				continue
			}
			c.slots[slot] = c.slots[j]
			slot = j
			break
		}
	}
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

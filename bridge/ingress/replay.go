package ingress

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/maphash"
	"math/bits"
	"sync"
	"time"
)

// replayCache remembers the ids of recently accepted events, so that a
// delivery Browser Use retries (or anyone replays) within the window is
// answered 200 without being published again: Kafka and standard SQS
// queues, which cannot de-duplicate, do not see the sender's retries.
//
// It is bounded twice: entries expire after the window, and past max
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
}

// replayKey is an event id in binary: a third of the memory of the hex
// string, and no pointer for the garbage collector to follow.
type replayKey [16]byte

type replayEntry struct {
	key replayKey
	at  int64 // when accepted, Unix ns
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

// contains reports whether id was accepted within the window before now.
func (c *replayCache) contains(id string, now time.Time) bool {
	k := keyOf(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	_, pos := c.find(k)
	return pos >= 0 && now.UnixNano()-c.ring[pos].at < int64(c.window)
}

// add records id as accepted at now.
func (c *replayCache) add(id string, now time.Time) {
	k := keyOf(id)
	at := now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(at)
	if _, pos := c.find(k); pos >= 0 {
		return
	}
	for c.n >= c.max && c.n > 0 {
		c.evictOldest()
	}
	if c.n == len(c.ring) {
		c.grow()
	}
	pos := (c.head + c.n) % len(c.ring)
	c.ring[pos] = replayEntry{k, at}
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

func (c *replayCache) expire(now int64) {
	for c.n > 0 && now-c.ring[c.head].at >= int64(c.window) {
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

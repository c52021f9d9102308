package bridge

import (
	"crypto/sha256"
	"encoding/hex"
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
type replayCache struct {
	window time.Duration
	max    int

	mu   sync.Mutex
	seen map[replayKey]int64 // id -> when accepted, Unix ns
	// ring holds the entries in insertion order, for expiry and eviction:
	// n of them from ring[head] on, wrapping. It grows up to max and is
	// then reused, so a full cache takes max entries of memory, not the
	// up to twice that of an append-and-compact queue.
	ring    []replayEntry
	head, n int
}

// replayKey is an event id in binary: with no pointers in the map or the
// queue, the garbage collector never scans them, and an entry takes a
// third of the memory of the hex string.
type replayKey [16]byte

type replayEntry struct {
	key replayKey
	at  int64
}

func newReplayCache(window time.Duration, max int) *replayCache {
	return &replayCache{window: window, max: max, seen: make(map[replayKey]int64)}
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
	at, ok := c.seen[k]
	return ok && now.UnixNano()-at < int64(c.window)
}

// add records id as accepted at now.
func (c *replayCache) add(id string, now time.Time) {
	k := keyOf(id)
	at := now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(at)
	if _, ok := c.seen[k]; ok {
		return
	}
	for len(c.seen) >= c.max && c.n > 0 {
		c.evictOldest()
	}
	if c.n == len(c.ring) {
		c.grow()
	}
	c.seen[k] = at
	c.ring[(c.head+c.n)%len(c.ring)] = replayEntry{k, at}
	c.n++
}

// grow doubles the ring (add calls it only while it holds fewer than max
// entries), capped at max, keeping the entries in order.
func (c *replayCache) grow() {
	size := min(max(2*len(c.ring), 64), c.max)
	size = max(size, len(c.ring)+1) // always room for one more
	ring := make([]replayEntry, size)
	for i := range c.n {
		ring[i] = c.ring[(c.head+i)%len(c.ring)]
	}
	c.ring, c.head = ring, 0
}

func (c *replayCache) expire(now int64) {
	for c.n > 0 && now-c.ring[c.head].at >= int64(c.window) {
		c.evictOldest()
	}
}

func (c *replayCache) evictOldest() {
	e := c.ring[c.head]
	c.head = (c.head + 1) % len(c.ring)
	c.n--
	if c.seen[e.key] == e.at {
		delete(c.seen, e.key)
	}
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

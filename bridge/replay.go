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

	mu    sync.Mutex
	seen  map[replayKey]int64 // id -> when accepted, Unix ns
	order []replayEntry       // insertion order, for expiry and eviction
	head  int                 // order[head:] are live
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
	for len(c.seen) >= c.max && c.head < len(c.order) {
		c.evictOldest()
	}
	c.seen[k] = at
	c.order = append(c.order, replayEntry{k, at})
}

func (c *replayCache) expire(now int64) {
	for c.head < len(c.order) && now-c.order[c.head].at >= int64(c.window) {
		c.evictOldest()
	}
	// Reclaim the consumed front of the queue once it is half of it.
	if c.head > 0 && c.head*2 >= len(c.order) {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
}

func (c *replayCache) evictOldest() {
	e := c.order[c.head]
	c.head++
	if c.seen[e.key] == e.at {
		delete(c.seen, e.key)
	}
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

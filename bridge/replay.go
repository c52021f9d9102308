package bridge

import (
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
	seen  map[string]time.Time // id -> when accepted
	order []replayEntry        // insertion order, for expiry and eviction
	head  int                  // order[head:] are live
}

type replayEntry struct {
	id string
	at time.Time
}

func newReplayCache(window time.Duration, max int) *replayCache {
	return &replayCache{window: window, max: max, seen: make(map[string]time.Time)}
}

// contains reports whether id was accepted within the window before now.
func (c *replayCache) contains(id string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.seen[id]
	return ok && now.Sub(at) < c.window
}

// add records id as accepted at now.
func (c *replayCache) add(id string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if _, ok := c.seen[id]; ok {
		return
	}
	for len(c.seen) >= c.max && c.head < len(c.order) {
		c.evictOldest()
	}
	c.seen[id] = now
	c.order = append(c.order, replayEntry{id, now})
}

func (c *replayCache) expire(now time.Time) {
	for c.head < len(c.order) && now.Sub(c.order[c.head].at) >= c.window {
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
	c.order[c.head] = replayEntry{}
	c.head++
	if c.seen[e.id] == e.at {
		delete(c.seen, e.id)
	}
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

package bridge

import (
	"fmt"
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
	if c.len() != 1 || len(c.order)-c.head != 1 {
		t.Errorf("after expiry: %d entries, queue %d", c.len(), len(c.order)-c.head)
	}
}

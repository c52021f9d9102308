package sinks

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestPermanent(t *testing.T) {
	base := errors.New("message too large")
	p := Permanent(base)
	wrapped := fmt.Errorf("publish: %w", p)
	batch := &BatchError{Failed: map[int]error{1: wrapped}}
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{base, false},
		{p, true},
		{wrapped, true},
		{MessageErr(batch, 1), true},
		{MessageErr(batch, 0), false},
	}
	for _, tt := range tests {
		if got := IsPermanent(tt.err); got != tt.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if Permanent(nil) != nil || !errors.Is(p, base) || p.Error() != base.Error() {
		t.Error("Permanent changes the error it marks")
	}
}

func TestRetryLater(t *testing.T) {
	base := errors.New("503 Service Unavailable")
	later := RetryLater(fmt.Errorf("publish: %w", base), 30*time.Second)
	if got := RetryAfter(fmt.Errorf("message 2: %w", later)); got != 30*time.Second {
		t.Errorf("RetryAfter through wrapping = %v, want 30s", got)
	}
	if !errors.Is(later, base) || later.Error() != "publish: 503 Service Unavailable" {
		t.Errorf("RetryLater changed the error: %v", later)
	}
	if RetryAfter(base) != 0 || RetryLater(base, 0) != base || RetryLater(nil, time.Second) != nil {
		t.Error("no hint must mean no wait, and nil stays nil")
	}
	if IsPermanent(later) {
		t.Error("a retry hint is not permanent")
	}
}

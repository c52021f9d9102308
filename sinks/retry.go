package sinks

import (
	"errors"
	"time"
)

// RetryLater marks err, a failure worth retrying, with the earliest time
// the broker said to try again: an HTTP 429 or 503 answer's Retry-After.
// The spool waits at least that long before the next attempt, and its own
// backoff when that is longer.
func RetryLater(err error, after time.Duration) error {
	if err == nil || after <= 0 {
		return err
	}
	return &laterError{err: err, after: after}
}

// RetryAfter returns the wait RetryLater marked err, or an error it
// wraps, with; 0 if none.
func RetryAfter(err error) time.Duration {
	var l *laterError
	if errors.As(err, &l) {
		return l.after
	}
	return 0
}

type laterError struct {
	err   error
	after time.Duration
}

func (e *laterError) Error() string { return e.err.Error() }
func (e *laterError) Unwrap() error { return e.err }

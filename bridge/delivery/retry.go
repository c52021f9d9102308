package delivery

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/signature"
	"github.com/hookbridge/hookbridge/sinks"
)

// giveUpReason returns why a message that failed with e on its attempt-th
// attempt, age after its webhook was accepted, is dead-lettered now, or
// "" to retry it.
func giveUpReason(r config.Retry, e error, attempt int, age time.Duration) string {
	switch {
	case sinks.IsPermanent(e):
		return "the sink refuses it: " + e.Error()
	case r.MaxAttempts > 0 && attempt >= r.MaxAttempts:
		return fmt.Sprintf("undelivered after %d attempts: %v", attempt, e)
	case age >= r.MaxAge:
		return fmt.Sprintf("undelivered after max_age %v: %v", r.MaxAge, e)
	}
	return ""
}

// backoff is the wait after the n-th failure: min_backoff doubled n-1
// times, capped at max_backoff, less up to half of it at random so that
// retries of many messages spread out.
func backoff(r config.Retry, n int) time.Duration {
	d := r.MinBackoff
	for i := 1; i < n && d < r.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.MaxBackoff)
	return d - time.Duration(rand.Int64N(int64(d)/2+1))
}

// deadLetterCopy is m readdressed to a dead-letter target, carrying which
// sink gave up on it and why, as attributes and, since the body is the
// structured CloudEvent, in the body too, for sinks that carry no headers
// (files).
func deadLetterCopy(m sinks.Message, target, sink, reason string) sinks.Message {
	m.Target = target
	extra := []sinks.Attr{{Name: "deadlettersink", Value: sink}, {Name: "deadletterreason", Value: reason}}
	m.Attrs = append(append([]sinks.Attr(nil), m.Attrs...), extra...)
	if len(m.Body) > 1 && m.Body[0] == '{' {
		body := []byte{'{'}
		for _, a := range extra {
			body = signature.AppendQuote(body, a.Name)
			body = append(body, ':')
			body = signature.AppendQuote(body, a.Value)
			body = append(body, ',')
		}
		m.Body = append(body, m.Body[1:]...)
	}
	return m
}

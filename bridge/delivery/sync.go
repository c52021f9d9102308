// Package delivery hands routed events to their sinks: Sync publishes and
// waits for every sink's confirmation; Spool appends to a queue.Queue and
// runs one dispatcher per sink that publishes from it in the background,
// retrying with backoff and dead-lettering what its sink will not take.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/sinks"
)

// Sync publishes an event to every sink it is routed to, all sinks at
// once, and returns when all of them confirmed or one failed: the event is
// kept only once Deliver returns nil.
type Sync struct {
	sinks   map[string]sinks.Sink
	tracing *Tracing
}

// NewSync returns a Sync over the named sinks, which it does not close.
// tracing (nil: none) makes the producer spans of its publishes, children
// of the span in Deliver's context.
func NewSync(s map[string]sinks.Sink, tracing *Tracing) *Sync {
	return &Sync{sinks: s, tracing: tracing}
}

// NotConfirmed reports the sinks that did not confirm an event.
type NotConfirmed struct {
	Failed map[string]error // by sink name
}

func (e *NotConfirmed) Error() string {
	names := slices.Sorted(maps.Keys(e.Failed))
	if len(names) == 1 {
		return fmt.Sprintf("sink %q: %v", names[0], e.Failed[names[0]])
	}
	return fmt.Sprintf("%d sinks failed, first sink %q: %v", len(names), names[0], e.Failed[names[0]])
}

// Deliver publishes ev to every delivery's sink and target.
func (d *Sync) Deliver(ctx context.Context, ev *event.Event, deliveries []route.Delivery) error {
	// Group by sink, keeping route order within a sink, so each sink gets
	// one batch.
	type batch struct {
		name string
		msgs []sinks.Message
	}
	var batches []batch
	for _, dl := range deliveries {
		msg := messageOf(ev, dl)
		found := false
		for i := range batches {
			if batches[i].name == dl.Sink {
				batches[i].msgs = append(batches[i].msgs, msg)
				found = true
				break
			}
		}
		if !found {
			batches = append(batches, batch{name: dl.Sink, msgs: []sinks.Message{msg}})
		}
	}
	errs := make([]error, len(batches))
	publish := func(i int) {
		s, ok := d.sinks[batches[i].name]
		if !ok {
			errs[i] = errors.New("no such sink")
			return
		}
		if d.tracing != nil {
			errs[i] = d.tracing.publish(ctx, batches[i].name, s, batches[i].msgs, func(int) context.Context { return ctx }, nil)
			return
		}
		errs[i] = s.Publish(ctx, batches[i].msgs)
	}
	// The last batch runs on this goroutine: the common single-sink case
	// starts none.
	var wg sync.WaitGroup
	for i := range len(batches) - 1 {
		wg.Go(func() { publish(i) })
	}
	if len(batches) > 0 {
		publish(len(batches) - 1)
	}
	wg.Wait()

	var failed map[string]error
	for i, err := range errs {
		if err != nil {
			if failed == nil {
				failed = map[string]error{}
			}
			failed[batches[i].name] = err
		}
	}
	if failed != nil {
		return &NotConfirmed{Failed: failed}
	}
	return nil
}

// messageOf is what sink dl.Sink publishes of ev.
func messageOf(ev *event.Event, dl route.Delivery) sinks.Message {
	return sinks.Message{Target: dl.Target, Key: ev.TaskID, ID: ev.ID, Attrs: ev.Attrs, Body: ev.JSON}
}

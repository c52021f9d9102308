package bridge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/hookbridge/hookbridge/sinks"
)

// A Deliverer hands a routed event to its sinks. Deliver returns nil only
// when the event is kept: confirmed by every sink (SyncDeliverer) or, once
// a spool exists, durably queued.
type Deliverer interface {
	Deliver(ctx context.Context, ev *Event, deliveries []Delivery) error
}

// SyncDeliverer publishes an event to every sink it is routed to, all sinks
// at once, and returns when all of them confirmed or one failed.
type SyncDeliverer struct {
	sinks map[string]sinks.Sink
}

// NewSyncDeliverer returns a SyncDeliverer over the named sinks.
func NewSyncDeliverer(s map[string]sinks.Sink) *SyncDeliverer {
	return &SyncDeliverer{sinks: s}
}

// DeliveryError reports the sinks that did not confirm an event.
type DeliveryError struct {
	Failed map[string]error // by sink name
}

func (e *DeliveryError) Error() string {
	names := slices.Sorted(maps.Keys(e.Failed))
	if len(names) == 1 {
		return fmt.Sprintf("sink %q: %v", names[0], e.Failed[names[0]])
	}
	return fmt.Sprintf("%d sinks failed, first sink %q: %v", len(names), names[0], e.Failed[names[0]])
}

// Deliver implements Deliverer.
func (d *SyncDeliverer) Deliver(ctx context.Context, ev *Event, deliveries []Delivery) error {
	// Group by sink, keeping route order within a sink, so each sink gets
	// one batch.
	type batch struct {
		name string
		msgs []sinks.Message
	}
	var batches []batch
	for _, dl := range deliveries {
		msg := sinks.Message{Target: dl.Target, Key: ev.TaskID, ID: ev.ID, Attrs: ev.Attrs, Body: ev.JSON}
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
		return &DeliveryError{Failed: failed}
	}
	return nil
}

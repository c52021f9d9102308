package route_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/route"
)

// routeStatuses are the statuses the 50-route config names, then one it
// does not (taken by the "*" routes only).
var routeStatuses = []string{"created", "started", "running", "paused", "resumed", "stopped", "finished", "failed", "timed_out", "unnamed_status"}

// routes50YAML is a config with 50 routes over NATS, Kafka and file sinks:
// exact statuses (one or two per route), every seventh route "*", static
// targets and {status}, {task_id} and {source} templates, some sync.
func routes50YAML() string {
	var b strings.Builder
	b.WriteString(`sources:
  - name: browser-use
    secrets: ["whsec_test_secret"]
sinks:
  - name: bus
    type: nats
    url: nats://127.0.0.1:4222
    jetstream: true
  - name: events
    type: kafka
    brokers: [kafka-1:9092]
  - name: audit
    type: file
    path: ./events.jsonl
routes:
`)
	named := routeStatuses[:len(routeStatuses)-1]
	for i := range 50 {
		fmt.Fprintf(&b, "  - name: route-%02d\n", i)
		if i%11 == 5 {
			b.WriteString("    delivery: sync\n")
		}
		switch {
		case i%7 == 0:
			b.WriteString("    status: [\"*\"]\n")
		case i%3 == 0:
			fmt.Fprintf(&b, "    status: [%s, %s]\n", named[i%len(named)], named[(i*5+1)%len(named)])
		default:
			fmt.Fprintf(&b, "    status: [%s]\n", named[i%len(named)])
		}
		b.WriteString("    to:\n")
		switch i % 5 {
		case 0:
			b.WriteString("      - {sink: bus, subject: \"task.{status}\"}\n")
		case 1:
			b.WriteString("      - {sink: bus, subject: \"by-task.{task_id}.{status}\"}\n")
		case 2:
			b.WriteString("      - {sink: events, topic: task-events}\n")
		case 3:
			fmt.Fprintf(&b, "      - {sink: bus, subject: \"route%02d.{source}.{status}\"}\n", i)
		case 4:
			b.WriteString("      - {sink: audit}\n")
			b.WriteString("      - {sink: events, topic: \"events-{status}\"}\n")
		}
	}
	return b.String()
}

// newRouter50 builds the Router of routes50YAML through the config loader.
func newRouter50(b *testing.B) *route.Router {
	b.Helper()
	cfg, err := config.Parse("routes50.yaml", []byte(routes50YAML()), nil)
	if err != nil {
		b.Fatal(err)
	}
	if len(cfg.Routes) != 50 {
		b.Fatalf("%d routes, want 50", len(cfg.Routes))
	}
	return route.New(cfg.Rules())
}

// routeEvents returns one event per status of routeStatuses.
func routeEvents() []*event.Event {
	evs := make([]*event.Event, len(routeStatuses))
	for i, st := range routeStatuses {
		evs[i] = &event.Event{Source: "browser-use", Type: event.StatusUpdateType, Status: st, TaskID: "5b73fb3f-a3cb-4912-be40-17ce9e9e1a45"}
	}
	return evs
}

// BenchmarkRoute50 routes events of every status (and one no route names)
// through a 50-route Router, in turn. deliveries/event is the fan-out after
// de-duplication, averaged over the statuses.
func BenchmarkRoute50(b *testing.B) {
	r := newRouter50(b)
	evs := routeEvents()
	total := 0
	for _, ev := range evs {
		d, _ := r.Route(ev)
		if len(d) == 0 {
			b.Fatalf("status %q: no delivery, but there are * routes", ev.Status)
		}
		total += len(d)
	}
	perEvent := float64(total) / float64(len(evs))

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			d, routes := r.Route(evs[i%len(evs)])
			i++
			if len(d) == 0 || len(routes) == 0 {
				b.Fatal("no delivery")
			}
		}
		b.ReportMetric(perEvent, "deliveries/event")
	})
	// The Router is immutable and takes no lock; this shows whether
	// anything in Route still serializes concurrent webhooks.
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var start atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(start.Add(1))
			for pb.Next() {
				d, routes := r.Route(evs[i%len(evs)])
				i++
				if len(d) == 0 || len(routes) == 0 {
					b.Error("no delivery")
					return
				}
			}
		})
		b.ReportMetric(perEvent, "deliveries/event")
	})
}

package route_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/bridge/signature"
)

// routeStatuses are the statuses the 50-route config names, then one it
// does not (taken by the "*" routes only).
var routeStatuses = []string{"created", "started", "running", "paused", "resumed", "stopped", "finished", "failed", "timed_out", "unnamed_status"}

// routes50YAML is a config with 50 routes over NATS, Kafka and file sinks:
// exact statuses (one or two per route), every seventh route "*", static
// targets and {status}, {task_id} and {source} templates, some sync. With
// content, 10 of the routes also have a when condition and 5 others a
// {data...} template.
func routes50YAML(content bool) string {
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
		if content && i%5 == 2 {
			fmt.Fprintf(&b, "    when: '%s'\n", conditions[(i/5)%len(conditions)])
		}
		b.WriteString("    to:\n")
		if content && i%10 == 3 {
			fmt.Fprintf(&b, "      - {sink: bus, subject: \"route%02d.{data.metadata.team}.{status}\"}\n", i)
			continue
		}
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

// conditions are the when conditions of routes50YAML: the recipes of
// docs/configuration.md, as users write them.
var conditions = []string{
	`data.?metadata.?tier.orValue("") == "vip"`,
	`data.?metadata.?team.orValue("") in ["ops", "infra"]`,
	`data.?metadata.?env.orValue("") != "staging"`,
	`data.?metadata.?urgent.orValue("") == "true"`,
	`time.getHours("Europe/Paris") >= 9 && time.getHours("Europe/Paris") < 18`,
}

// newRouter50 builds the Router of routes50YAML through the config loader.
func newRouter50(b *testing.B, content bool) *route.Router {
	b.Helper()
	cfg, err := config.Parse("routes50.yaml", []byte(routes50YAML(content)), nil)
	if err != nil {
		b.Fatal(err)
	}
	if len(cfg.Routes) != 50 {
		b.Fatalf("%d routes, want 50", len(cfg.Routes))
	}
	return route.New(cfg.Rules())
}

// routeEvents returns one event per status of routeStatuses, each
// normalized from the body Browser Use sends, with metadata.
func routeEvents(b *testing.B) []*event.Event {
	evs := make([]*event.Event, len(routeStatuses))
	teams := []string{"ops", "infra", "growth"}
	for i, st := range routeStatuses {
		body := event.Sample{Status: st, TaskID: "5b73fb3f-a3cb-4912-be40-17ce9e9e1a45", SessionID: "0c1f6d52-2f7e-4d4b-9bd4-7b0f5a1c3e11",
			Time:     time.Date(2026, 12, 4, 8+i, 30, 0, 0, time.UTC),
			Metadata: map[string]string{"tier": []string{"vip", "free"}[i%2], "team": teams[i%3], "env": []string{"prod", "staging"}[i%2], "customer": "acme"}}.Body()
		var cz signature.Canonicalizer
		c, err := cz.Canonicalize(body)
		if err != nil {
			b.Fatal(err)
		}
		if evs[i], err = event.Normalize("browser-use", "1796376600", time.Now(), c, event.Trace{}); err != nil {
			b.Fatal(err)
		}
	}
	return evs
}

// BenchmarkRoute50 routes events of every status (and one no route names)
// through a 50-route Router, in turn. deliveries/event is the fan-out after
// de-duplication, averaged over the statuses.
func BenchmarkRoute50(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchmarkRoute50(b, false) })
	// 10 of the 50 routes have a when, 5 a {data...} template.
	b.Run("content", func(b *testing.B) { benchmarkRoute50(b, true) })
}

func benchmarkRoute50(b *testing.B, content bool) {
	r := newRouter50(b, content)
	evs := routeEvents(b)
	total := 0
	for _, ev := range evs {
		d := r.Route(ev).Deliveries
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
			got := r.Route(evs[i%len(evs)])
			i++
			if len(got.Deliveries) == 0 || len(got.Routes) == 0 {
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
				got := r.Route(evs[i%len(evs)])
				i++
				if len(got.Deliveries) == 0 || len(got.Routes) == 0 {
					b.Error("no delivery")
					return
				}
			}
		})
		b.ReportMetric(perEvent, "deliveries/event")
	})
}

package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// hookReceiver is an HTTP endpoint that checks every request with the
// Standard Webhooks library (401 when it does not verify) and counts
// the webhook-id of those it accepted.
type hookReceiver struct {
	wh *standardwebhooks.Webhook

	mu       sync.Mutex
	ids      map[string]int
	unsigned []string
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := h.wh.Verify(body, r.Header); err != nil {
		h.mu.Lock()
		h.unsigned = append(h.unsigned, err.Error())
		h.mu.Unlock()
		http.Error(w, "signature: "+err.Error(), http.StatusUnauthorized)
		return
	}
	h.mu.Lock()
	h.ids[r.Header.Get("webhook-id")]++
	h.mu.Unlock()
}

// seen returns a copy of the ids received so far.
func (h *hookReceiver) seen() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.ids)
}

// drainRabbitMQ gets every message queue holds, acknowledging them, on a
// connection of its own that it closes, and counts their message ids
// into into.
func drainRabbitMQ(t *testing.T, url, queue string, into map[string]int) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return
		}
		into[d.MessageId]++
	}
}

// TestFourSinksSurviveBrokerRestarts routes every webhook to an http, a
// rabbitmq, a redis and a pubsub sink through the local spool, stops
// Redis and RabbitMQ halfway, keeps sending (the spool answers 200 and
// keeps the events), restarts both, and checks that every acknowledged
// event reaches all four, and nothing else does. Delivery is
// at-least-once, so duplicates are allowed and logged, never a loss.
//
// Not parallel: the pubsub sink reaches pstest only through
// PUBSUB_EMULATOR_HOST (its endpoint key always means TLS with
// credentials), a process-wide variable.
func TestFourSinksSurviveBrokerRestarts(t *testing.T) {
	const n = 40 // webhooks; the brokers stop after n/2

	redisURL, _, redisSrv := sinktest.Redis(t)
	rmq := sinktest.RabbitMQ(t)
	ch := sinktest.RabbitMQChannel(t, rmq.URL())
	if err := ch.ExchangeDeclare("tasks", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	const queue = "hookbridge-e2e-tasks"
	sinktest.RabbitMQQueue(t, rmq.URL(), "tasks", queue, "task.#")
	ps := sinktest.PubSub(t)
	subscription := ps.Topic("tasks")
	t.Setenv("PUBSUB_EMULATOR_HOST", ps.Addr)

	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	hookSecret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	wh, err := standardwebhooks.NewWebhook(hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	hooks := &hookReceiver{wh: wh, ids: map[string]int{}}
	hookSrv := httptest.NewServer(hooks)
	t.Cleanup(hookSrv.Close)

	const retry = "    retry: {min_backoff: 50ms, max_backoff: 500ms}\n"
	cfg := fmt.Sprintf(`
server:
  listen: %q
  admin_listen: "127.0.0.1:0"
delivery: spool
spool:
  dir: %q
sources:
  - name: browser-use
    secrets: [%q]
sinks:
  - name: hooks
    type: http
    url: %q
    secret: %q
`+retry+`  - name: rabbit
    type: rabbitmq
    url: %q
    exchange: tasks
`+retry+`  - name: cache
    type: redis
    url: %q
`+retry+`  - name: gcp
    type: pubsub
    project: %q
`+retry+`routes:
  - name: all
    status: ["*"]
    to:
      - {sink: hooks}
      - {sink: rabbit, routing_key: "task.{status}"}
      - {sink: cache, stream: "tasks"}
      - {sink: gcp, topic: "tasks"}
`, sinktest.FreeAddr(t), filepath.Join(t.TempDir(), "spool"), routingSecret,
		hookSrv.URL, hookSecret, rmq.URL(), redisURL, sinktest.PubSubProject)
	s := startServe(t, writeConfig(t, cfg))
	rcl := sinktest.RedisClient(t, redisURL)

	// What each sink holds, counted by event id. Rabbit and Pub/Sub are
	// drained as they are read; Redis is read whole each time (XRANGE),
	// plus what it held before it was killed (it persists nothing).
	rabbitSeen, pubsubSeen := map[string]int{}, map[string]int{}
	redisBefore := map[string]int{}
	redisNow := func() map[string]int {
		out := maps.Clone(redisBefore)
		for _, m := range sinktest.RedisStream(t, rcl, "tasks") {
			ev, _ := m.Values["event"].(string)
			out[sinktest.ReadCloudEvent(t, []byte(ev)).ID]++
		}
		return out
	}
	poll := func() (redis, hooksGot map[string]int) {
		drainRabbitMQ(t, rmq.URL(), queue, rabbitSeen)
		for _, m := range ps.Pull(subscription) {
			pubsubSeen[sinktest.ReadCloudEvent(t, m.Data).ID]++
		}
		return redisNow(), hooks.seen()
	}
	missing := func(ids []string, in map[string]int) (out []string) {
		for _, id := range ids {
			if in[id] == 0 {
				out = append(out, id)
			}
		}
		return out
	}
	// waitAll polls, without a timed assertion, until every id of ids is
	// in all four sinks; it gives up after a generous deadline.
	waitAll := func(what string, ids []string) (redis, hooksGot map[string]int) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for {
			redis, hooksGot = poll()
			mr, mq, mp, mh := missing(ids, redis), missing(ids, rabbitSeen), missing(ids, pubsubSeen), missing(ids, hooksGot)
			if len(mr)+len(mq)+len(mp)+len(mh) == 0 {
				return redis, hooksGot
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still missing after 3m: redis %v, rabbitmq %v, pubsub %v, http %v\nlogs:\n%s",
					what, mr, mq, mp, mh, s.logs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	statuses := []string{"started", "paused", "resumed", "finished", "stopped"}
	var acked []string
	send := func(from, to int) {
		for i := from; i < to; i++ {
			a := s.post(t, envelope(fmt.Sprintf("t-%d", i%7), statuses[i%len(statuses)], i, nil))
			if *a.Routes != 1 {
				t.Fatalf("webhook %d: routes %d, want 1", i, *a.Routes)
			}
			acked = append(acked, a.ID)
		}
	}

	send(0, n/2)
	// Redis keeps nothing across a kill: the first half must be in it, and
	// counted, before it goes down, or what it confirmed would be lost by
	// the test's own doing.
	redisBefore, _ = waitAll("first half", acked)
	redisSrv.Stop()
	rmq.Stop()
	send(n/2, n)
	if err := rmq.Start(); err != nil {
		t.Fatal(err)
	}
	redisSrv.Start()
	redis, hooksGot := waitAll("all", acked)

	// The restarts were felt: both sinks failed publishes and retried
	// them from the spool, else the test proved nothing.
	retried := map[string]bool{}
	for _, l := range s.linesWith(t, "publish failed; retrying from the spool") {
		sink, _ := l["sink"].(string)
		retried[sink] = true
	}
	if !retried["rabbit"] || !retried["cache"] {
		t.Errorf("no retried publish logged for rabbit (%v) or cache (%v): the brokers' stops went unnoticed", retried["rabbit"], retried["cache"])
	}

	hooks.mu.Lock()
	unsigned := slices.Clone(hooks.unsigned)
	hooks.mu.Unlock()
	if len(unsigned) > 0 {
		t.Errorf("the receiver refused %d requests whose signature did not verify: %v", len(unsigned), unsigned)
	}
	ackedSet := map[string]bool{}
	for _, id := range acked {
		if ackedSet[id] {
			t.Fatalf("two webhooks were acknowledged with id %s", id)
		}
		ackedSet[id] = true
	}
	for _, sink := range []struct {
		name string
		got  map[string]int
	}{{"redis", redis}, {"rabbitmq", rabbitSeen}, {"pubsub", pubsubSeen}, {"http", hooksGot}} {
		dups := 0
		for _, id := range slices.Sorted(maps.Keys(sink.got)) {
			if !ackedSet[id] {
				t.Errorf("%s holds %d messages of event %q, which was never acknowledged", sink.name, sink.got[id], id)
			}
			dups += sink.got[id] - 1
		}
		t.Logf("%s: %d events, %d duplicates", sink.name, len(sink.got), dups)
	}
}

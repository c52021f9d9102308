package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/sinks"
)

// jsSpoolConfig is busConfig with the jetstream spool on natsURL (4
// partitions, ack_wait 3s) and the replay bucket; extra is added under
// spool:.
func jsSpoolConfig(t *testing.T, natsURL, extra string) *Config {
	t.Helper()
	cfg := busConfig(t, natsURL, fmt.Sprintf("  backend: jetstream\n  url: %q\n  partitions: 4\n  ack_wait: 3s\n%s", natsURL, extra), "")
	cfg.Server.ReplayCache = ReplayNATS
	return cfg
}

// waitFor polls cond every 20 ms until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// streamCount is how many messages stream name holds, -1 if unknown.
func streamCount(js jetstream.JetStream, name string) int {
	st, err := js.Stream(context.Background(), name)
	if err != nil {
		return -1
	}
	info, err := st.Info(context.Background())
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// TestJetStreamSpoolDelivers: webhooks answered 200 are in the shared
// stream, reach the sink once and in order per task, and leave the stream
// once delivered.
func TestJetStreamSpoolDelivers(t *testing.T) {
	srv := natsOnPort(t, -1, t.TempDir())
	svc := startConfig(t, jsSpoolConfig(t, srv.ClientURL(), ""))
	url := "http://" + svc.Addr().String() + "/webhook"
	acked := map[string]bool{}
	postEvents(t, url, 0, 40, 5, acked)
	js := natsJS(t, srv.ClientURL())
	waitFor(t, "every event in the sink's stream", func() bool { return streamCount(js, "HOOKBRIDGE") == len(acked) })
	checkDelivered(t, streamEvents(t, js), acked)
	waitFor(t, "the spool stream to empty", func() bool { return streamCount(js, "HOOKBRIDGE_SPOOL") == 0 })

	// A repeat is recognized from the replay bucket, and is not queued.
	code, _ := postEvent(t, http.DefaultClient, url, "task-0", 0)
	if code != http.StatusOK || svc.Ingress().Count(ResultDuplicate) != 1 {
		t.Errorf("repeat answered %d, %d duplicates counted; want 200 and 1", code, svc.Ingress().Count(ResultDuplicate))
	}
}

// confirmedIDs lists the ids f confirmed, in order.
func confirmedIDs(f *faultySink) []string {
	var ids []string
	for _, m := range f.snapshot() {
		ids = append(ids, m.ID)
	}
	return ids
}

// startFaultSpooler runs a JetStreamSpooler for cfg over sinks and returns
// it with a function that spools one event.
func startFaultSpooler(t *testing.T, cfg *Config, open map[string]sinks.Sink) (*JetStreamSpooler, *JetStreamSpool, func(task, id string)) {
	t.Helper()
	ctx := context.Background()
	js, err := OpenJetStreamSpool(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { js.Close() })
	sp := NewJetStreamSpooler(cfg, js, open, slog.New(slog.DiscardHandler))
	sp.Start(ctx)
	t.Cleanup(sp.Stop)
	spoolOne := func(task, id string) {
		t.Helper()
		ev := &Event{ID: id, TaskID: task, JSON: []byte(`{"id":"` + id + `"}`)}
		var ds []Delivery
		for _, sc := range cfg.Sinks {
			if sc.Name != "dead" {
				ds = append(ds, Delivery{Sink: sc.Name, Target: "t." + sc.Name})
			}
		}
		if err := sp.Deliver(ctx, ev, ds); err != nil {
			t.Fatal(err)
		}
	}
	return sp, js, spoolOne
}

// TestJetStreamSpoolKeepsTaskOrderAcrossRetries: a message that fails is
// retried with backoff, and its task's later messages wait behind it;
// another task's messages go on meanwhile.
func TestJetStreamSpoolKeepsTaskOrderAcrossRetries(t *testing.T) {
	srv := natsOnPort(t, -1, t.TempDir())
	cfg := jsSpoolConfig(t, srv.ClientURL(), "")
	sink := &faultySink{fail: func(m sinks.Message, attempt int) error {
		if m.ID == "a-0" && attempt < 3 {
			return errors.New("broker away")
		}
		return nil
	}}
	sp, _, spoolOne := startFaultSpooler(t, cfg, map[string]sinks.Sink{"bus": sink})
	for n := range 5 {
		spoolOne("task-a", fmt.Sprintf("a-%d", n))
	}
	// task-b is on another partition than task-a with 4 partitions.
	if sp.js.partition("task-a", "") == sp.js.partition("task-b", "") {
		t.Fatal("pick task names on different partitions")
	}
	spoolOne("task-b", "b-0")
	waitFor(t, "every message confirmed", func() bool { return len(confirmedIDs(sink)) == 6 })
	var a []string
	for _, id := range confirmedIDs(sink) {
		if strings.HasPrefix(id, "a-") {
			a = append(a, id)
		}
	}
	if want := []string{"a-0", "a-1", "a-2", "a-3", "a-4"}; !slices.Equal(a, want) {
		t.Errorf("task-a confirmed in order %v, want %v", a, want)
	}
	if got := confirmedIDs(sink); got[0] != "b-0" {
		t.Errorf("task-b waited behind task-a's retries: confirmed %v", got)
	}
	if sp.Retries() != 2 {
		t.Errorf("Retries() = %d, want 2", sp.Retries())
	}
}

// TestJetStreamSpoolDeadLetters: a message its sink refuses goes to the
// dead-letter target through the stream; without one, it waits on the
// sink's dead subject, counted by Stats.
func TestJetStreamSpoolDeadLetters(t *testing.T) {
	srv := natsOnPort(t, -1, t.TempDir())
	cfg := jsSpoolConfig(t, srv.ClientURL(), "")
	refuse := func(m sinks.Message, _ int) error {
		if strings.HasPrefix(m.ID, "bad") {
			return sinks.Permanent(errors.New("message too large"))
		}
		return nil
	}
	main, other, dead := &faultySink{fail: refuse}, &faultySink{fail: refuse}, &faultySink{fail: func(sinks.Message, int) error { return nil }}
	cfg.Sinks = []SinkConfig{
		{Name: "bus", Retry: cfg.Sinks[0].Retry, DeadLetter: &TargetConfig{Sink: "dead", Target: "dlq"}},
		{Name: "other", Retry: cfg.Sinks[0].Retry},
		{Name: "dead", Retry: cfg.Sinks[0].Retry},
	}
	sp, js, spoolOne := startFaultSpooler(t, cfg, map[string]sinks.Sink{"bus": main, "other": other, "dead": dead})
	spoolOne("t", "bad-1")
	spoolOne("t", "good-1")
	waitFor(t, "the dead letter forwarded", func() bool { return len(confirmedIDs(dead)) == 1 })
	waitFor(t, "the good message on both sinks", func() bool { return len(confirmedIDs(main)) == 1 && len(confirmedIDs(other)) == 1 })
	if confirmedIDs(dead)[0] != "bad-1" {
		t.Errorf("dead-letter target got %v", confirmedIDs(dead))
	}
	// Both are kept as dead letters too, as in the local spool.
	waitFor(t, "a dead letter kept for each sink", func() bool {
		st, err := js.readStats(context.Background())
		return err == nil && st.Dead == 2 && st.Pending == 0
	})
	// A dead letter, kept for days, is not the oldest waiting message.
	if st, _ := js.readStats(context.Background()); !st.Oldest.IsZero() {
		t.Errorf("Oldest = %v with nothing waiting, want zero", st.Oldest)
	}
	if sp.DeadLetters() != 2 {
		t.Errorf("DeadLetters() = %d, want 2", sp.DeadLetters())
	}
}

// TestJetStreamSpoolFull: once the stream holds max_events messages,
// webhooks are answered 503 spool full, and nothing is dropped.
func TestJetStreamSpoolFull(t *testing.T) {
	srv := natsOnPort(t, -1, t.TempDir())
	cfg := jsSpoolConfig(t, srv.ClientURL(), "  max_events: 3")
	sink := &faultySink{fail: func(sinks.Message, int) error { return errors.New("down") }}
	sp, _, _ := startFaultSpooler(t, cfg, map[string]sinks.Sink{"bus": sink})
	ctx := context.Background()
	var err error
	for n := range 4 {
		err = sp.Deliver(ctx, &Event{ID: fmt.Sprint(n), TaskID: fmt.Sprint(n), JSON: []byte(`{}`)}, []Delivery{{Sink: "bus", Target: "x"}})
		if n < 3 && err != nil {
			t.Fatalf("event %d: %v", n, err)
		}
	}
	if !IsFull(err) {
		t.Errorf("the 4th event: %v, want a spool-full error", err)
	}
	st, err := sp.js.readStats(ctx)
	if err != nil || st.Pending != 3 || st.BySink["bus"] != 3 || st.Oldest.IsZero() || time.Since(st.Oldest) > time.Minute {
		t.Errorf("stats = %+v, %v; want 3 waiting for bus, the oldest from just now", st, err)
	}
}

// TestSharedReplayCache: with server.replay_cache: nats, a sender's retry
// that lands on another replica is recognized there too.
func TestSharedReplayCache(t *testing.T) {
	srv := natsOnPort(t, -1, t.TempDir())
	a := startConfig(t, jsSpoolConfig(t, srv.ClientURL(), ""))
	b := startConfig(t, jsSpoolConfig(t, srv.ClientURL(), ""))
	code, id := postEvent(t, http.DefaultClient, "http://"+a.Addr().String()+"/webhook", "task-r", 1)
	if code != http.StatusOK {
		t.Fatalf("first delivery answered %d", code)
	}
	// The record goes out without being waited for; Browser Use's retry
	// comes seconds later.
	waitFor(t, "the id in the replay bucket", func() bool {
		_, err := a.jsSpool.replay.kv.Get(context.Background(), id)
		return err == nil
	})
	if code, _ := postEvent(t, http.DefaultClient, "http://"+b.Addr().String()+"/webhook", "task-r", 1); code != http.StatusOK {
		t.Fatalf("the retry answered %d", code)
	}
	if n := b.Ingress().Count(ResultDuplicate); n != 1 {
		t.Errorf("the other replica counted %d duplicates, want 1", n)
	}
	js := natsJS(t, srv.ClientURL())
	waitFor(t, "the event in the sink", func() bool { return streamCount(js, "HOOKBRIDGE") == 1 })
}

// TestJetStreamSpoolRefusesPartitionChange: messages laid out in one
// partition count keep it until they are delivered.
func TestJetStreamSpoolPartitionChangeNeedsAnEmptyStream(t *testing.T) {
	srv := natsOnPort(t, -1, t.TempDir())
	cfg := jsSpoolConfig(t, srv.ClientURL(), "")
	js, err := OpenJetStreamSpool(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer js.Close()
	if err := js.append(context.Background(), []jsRecord{{subject: js.subject("bus", 0), msgID: "x"}}); err != nil {
		t.Fatal(err)
	}
	cfg.Spool.Partitions = 8
	_, err = OpenJetStreamSpool(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "spool.partitions") || !strings.Contains(err.Error(), "partitions: 4") {
		t.Errorf("err = %v, want a spool.partitions error naming 4", err)
	}
	// Once nothing waits, the count may change.
	if err := js.stream.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	js8, err := OpenJetStreamSpool(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("with the stream empty: %v", err)
	}
	defer js8.Close()
	if got := js8.stream.CachedInfo().Config.Metadata[partitionsKey]; got != "8" {
		t.Errorf("the stream records %q partitions, want 8", got)
	}

	// Down to 2: the consumers of lanes 2 to 7 go with them.
	sp := NewJetStreamSpooler(cfg, js8, map[string]sinks.Sink{"bus": &faultySink{}}, slog.New(slog.DiscardHandler))
	sp.Start(context.Background())
	consumers := func() []string {
		var names []string
		for name := range js8.stream.ConsumerNames(context.Background()).Name() {
			names = append(names, name)
		}
		slices.Sort(names)
		return names
	}
	waitFor(t, "8 consumers", func() bool { return len(consumers()) == 8 })
	sp.Stop()
	cfg.Spool.Partitions = 2
	js2, err := OpenJetStreamSpool(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer js2.Close()
	if got, want := consumers(), []string{"hookbridge_bus_0", "hookbridge_bus_1"}; !slices.Equal(got, want) {
		t.Errorf("consumers %v, want %v", got, want)
	}
}

// TestJetStreamSpoolReload: a reload stops one generation's dispatchers
// and starts the next on the same consumers; nothing accepted on either
// side of it is lost.
func TestJetStreamSpoolReload(t *testing.T) {
	srv := natsOnPort(t, -1, t.TempDir())
	svc := startConfig(t, jsSpoolConfig(t, srv.ClientURL(), ""))
	url := "http://" + svc.Addr().String() + "/webhook"
	acked := map[string]bool{}
	postEvents(t, url, 0, 30, 3, acked)
	cfg := jsSpoolConfig(t, srv.ClientURL(), "")
	cfg.Sinks[0].Retry.MaxBackoff = time.Second // a change, so the dispatchers are new
	if err := svc.Reload(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	postEvents(t, url, 30, 60, 3, acked)
	js := natsJS(t, srv.ClientURL())
	waitFor(t, "every event in the sink's stream", func() bool { return streamCount(js, "HOOKBRIDGE") == len(acked) })
	checkDelivered(t, streamEvents(t, js), acked)

	// With no route spooling any more, what the stream still holds is
	// delivered all the same.
	sync := jsSpoolConfig(t, srv.ClientURL(), "")
	sync.Routes[0].Delivery = DeliverySync
	if err := svc.Reload(context.Background(), sync); err != nil {
		t.Fatal(err)
	}
	if svc.Spooler() == nil {
		t.Error("no dispatchers after a reload to sync delivery: the stream's messages would wait")
	}
}

// TestJetStreamSpoolStopsWithNATSDown: a replica cut off from NATS still
// stops cleanly; what it held goes to another replica after ack_wait.
func TestJetStreamSpoolStopsWithNATSDown(t *testing.T) {
	srv := natsOnPort(t, -1, t.TempDir())
	cfg := jsSpoolConfig(t, srv.ClientURL(), "")
	svc, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	waitFor(t, "the spool and the sink to notice", func() bool {
		return svc.Ready() != nil && sinkReady(svc.Sinks()["bus"]) != nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := svc.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

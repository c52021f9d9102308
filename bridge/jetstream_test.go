package bridge

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/ingress"
	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// jsSpoolConfig is busConfig with the jetstream spool on natsURL (4
// partitions, ack_wait 3s) and the replay bucket; extra is added under
// spool:.
func jsSpoolConfig(t *testing.T, natsURL, extra string) *config.Config {
	t.Helper()
	cfg := busConfig(t, natsURL, fmt.Sprintf("  backend: jetstream\n  url: %q\n  partitions: 4\n  ack_wait: 3s\n%s", natsURL, extra), "")
	cfg.Server.ReplayCache = config.ReplayNATS
	return cfg
}

// TestJetStreamSpoolDelivers: webhooks answered 200 are in the shared
// stream, reach the sink once and in order per task, and leave the stream
// once delivered.
func TestJetStreamSpoolDelivers(t *testing.T) {
	srv := sinktest.NATS(t)
	svc := startConfig(t, jsSpoolConfig(t, srv.ClientURL(), ""))
	url := "http://" + svc.Addr().String() + "/webhook"
	acked := map[string]bool{}
	postEvents(t, url, 0, 40, 5, acked)
	_, js := sinktest.JetStream(t, srv.ClientURL())
	sinktest.WaitFor(t, "every event in the sink's stream", func() bool { return sinktest.StreamCount(js, "HOOKBRIDGE") == len(acked) })
	checkDelivered(t, streamEvents(t, js), acked)
	sinktest.WaitFor(t, "the spool stream to empty", func() bool { return sinktest.StreamCount(js, "HOOKBRIDGE_SPOOL") == 0 })

	// A repeat is recognized from the replay bucket, and is not queued.
	code, _ := postEvent(t, http.DefaultClient, url, "task-0", 0)
	if code != http.StatusOK || svc.Ingress().Count(ingress.ResultDuplicate) != 1 {
		t.Errorf("repeat answered %d, %d duplicates counted; want 200 and 1", code, svc.Ingress().Count(ingress.ResultDuplicate))
	}
}

// TestSharedReplayCache: with server.replay_cache: nats, a sender's retry
// that lands on another replica is recognized there too.
func TestSharedReplayCache(t *testing.T) {
	srv := sinktest.NATS(t)
	a := startConfig(t, jsSpoolConfig(t, srv.ClientURL(), ""))
	b := startConfig(t, jsSpoolConfig(t, srv.ClientURL(), ""))
	code, id := postEvent(t, http.DefaultClient, "http://"+a.Addr().String()+"/webhook", "task-r", 1)
	if code != http.StatusOK {
		t.Fatalf("first delivery answered %d", code)
	}
	// The record goes out without being waited for; Browser Use's retry
	// comes seconds later.
	sinktest.WaitFor(t, "the id in the replay bucket", func() bool {
		_, found, err := a.spool.replay.Lookup(context.Background(), id)
		return err == nil && found
	})
	if code, _ := postEvent(t, http.DefaultClient, "http://"+b.Addr().String()+"/webhook", "task-r", 1); code != http.StatusOK {
		t.Fatalf("the retry answered %d", code)
	}
	if n := b.Ingress().Count(ingress.ResultDuplicate); n != 1 {
		t.Errorf("the other replica counted %d duplicates, want 1", n)
	}
	_, js := sinktest.JetStream(t, srv.ClientURL())
	sinktest.WaitFor(t, "the event in the sink", func() bool { return sinktest.StreamCount(js, "HOOKBRIDGE") == 1 })
}

// TestJetStreamSpoolReload: a reload stops one generation's dispatchers
// and starts the next on the same consumers; nothing accepted on either
// side of it is lost.
func TestJetStreamSpoolReload(t *testing.T) {
	srv := sinktest.NATS(t)
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
	_, js := sinktest.JetStream(t, srv.ClientURL())
	sinktest.WaitFor(t, "every event in the sink's stream", func() bool { return sinktest.StreamCount(js, "HOOKBRIDGE") == len(acked) })
	checkDelivered(t, streamEvents(t, js), acked)

	// With no route spooling any more, what the stream still holds is
	// delivered all the same.
	sync := jsSpoolConfig(t, srv.ClientURL(), "")
	sync.Routes[0].Delivery = config.DeliverySync
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
	srv := sinktest.NATS(t)
	cfg := jsSpoolConfig(t, srv.ClientURL(), "")
	svc, err := Start(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	sinktest.WaitFor(t, "the spool and the sink to notice", func() bool {
		return svc.Ready() != nil && svc.Sinks()["bus"].(sinks.Readier).Ready() != nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := svc.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

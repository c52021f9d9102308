package bridge

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// TestSpoolRidesOutBrokerOutage stops NATS in the middle of steady traffic
// and starts it again: every webhook is answered 200 throughout, and every
// acknowledged event reaches JetStream once, in order per task.
func TestSpoolRidesOutBrokerOutage(t *testing.T) {
	port, natsDir := sinktest.FreePort(t), t.TempDir()
	srv := sinktest.NATSAt(t, port, natsDir)
	cfg := spoolConfig(t, srv.ClientURL(), t.TempDir(), "")
	ctx := context.Background()
	svc, err := Start(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(ctx)
	url := "http://" + svc.Addr().String() + "/webhook"

	const workers, perWorker = 4, 60
	var mu sync.Mutex
	acked := map[string]bool{}
	var sent sync.WaitGroup
	progress := make(chan int, workers*perWorker)
	for w := range workers {
		sent.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for n := range perWorker {
				task := fmt.Sprintf("task-%d-%d", w, n%3) // each task is one worker's
				code, id := postEvent(t, client, url, task, n)
				if code != http.StatusOK {
					t.Errorf("%s/%d answered %d while the broker was away: the spool should take it", task, n, code)
					continue
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
				progress <- 1
			}
		})
	}
	// Stop the broker a third of the way in, start it again at two thirds.
	done := 0
	for done < workers*perWorker/3 {
		done += <-progress
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	// HOOKBRIDGE_TEST_OUTAGE (e.g. 30s) holds the broker down at least that
	// long; by default the outage lasts a third of the traffic.
	outage, _ := time.ParseDuration(os.Getenv("HOOKBRIDGE_TEST_OUTAGE"))
	back := time.After(outage)
	for done < 2*workers*perWorker/3 {
		done += <-progress
	}
	<-back
	srv = sinktest.NATSAt(t, port, natsDir)
	sent.Wait()

	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := svc.Spooler().Drain(dctx); err != nil {
		t.Fatal(err)
	}
	_, js := sinktest.JetStream(t, srv.ClientURL())
	checkDelivered(t, streamEvents(t, js), acked)
	if svc.Spooler().Retries() == 0 {
		t.Error("no publish was retried: the outage did not happen under traffic")
	}
}

// TestSpoolRedeliversAfterRestart: events accepted while the broker is
// unreachable stay in the spool across a restart of hookbridge (as after a
// crash between the fsync and the publish) and are delivered by the next
// start.
func TestSpoolRedeliversAfterRestart(t *testing.T) {
	port, spoolDir := sinktest.FreePort(t), t.TempDir()
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	ctx := context.Background()

	cfg := spoolConfig(t, natsURL, spoolDir, "")
	cfg.SkipProbes() // the broker is not there yet
	svc, err := Start(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + svc.Addr().String() + "/webhook"
	acked := map[string]bool{}
	for n := range 10 {
		code, id := postEvent(t, http.DefaultClient, url, "t", n)
		if code != http.StatusOK {
			t.Fatalf("event %d: %d", n, code)
		}
		acked[id] = true
	}
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := svc.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	st, err := OpenSpoolAdmin(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stats, _ := st.Stats(ctx)
	st.Close()
	if stats.Pending != 10 {
		t.Fatalf("the spool holds %d messages after shutdown, want 10", stats.Pending)
	}

	srv := sinktest.NATSAt(t, port, t.TempDir())
	svc, err = Start(ctx, spoolConfig(t, natsURL, spoolDir, ""), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(ctx)
	dctx, cancel2 := context.WithTimeout(ctx, 30*time.Second)
	defer cancel2()
	if err := svc.Spooler().Drain(dctx); err != nil {
		t.Fatal(err)
	}
	_, js := sinktest.JetStream(t, srv.ClientURL())
	checkDelivered(t, streamEvents(t, js), acked)
}

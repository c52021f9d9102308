package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/bridge/config"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// scaleOutConfig is one replica's config: jsSpoolConfig's, with three
// copies of the stream, the sink at sinkURL publishing into a stream the
// test made, and a second target.
func scaleOutConfig(t *testing.T, urls, sinkURL string) *config.Config {
	t.Helper()
	cfg := jsSpoolConfig(t, urls, "  replicas: 3")
	bus := cfg.Sinks[0].Options.(*natssink.Config)
	bus.URL, bus.ConnectTimeout, bus.Stream.Create = sinkURL, 2*time.Second, new(bool)
	cfg.Routes[0].To = append(cfg.Routes[0].To, config.Target{Sink: "bus", Key: "subject", Target: "task.audit.{status}"})
	return cfg
}

// crash stops svc the way a killed process stops: its listeners and NATS
// connections close at once; nothing it holds is handed back or flushed.
func (s *Service) crash() {
	s.draining.Store(true)
	s.server.Close()
	s.admin.Close()
	// Cut off from the spool's NATS, the dispatchers hand nothing back:
	// NATS redelivers after ack_wait, as for a killed process.
	s.spool.closeAll()
	g := s.gen.Load()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for _, sk := range g.sinks {
		sk.Close(gone)
	}
	g.spooler.Stop()
}

// TestScaleOutSurvivesReplicaAndNodeLoss runs three hookbridge replicas on
// a shared jetstream spool in a three-node NATS cluster. Senders spread
// each task's events over the replicas, one at a time, retrying on another
// replica as a load balancer would. A third of the way in one replica
// crashes while its publishes hang; at two thirds the NATS node leading the spool stream stops.
// Every acknowledged event must reach each sink target exactly once, and
// each task's events must arrive in the order they were accepted.
func TestScaleOutSurvivesReplicaAndNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a NATS cluster")
	}
	t.Parallel()
	servers, urls := sinktest.NATSCluster(t, 3)
	ctx := context.Background()
	_, js := sinktest.JetStream(t, urls)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "HOOKBRIDGE", Subjects: []string{"task.>"},
		Replicas: 3, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}

	// Replica 1, the one that crashes, reaches the sink through a proxy
	// that will hang, so that it dies with publishes in flight.
	hung := sinktest.StartProxy(t, servers[0].Addr().String())
	var logBuf sinktest.Buffer
	defer func() {
		if t.Failed() {
			t.Log(logBuf.String())
		}
	}()
	// The replicas start at once, as a Deployment's first rollout does:
	// all of them create the stream, the bucket and the consumers.
	replicas := make([]*Service, 3)
	var starting sync.WaitGroup
	for i := range replicas {
		sinkURL := urls
		log := slog.New(slog.DiscardHandler)
		if i == 1 {
			sinkURL = "nats://" + hung.Addr()
			log = slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		cfg := scaleOutConfig(t, urls, sinkURL)
		starting.Go(func() {
			svc, err := Start(ctx, cfg, Options{Log: log})
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
				return
			}
			replicas[i] = svc
		})
	}
	starting.Wait()
	if t.Failed() {
		for _, svc := range replicas {
			if svc != nil {
				svc.Shutdown(ctx)
			}
		}
		return
	}
	var crashed atomic.Int32
	crashed.Store(-1)
	t.Cleanup(func() {
		for i, svc := range replicas {
			if int32(i) != crashed.Load() {
				svc.Shutdown(ctx)
			}
		}
	})

	const senders, tasksPer, events = 6, 2, 15
	total := senders * tasksPer * events
	var mu sync.Mutex
	acked := map[string]bool{}
	progress := make(chan struct{}, total)
	var sent sync.WaitGroup
	for w := range senders {
		sent.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for n := range events {
				for k := range tasksPer {
					task := fmt.Sprintf("task-%d-%d", w, k)
					// Round robin over the replicas; on a refusal or a 503 the
					// same delivery goes to the next one.
					for try := 0; ; try++ {
						if try == 200 {
							t.Errorf("%s/%d: no replica took it", task, n)
							return
						}
						svc := replicas[(w+n+k+try)%3]
						code, id, err := tryPost(client, "http://"+svc.Addr().String()+"/webhook", task, n)
						if err == nil && code == http.StatusOK {
							mu.Lock()
							acked[id] = true
							mu.Unlock()
							progress <- struct{}{}
							break
						}
						time.Sleep(20 * time.Millisecond)
					}
				}
			}
		})
	}

	done := 0
	for done < total/3 {
		<-progress
		done++
	}
	_ = hung.Hold() // never released: the path stays hung
	sinktest.WaitFor(t, "replica 1 to publish into the hung path", func() bool { return hung.Waiting() > 0 })
	t.Logf("%d accepted; crashing replica 1 with a publish in flight", done)
	crashed.Store(1)
	replicas[1].crash()
	for done < 2*total/3 {
		<-progress
		done++
	}
	info, err := js.Stream(ctx, "HOOKBRIDGE_SPOOL")
	if err != nil {
		t.Fatal(err)
	}
	leader := info.CachedInfo().Cluster.Leader
	t.Logf("%d accepted; stopping NATS node %s, the spool stream's leader", done, leader)
	for _, s := range servers {
		if s.Name() == leader {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}
	sent.Wait()
	if t.Failed() {
		return
	}
	t.Logf("all %d accepted", len(acked))

	// Read the sink's stream back once it holds both targets' copies.
	want := 2 * len(acked)
	sinktest.WaitFor(t, "every acknowledged event on both targets", func() bool { return sinktest.StreamCount(js, "HOOKBRIDGE") >= want })
	var status, audit []sinktest.CloudEvent
	for _, m := range sinktest.ReadStream(t, js, "HOOKBRIDGE") {
		if strings.HasPrefix(m.Subject(), "task.audit.") {
			audit = append(audit, sinktest.ReadCloudEvent(t, m.Data()))
		} else {
			status = append(status, sinktest.ReadCloudEvent(t, m.Data()))
		}
	}
	checkDelivered(t, status, acked)
	checkDelivered(t, audit, acked)
	sinktest.WaitFor(t, "the spool stream to empty", func() bool { return sinktest.StreamCount(js, "HOOKBRIDGE_SPOOL") == 0 })
}

// TestGracefulStopHandsOver: a replica stopped while its sink hangs hands
// what it holds back to NATS, and the other replica delivers it. ack_wait
// is an hour, so nothing reaches the other replica unless it was handed
// back. With 16 partitions and 4 publishers, most of what the replica
// holds waits behind the hung publishes, and only Stop hands it back.
func TestGracefulStopHandsOver(t *testing.T) {
	t.Parallel() // most of it is the hung sink's flush at shutdown
	srv := sinktest.NATS(t)
	hung := sinktest.StartProxy(t, srv.Addr().String())
	cfgA := jsSpoolConfig(t, srv.ClientURL(), "")
	cfgA.Spool.JetStream.AckWait, cfgA.Spool.JetStream.Partitions = time.Hour, 16
	cfgA.Sinks[0].Options.(*natssink.Config).URL = "nats://" + hung.Addr()
	ctx := context.Background()
	a, err := Start(ctx, cfgA, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = hung.Hold() // never released: the path stays hung
	acked := map[string]bool{}
	postEvents(t, "http://"+a.Addr().String()+"/webhook", 0, 40, 20, acked)
	sinktest.WaitFor(t, "replica A to publish into the hung path", func() bool { return hung.Waiting() > 0 })
	// Shutdown waits for the publishes in flight (publish_timeout), then
	// for the hung sink's flush (10 s, past this deadline by design).
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	a.Shutdown(sctx)

	cfgB := jsSpoolConfig(t, srv.ClientURL(), "")
	cfgB.Spool.JetStream.AckWait, cfgB.Spool.JetStream.Partitions = time.Hour, 16
	startConfig(t, cfgB)
	_, js := sinktest.JetStream(t, srv.ClientURL())
	sinktest.WaitFor(t, "replica B to deliver every event", func() bool { return sinktest.StreamCount(js, "HOOKBRIDGE") == len(acked) })
	checkDelivered(t, streamEvents(t, js), acked)
}

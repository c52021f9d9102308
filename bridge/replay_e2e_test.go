package bridge

import (
	"net/http"
	"sync"
	"testing"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/ingress"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// TestConcurrentCopiesAcceptedOnce: 50 copies of one signed event posted
// at once through running services are accepted once and answered
// duplicate 49 times: with sync delivery, the local spool, and the
// JetStream spool on two replicas sharing the replay bucket. (The sink's
// stream would drop repeats by Nats-Msg-Id anyway, so the answers are
// what is counted: a second "accepted" is a second publish.)
func TestConcurrentCopiesAcceptedOnce(t *testing.T) {
	const copies = 50
	tests := []struct {
		name     string
		replicas int
		config   func(t *testing.T, natsURL string) *config.Config
	}{
		{"sync", 1, func(t *testing.T, url string) *config.Config {
			cfg := spoolConfig(t, url, t.TempDir(), "")
			cfg.Routes[0].Delivery = config.DeliverySync
			return cfg
		}},
		{"local spool", 1, func(t *testing.T, url string) *config.Config { return spoolConfig(t, url, t.TempDir(), "") }},
		{"jetstream spool, two replicas", 2, func(t *testing.T, url string) *config.Config { return jsSpoolConfig(t, url, "") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := sinktest.NATS(t)
			var urls []string
			var svcs []*Service
			for range tt.replicas {
				svc := startConfig(t, tt.config(t, srv.ClientURL()))
				svcs = append(svcs, svc)
				urls = append(urls, "http://"+svc.Addr().String()+"/webhook")
			}
			var mu sync.Mutex
			codes := map[int]int{}
			var wg sync.WaitGroup
			for i := range copies {
				wg.Go(func() {
					code, _ := postEvent(t, http.DefaultClient, urls[i%len(urls)], "task-c", 1)
					mu.Lock()
					codes[code]++
					mu.Unlock()
				})
			}
			wg.Wait()
			var accepted, dup uint64
			for _, svc := range svcs {
				accepted += svc.Ingress().Count(ingress.ResultAccepted)
				dup += svc.Ingress().Count(ingress.ResultDuplicate)
			}
			if codes[http.StatusOK] != copies || accepted != 1 || dup != copies-1 {
				t.Errorf("answers %v: %d accepted, %d duplicate; want %d × 200, 1 accepted", codes, accepted, dup, copies)
			}
			_, js := sinktest.JetStream(t, srv.ClientURL())
			sinktest.WaitFor(t, "the event in the sink", func() bool { return sinktest.StreamCount(js, "HOOKBRIDGE") == 1 })
		})
	}
}

package ingress

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/route"
)

// blocker is a Deliverer that holds every delivery until release closes.
type blocker struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blocker) Deliver(ctx context.Context, ev *event.Event, d []route.Delivery) error {
	b.entered <- struct{}{}
	<-b.release
	return nil
}

func budgetIngress(t *testing.T, d Deliverer, mutate func(*config.Server)) (*Handler, *Budget) {
	t.Helper()
	cfg := testConfig(func(c *config.Config) {
		if mutate != nil {
			mutate(&c.Server)
		}
	})
	b := NewBudget(cfg.Server)
	h, err := New(cfg, Options{Router: route.New(cfg.Rules()), Deliverer: d, Budget: b, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return h, b
}

func finished(t *testing.T, task string) *http.Request {
	return signedRequest(t, "/webhook", testSecret, strconv.FormatInt(testNow.Unix(), 10),
		`{"task_id":"`+task+`","status":"finished"}`)
}

// A webhook beyond max_concurrent_requests, counted once its body is
// read, is shed with 503 and Retry-After.
func TestDeliverySlotsShed(t *testing.T) {
	d := &blocker{entered: make(chan struct{}), release: make(chan struct{})}
	h, b := budgetIngress(t, d, func(s *config.Server) { s.MaxConcurrentRequests = 1 })
	first := make(chan int)
	go func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, finished(t, "t-first"))
		first <- w.Code
	}()
	<-d.entered
	w := httptest.NewRecorder()
	h.ServeHTTP(w, finished(t, "t-second"))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("second webhook while the first is delivered: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if h.Count(ResultOverloaded) != 1 || b.Reading() != 0 {
		t.Errorf("overloaded %d, reading %d", h.Count(ResultOverloaded), b.Reading())
	}
	close(d.release)
	if code := <-first; code != http.StatusOK {
		t.Errorf("first webhook: %d", code)
	}
	if b.Handling() != 0 {
		t.Errorf("%d delivery slots still held", b.Handling())
	}
	if !b.bytes.TryAcquire(config.DefaultMaxBufferedBytes) {
		t.Error("buffered bytes not all released")
	}
}

// A chunked body (no Content-Length) grows its reservation as it
// arrives, stops at max_body_bytes with 413, and gives every byte back.
func TestChunkedBodyWithinBudget(t *testing.T) {
	h, b := budgetIngress(t, &recorder{}, func(s *config.Server) {
		s.MaxBodyBytes = 100_000
		s.MaxBufferedBytes = 100_000
	})
	body := `{"task_id":"t-chunked","status":"finished","pad":"` + strings.Repeat("p", 50_000) + `"}`
	req := signedRequest(t, "/webhook", testSecret, strconv.FormatInt(testNow.Unix(), 10), body)
	req.Body, req.ContentLength = io.NopCloser(strings.NewReader(body)), -1
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("50 KB chunked body: %d %s", w.Code, w.Body)
	}
	big := strings.Repeat(" ", 100_001)
	req = signedRequest(t, "/webhook", testSecret, strconv.FormatInt(testNow.Unix(), 10), big)
	req.Body, req.ContentLength = io.NopCloser(strings.NewReader(big)), -1
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked body one byte over: %d %s", w.Code, w.Body)
	}
	if !b.bytes.TryAcquire(100_000) {
		t.Error("buffered bytes not all released")
	}
}

package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/bridge/queue/jetstream"
	"github.com/hookbridge/hookbridge/bridge/route"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// envelope is a signed envelope the claim tests post copies of.
const envelope = `{"type":"agent.task.status_update","timestamp":"2026-11-26T11:59:00Z","payload":{"task_id":"t","status":"finished"}}`

// gate is a Deliverer whose first call blocks until release is closed,
// and then fails if failFirst: the first copy of an event stays in
// flight while the others arrive.
type gate struct {
	release   chan struct{}
	failFirst bool

	mu        sync.Mutex
	calls     int
	delivered int
	busy      bool // the first call is in flight
	overlaps  int  // calls made while it was
}

func newGate(failFirst bool) *gate { return &gate{release: make(chan struct{}), failFirst: failFirst} }

func (g *gate) Deliver(ctx context.Context, ev *event.Event, d []route.Delivery) error {
	g.mu.Lock()
	g.calls++
	first := g.calls == 1
	if g.busy {
		g.overlaps++
	}
	g.busy = first
	g.mu.Unlock()
	if first {
		<-g.release
		g.mu.Lock()
		g.busy = false
		g.mu.Unlock()
		if g.failFirst {
			return errors.New("broker down")
		}
	}
	g.mu.Lock()
	g.delivered++
	g.mu.Unlock()
	return nil
}

func (g *gate) counts() (calls, delivered int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls, g.delivered
}

// openReplay is a replay bucket on a fresh in-process nats-server.
func openReplay(t *testing.T) *jetstream.Replay {
	t.Helper()
	srv := sinktest.NATS(t)
	cfg := jetstream.Config{Connection: natssink.Connection{URL: srv.ClientURL()}}
	cfg.SetDefaults()
	conn, err := jetstream.Dial(cfg, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r, err := conn.OpenReplay(context.Background(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// replica is a Handler as one replica runs it, on clock now.
func replica(t *testing.T, d Deliverer, shared SharedReplay, now func() time.Time, mutate func(*config.Config)) *Handler {
	t.Helper()
	cfg := testConfig(mutate)
	if now == nil {
		now = func() time.Time { return testNow }
	}
	opts := Options{Router: route.New(cfg.Rules()), Deliverer: d, Now: now}
	if shared != nil { // an untyped nil, as the service passes it
		opts.Shared = shared
	}
	h, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// post sends one copy of envelope, signed at ts, to h.
func post(t *testing.T, h *Handler, path, ts string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, signedRequest(t, path, testSecret, ts, envelope))
	return w
}

// answers tallies the answers of a burst of copies.
type answers struct {
	mu                        sync.Mutex
	accepted, duplicate, n503 int
	other                     []string
}

func (a *answers) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accepted + a.duplicate + a.n503 + len(a.other)
}

func (a *answers) add(w *httptest.ResponseRecorder) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch body := w.Body.String(); {
	case w.Code == 200 && strings.Contains(body, `"duplicate":true`):
		a.duplicate++
	case w.Code == 200:
		a.accepted++
	case w.Code == 503 && w.Header().Get("Retry-After") != "":
		a.n503++
	default:
		a.other = append(a.other, strconv.Itoa(w.Code)+" "+body)
	}
}

// TestConcurrentCopiesDeliveredOnce: 50 copies of one signed event
// arriving together, on one replica or two sharing the replay bucket,
// are delivered once. The others wait for the first copy's outcome: all
// duplicates when it is kept; when it fails, one of them delivers it,
// and none is answered duplicate before that.
func TestConcurrentCopiesDeliveredOnce(t *testing.T) {
	const copies = 50
	tests := []struct {
		name      string
		replicas  int
		shared    bool
		failFirst bool
	}{
		{"memory", 1, false, false},
		{"memory, first fails", 1, false, true},
		{"nats, one replica", 1, true, false},
		{"nats, two replicas", 2, true, false},
		{"nats, two replicas, first fails", 2, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate(tt.failFirst)
			var shared SharedReplay
			if tt.shared {
				shared = openReplay(t)
			}
			hs := make([]*Handler, tt.replicas)
			for i := range hs {
				hs[i] = replica(t, g, shared, nil, nil)
			}
			ts := strconv.FormatInt(testNow.Unix(), 10)
			var got answers
			var wg sync.WaitGroup
			for i := range copies {
				wg.Go(func() { got.add(post(t, hs[i%len(hs)], "/webhook", ts)) })
			}
			// Release the first delivery once every other copy is in:
			// waiting for it (a copy holding its replica's claim waits in
			// the bucket, unseen), or, were copies not held back, delivered
			// or answered.
			sinktest.WaitFor(t, "every copy to arrive", func() bool {
				var waits int64
				for _, h := range hs {
					waits += h.sources["/webhook"].replay.waits.Load()
				}
				calls, _ := g.counts()
				return int64(calls+got.count())+waits >= int64(copies-(len(hs)-1))
			})
			close(g.release)
			wg.Wait()

			calls, delivered := g.counts()
			want503 := 0
			if tt.failFirst {
				want503 = 1
			}
			g.mu.Lock()
			overlaps := g.overlaps
			g.mu.Unlock()
			if overlaps != 0 {
				t.Errorf("%d copies delivered while the first was in flight", overlaps)
			}
			if delivered != 1 || got.accepted != 1 || got.duplicate != copies-1-want503 || got.n503 != want503 || len(got.other) > 0 {
				t.Errorf("%d copies: %d deliveries (of %d calls), answered %d accepted, %d duplicate, %d 503, other %q; want 1 delivery, 1 accepted, %d duplicate, %d 503",
					copies, delivered, calls, got.accepted, got.duplicate, got.n503, got.other, copies-1-want503, want503)
			}
		})
	}
}

// TestWaitingCopyRespectsItsDeadline: a copy that arrives while the
// first is still being delivered, and whose publish_timeout passes
// first, is answered 503 with Retry-After, not duplicate: the event is
// not kept yet. Once it is, a copy is a duplicate.
func TestWaitingCopyRespectsItsDeadline(t *testing.T) {
	g := newGate(false)
	h := replica(t, g, nil, nil, func(cfg *config.Config) { cfg.Server.PublishTimeout = 50 * time.Millisecond })
	ts := strconv.FormatInt(testNow.Unix(), 10)
	first := make(chan *httptest.ResponseRecorder)
	go func() { first <- post(t, h, "/webhook", ts) }()
	sinktest.WaitFor(t, "the first copy in delivery", func() bool { calls, _ := g.counts(); return calls == 1 })

	w := post(t, h, "/webhook", ts)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || strings.Contains(w.Body.String(), "duplicate") {
		t.Errorf("copy during the first's delivery: %d %q (Retry-After %q); want 503 with Retry-After", w.Code, w.Body, w.Header().Get("Retry-After"))
	}
	close(g.release)
	if w := <-first; w.Code != 200 || strings.Contains(w.Body.String(), "duplicate") {
		t.Errorf("first copy: %d %s", w.Code, w.Body)
	}
	if w := post(t, h, "/webhook", ts); w.Code != 200 || !strings.Contains(w.Body.String(), `"duplicate":true`) {
		t.Errorf("copy after the first was kept: %d %s; want duplicate", w.Code, w.Body)
	}
	if calls, delivered := g.counts(); calls != 1 || delivered != 1 {
		t.Errorf("%d deliveries (%d calls), want 1", delivered, calls)
	}
}

// TestReplayWindowFollowsSignedTime: an id is remembered until its
// signed timestamp plus the tolerance (the last moment a copy passes the
// freshness check), not merely the window from receipt; with tolerance
// 0, or an unparseable timestamp let through, the window runs from
// receipt.
func TestReplayWindowFollowsSignedTime(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		mutate func(*config.Config)
		ts     string        // the signed timestamp of every copy
		later  time.Duration // when the copy comes, after the first
		want   string        // "duplicate", "accepted" or "stale"
	}{
		// The sender's clock runs 3s ahead: a copy passes the check until
		// t0+7s, so it must be caught until then.
		{"ahead, replayed 4s later", "/webhook", tolerance(4 * time.Second), at(3 * time.Second), 4 * time.Second, "duplicate"},
		{"ahead, replayed at the check's limit", "/webhook", tolerance(4 * time.Second), at(3 * time.Second), 7 * time.Second, "duplicate"},
		{"ahead, replayed past it", "/webhook", tolerance(4 * time.Second), at(3 * time.Second), 7*time.Second + time.Millisecond, "stale"},
		// Behind: the copy turns stale before the window from receipt ends.
		{"behind, replayed within the tolerance", "/webhook", tolerance(4 * time.Second), at(-3 * time.Second), time.Second, "duplicate"},
		// Tolerance 0: server.replay_window from receipt, as before.
		{"no tolerance, within the window", "/webhook", noTolerance(4 * time.Second), at(time.Hour), 4*time.Second - 1, "duplicate"},
		{"no tolerance, after the window", "/webhook", noTolerance(4 * time.Second), at(time.Hour), 4 * time.Second, "accepted"},
		// allow_unparsed_timestamp: nothing bounds the copy; the window from receipt.
		{"unparsed, within the window", "/lenient", tolerance(4 * time.Second), "not a time", 4*time.Second - 1, "duplicate"},
		{"unparsed, after the window", "/lenient", tolerance(4 * time.Second), "not a time", 4 * time.Second, "accepted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			now := testNow
			h := replica(t, rec, nil, func() time.Time { return now }, tt.mutate)
			post := func() *httptest.ResponseRecorder {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, signedRequest(t, tt.path, testSecret, tt.ts, envelope))
				return w
			}
			if w := post(); w.Code != 200 || strings.Contains(w.Body.String(), "duplicate") {
				t.Fatalf("first copy: %d %s", w.Code, w.Body)
			}
			now = now.Add(tt.later)
			w := post()
			got := "accepted"
			switch {
			case w.Code == 403:
				got = "stale"
			case strings.Contains(w.Body.String(), `"duplicate":true`):
				got = "duplicate"
			case w.Code != 200:
				got = strconv.Itoa(w.Code)
			}
			if got != tt.want {
				t.Errorf("copy %v later: %s (%d %s), want %s", tt.later, got, w.Code, w.Body, tt.want)
			}
			if n, want := len(rec.got), map[bool]int{true: 2, false: 1}[tt.want == "accepted"]; n != want {
				t.Errorf("%d deliveries, want %d", n, want)
			}
		})
	}
}

func at(d time.Duration) string { return strconv.FormatInt(testNow.Add(d).Unix(), 10) }

// tolerance sets both sources' tolerance.
func tolerance(d time.Duration) func(*config.Config) {
	return func(cfg *config.Config) {
		for i := range cfg.Sources {
			cfg.Sources[i].Tolerance = &d
		}
	}
}

// noTolerance turns the freshness check off and sets server.replay_window.
func noTolerance(window time.Duration) func(*config.Config) {
	return func(cfg *config.Config) {
		var off time.Duration
		cfg.Sources[0].Tolerance = &off
		cfg.Server.ReplayWindow = &window
	}
}

// TestAbandonedClaimTakenOver: a claim left in the replay bucket by a
// replica that died mid-delivery holds copies off (503) while its holder
// may still be delivering, and is taken over once it is older than twice
// publish_timeout.
func TestAbandonedClaimTakenOver(t *testing.T) {
	r := openReplay(t)
	const timeout = 500 * time.Millisecond
	ts := strconv.FormatInt(testNow.Unix(), 10)
	var resp struct{ ID string }
	if err := json.Unmarshal(post(t, replica(t, &recorder{}, nil, nil, nil), "/webhook", ts).Body.Bytes(), &resp); err != nil || resp.ID == "" {
		t.Fatalf("the event's id: %v", err)
	}
	// The replica that dies: it claims, and never settles.
	if c, err := r.Claim(context.Background(), resp.ID, testNow, 2*timeout); err != nil || c.Rev == 0 {
		t.Fatalf("claim: %+v %v", c, err)
	}

	rec := &recorder{}
	now := testNow.Add(timeout)
	h := replica(t, rec, r, func() time.Time { return now }, func(cfg *config.Config) { cfg.Server.PublishTimeout = timeout })
	if w := post(t, h, "/webhook", ts); w.Code != 503 || len(rec.got) != 0 {
		t.Errorf("copy while the claim may be live: %d %s, %d deliveries; want 503, none", w.Code, w.Body, len(rec.got))
	}
	now = testNow.Add(2 * timeout)
	if w := post(t, h, "/webhook", ts); w.Code != 200 || strings.Contains(w.Body.String(), "duplicate") || len(rec.got) != 1 {
		t.Errorf("copy after the claim was abandoned: %d %s, %d deliveries; want 200 delivered", w.Code, w.Body, len(rec.got))
	}
	// Another replica then finds it accepted.
	other := &recorder{}
	if w := post(t, replica(t, other, r, func() time.Time { return now }, nil), "/webhook", ts); !strings.Contains(w.Body.String(), `"duplicate":true`) || len(other.got) != 0 {
		t.Errorf("copy on another replica: %d %s, %d deliveries; want duplicate", w.Code, w.Body, len(other.got))
	}
}

// failingShared is a replay bucket that cannot be reached.
type failingShared struct{ calls int }

func (f *failingShared) Claim(context.Context, string, time.Time, time.Duration) (queue.ReplayClaim, error) {
	f.calls++
	return queue.ReplayClaim{}, errors.New("nats: timeout")
}
func (f *failingShared) Wait(context.Context, string, uint64) error { panic("no claim to wait on") }
func (f *failingShared) Accept(string, time.Time) error             { panic("no claim to accept") }
func (f *failingShared) Release(context.Context, string, uint64) error {
	panic("no claim to release")
}

// TestReplayBucketDownStillDelivers: a replay bucket that fails does not
// lose the event: it is delivered on this replica's claim, and a repeat
// here is still a duplicate.
func TestReplayBucketDownStillDelivers(t *testing.T) {
	rec, f := &recorder{}, &failingShared{}
	h := replica(t, rec, f, nil, nil)
	ts := strconv.FormatInt(testNow.Unix(), 10)
	if w := post(t, h, "/webhook", ts); w.Code != 200 || strings.Contains(w.Body.String(), "duplicate") || len(rec.got) != 1 {
		t.Errorf("with the bucket down: %d %s, %d deliveries; want 200 delivered", w.Code, w.Body, len(rec.got))
	}
	if w := post(t, h, "/webhook", ts); !strings.Contains(w.Body.String(), `"duplicate":true`) || len(rec.got) != 1 || f.calls != 1 {
		t.Errorf("repeat: %d %s, %d deliveries, %d bucket claims; want duplicate from this replica's cache", w.Code, w.Body, len(rec.got), f.calls)
	}
}

// panicOnce is a Deliverer whose first call panics.
type panicOnce struct{ recorder }

func (p *panicOnce) Deliver(ctx context.Context, ev *event.Event, d []route.Delivery) error {
	p.mu.Lock()
	first := p.fail == nil
	p.fail = errors.New("panicked already")
	p.mu.Unlock()
	if first {
		panic("deliverer bug")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, recorded{ev, d})
	return nil
}

// TestPanickingDeliveryReleasesClaim: a Deliverer that panics (net/http
// recovers it) does not leave its claim behind, which would hold every
// later copy of the event off.
func TestPanickingDeliveryReleasesClaim(t *testing.T) {
	d := &panicOnce{}
	h := replica(t, d, nil, nil, func(cfg *config.Config) { cfg.Server.PublishTimeout = 50 * time.Millisecond })
	ts := strconv.FormatInt(testNow.Unix(), 10)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the Deliverer's panic did not reach net/http")
			}
		}()
		post(t, h, "/webhook", ts)
	}()
	if w := post(t, h, "/webhook", ts); w.Code != 200 || strings.Contains(w.Body.String(), "duplicate") || len(d.got) != 1 {
		t.Errorf("retry after the panic: %d %s, %d deliveries; want 200 delivered", w.Code, w.Body, len(d.got))
	}
}

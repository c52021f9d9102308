package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/delivery"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/queue/local"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/bridge/signature"
	"github.com/hookbridge/hookbridge/sinks"
)

const testSecret = "whsec_test_secret"

// recorder is a Deliverer that records what it is given and fails on
// demand: fault injection for the handler's answers.
type recorder struct {
	mu   sync.Mutex
	got  []recorded
	fail error
}

type recorded struct {
	ev         *event.Event
	deliveries []route.Delivery
}

func (r *recorder) Deliver(ctx context.Context, ev *event.Event, d []route.Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.got = append(r.got, recorded{ev, d})
	return nil
}

var testNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// testConfig is the handler tests' config: two sources (the second allows
// unparsed timestamps), finished and the alerting statuses routed.
func testConfig(mutate func(*config.Config)) *config.Config {
	tol := 5 * time.Minute
	cfg := &config.Config{
		Sources: []config.Source{
			{Name: "browser-use", Path: "/webhook", Secrets: []config.Secret{"old-secret", testSecret}, Tolerance: &tol},
			{Name: "lenient", Path: "/lenient", Secrets: []config.Secret{testSecret}, AllowUnparsedTimestamp: true},
		},
		Routes: []config.Route{
			{Name: "finished", Status: []string{"finished"}, To: []config.Target{{Sink: "bus", Key: "subject", Target: "task.{status}"}}},
			{Name: "alerting", Status: []string{"paused", "stopped"}, To: []config.Target{{Sink: "bus", Key: "subject", Target: "alerts.task.{status}"}}},
		},
	}
	if mutate != nil {
		mutate(cfg)
	}
	cfg.SetDefaults()
	return cfg
}

func newTestIngress(t testing.TB, d Deliverer, mutate func(*config.Config)) *Handler {
	t.Helper()
	cfg := testConfig(mutate)
	h, err := New(cfg, Options{Router: route.New(cfg.Rules()), Deliverer: d, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// signedRequest builds a POST signed with secret at ts; a body that is not
// JSON gets a signature of zeros.
func signedRequest(t testing.TB, path, secret, ts, body string) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if err := signature.SignRequest(req, []byte(body), []byte(secret), ts); err != nil {
		req.Header.Set(signature.HeaderTimestamp, ts)
		req.Header.Set(signature.HeaderSignature, strings.Repeat("0", 64))
	}
	return req
}

func TestIngressAnswers(t *testing.T) {
	now := strconv.FormatInt(testNow.Unix(), 10)
	finished := `{"session_id": "s", "task_id": "t1", "status": "finished"}`
	tests := []struct {
		name    string
		req     func(t *testing.T) *http.Request
		status  int
		errPart string // a part of the {"error"} message; "" for 200
		routes  int
	}{
		{"unknown path", func(t *testing.T) *http.Request { return signedRequest(t, "/nope", testSecret, now, finished) },
			404, `no webhook source at path "/nope"`, 0},
		{"GET", func(t *testing.T) *http.Request { return httptest.NewRequest(http.MethodGet, "/webhook", nil) },
			405, "method GET not allowed", 0},
		{"body over the limit (Content-Length)", func(t *testing.T) *http.Request {
			return signedRequest(t, "/webhook", testSecret, now, `{"status":"finished","pad":"`+strings.Repeat("x", 9000)+`"}`)
		}, 413, "larger than the limit of 8192 bytes", 0},
		{"body over the limit (chunked)", func(t *testing.T) *http.Request {
			r := signedRequest(t, "/webhook", testSecret, now, `{"status":"finished","pad":"`+strings.Repeat("x", 9000)+`"}`)
			r.ContentLength = -1
			r.Body = io.NopCloser(strings.NewReader(`{"status":"finished","pad":"` + strings.Repeat("x", 9000) + `"}`))
			return r
		}, 413, "larger than the limit", 0},
		{"missing timestamp", func(t *testing.T) *http.Request {
			r := signedRequest(t, "/webhook", testSecret, now, finished)
			r.Header.Del(signature.HeaderTimestamp)
			return r
		}, 400, "missing header X-Browser-Use-Timestamp", 0},
		{"missing signature", func(t *testing.T) *http.Request {
			r := signedRequest(t, "/webhook", testSecret, now, finished)
			r.Header.Del(signature.HeaderSignature)
			return r
		}, 400, "missing header X-Browser-Use-Signature", 0},
		{"signature twice", func(t *testing.T) *http.Request {
			r := signedRequest(t, "/webhook", testSecret, now, finished)
			r.Header.Add(signature.HeaderSignature, strings.Repeat("0", 64))
			return r
		}, 400, "given more than once", 0},
		{"not JSON", func(t *testing.T) *http.Request {
			return signedRequest(t, "/webhook", testSecret, now, "status=finished")
		},
			400, "body is not valid JSON", 0},
		{"not UTF-8", func(t *testing.T) *http.Request {
			return signedRequest(t, "/webhook", testSecret, now, "{\"status\":\"finished\",\"n\":\"\xff\xfe\"}")
		}, 400, "body is not valid JSON", 0},
		{"not an object", func(t *testing.T) *http.Request { return signedRequest(t, "/webhook", testSecret, now, `["finished"]`) },
			400, "body is not a JSON object", 0},
		{"integer over 4300 digits", func(t *testing.T) *http.Request {
			return signedRequest(t, "/webhook", testSecret, now, `{"status":"finished","n":1`+strings.Repeat("0", 4300)+`}`)
		}, 400, "body is not valid JSON", 0},
		{"wrong secret", func(t *testing.T) *http.Request { return signedRequest(t, "/webhook", "guess", now, finished) },
			403, "signature does not match", 0},
		{"body changed after signing", func(t *testing.T) *http.Request {
			r := signedRequest(t, "/webhook", testSecret, now, finished)
			r.Body = io.NopCloser(strings.NewReader(strings.Replace(finished, "finished", "stopped", 1)))
			return r
		}, 403, "signature does not match", 0},
		{"timestamp changed after signing", func(t *testing.T) *http.Request {
			r := signedRequest(t, "/webhook", testSecret, now, finished)
			r.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(testNow.Unix()+1, 10))
			return r
		}, 403, "signature does not match", 0},
		{"upper-case signature", func(t *testing.T) *http.Request {
			r := signedRequest(t, "/webhook", testSecret, now, finished)
			r.Header.Set(signature.HeaderSignature, strings.ToUpper(r.Header.Get(signature.HeaderSignature)))
			return r
		}, 403, "signature does not match", 0},
		{"timestamp too old", func(t *testing.T) *http.Request {
			return signedRequest(t, "/webhook", testSecret, strconv.FormatInt(testNow.Add(-6*time.Minute).Unix(), 10), finished)
		}, 403, "timestamp is 6m0s old, more than the tolerance of 5m0s", 0},
		{"timestamp in the future", func(t *testing.T) *http.Request {
			return signedRequest(t, "/webhook", testSecret, testNow.Add(10*time.Minute).Format(time.RFC3339), finished)
		}, 403, "timestamp is 10m0s in the future", 0},
		{"timestamp unparseable", func(t *testing.T) *http.Request {
			return signedRequest(t, "/webhook", testSecret, "yesterday", finished)
		},
			403, "timestamp header is neither Unix time nor RFC 3339", 0},
		{"timestamp unparseable, allowed by the source", func(t *testing.T) *http.Request {
			return signedRequest(t, "/lenient", testSecret, "yesterday", finished)
		}, 200, "", 1},
		{"milliseconds", func(t *testing.T) *http.Request {
			return signedRequest(t, "/webhook", testSecret, strconv.FormatInt(testNow.UnixMilli()-1500, 10), finished)
		}, 200, "", 1},
		{"RFC 3339 with microseconds", func(t *testing.T) *http.Request {
			return signedRequest(t, "/webhook", testSecret, testNow.Add(-time.Minute).Format("2006-01-02T15:04:05.000000+00:00"), finished)
		}, 200, "", 1},
		{"rotated secret", func(t *testing.T) *http.Request { return signedRequest(t, "/webhook", "old-secret", now, finished) },
			200, "", 1},
		{"no status", func(t *testing.T) *http.Request {
			return signedRequest(t, "/webhook", testSecret, now, `{"task_id":"t"}`)
		},
			422, `no "status"`, 0},
		{"empty object", func(t *testing.T) *http.Request { return signedRequest(t, "/webhook", testSecret, now, `{}`) },
			422, `no "status"`, 0},
		{"test ping", func(t *testing.T) *http.Request {
			return signedRequest(t, "/webhook", testSecret, now, `{"test": "ok"}`)
		},
			200, "", 0},
		{"unrouted status", func(t *testing.T) *http.Request {
			return signedRequest(t, "/webhook", testSecret, now, `{"task_id":"t","status":"created"}`)
		}, 200, "", 0},
		{"accepted", func(t *testing.T) *http.Request { return signedRequest(t, "/webhook", testSecret, now, finished) },
			200, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			h := newTestIngress(t, rec, func(c *config.Config) { c.Server.MaxBodyBytes = 8192 })
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tt.req(t))
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var answer struct {
				Error  *string `json:"error"`
				ID     string  `json:"id"`
				Routes *int    `json:"routes"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil {
				t.Fatalf("answer is not JSON: %v: %s", err, w.Body)
			}
			if tt.errPart != "" {
				if answer.Error == nil || !strings.Contains(*answer.Error, tt.errPart) {
					t.Errorf("error = %v, want it to contain %q", w.Body, tt.errPart)
				}
				if len(rec.got) != 0 {
					t.Errorf("a rejected webhook was delivered")
				}
				return
			}
			if answer.Error != nil || answer.Routes == nil || *answer.Routes != tt.routes || len(answer.ID) != 32 {
				t.Errorf("answer = %s, want an id and routes %d", w.Body, tt.routes)
			}
			if len(rec.got) != min(tt.routes, 1) {
				t.Errorf("%d deliveries, want %d", len(rec.got), min(tt.routes, 1))
			}
			if strings.Contains(w.Body.String(), testSecret) {
				t.Error("the answer contains the secret")
			}
		})
	}
}

func TestIngressDeliveryFailureIs503(t *testing.T) {
	rec := &recorder{fail: &delivery.NotConfirmed{Failed: map[string]error{"bus": errors.New("nats: timeout")}}}
	h := newTestIngress(t, rec, func(c *config.Config) { c.Server.RetryAfter = 1500 * time.Millisecond })
	w := httptest.NewRecorder()
	h.ServeHTTP(w, signedRequest(t, "/webhook", testSecret, strconv.FormatInt(testNow.Unix(), 10), `{"task_id":"t","status":"paused"}`))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", w.Code)
	}
	if got := w.Header().Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After = %q, want 2 (1.5s rounded up)", got)
	}
	if !strings.Contains(w.Body.String(), `sink \"bus\": nats: timeout`) {
		t.Errorf("body = %s", w.Body)
	}
	if h.Count(ResultUnavailable) != 1 || h.Count(ResultAccepted) != 0 {
		t.Errorf("counts: unavailable %d accepted %d", h.Count(ResultUnavailable), h.Count(ResultAccepted))
	}
}

func TestIngressRoutesDeliveries(t *testing.T) {
	rec := &recorder{}
	h := newTestIngress(t, rec, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, signedRequest(t, "/webhook", testSecret, strconv.FormatInt(testNow.Unix(), 10),
		`{"type":"agent.task.status_update","timestamp":"2026-11-26T11:59:00Z","payload":{"task_id":"t9","status":"stopped"}}`))
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if len(rec.got) != 1 {
		t.Fatalf("%d deliveries", len(rec.got))
	}
	got := rec.got[0]
	if want := []route.Delivery{{Sink: "bus", Target: "alerts.task.stopped"}}; len(got.deliveries) != 1 || got.deliveries[0] != want[0] {
		t.Errorf("deliveries = %v, want %v", got.deliveries, want)
	}
	if got.ev.TaskID != "t9" || got.ev.Status != "stopped" || got.ev.Source != "browser-use" {
		t.Errorf("event = %+v", got.ev)
	}
}

// TestIngressReplays: an event accepted moments ago is answered 200 and not
// delivered again, even with a new timestamp and signature; an event that
// was answered 503 is not remembered, so the sender's retry goes through.
func TestIngressReplays(t *testing.T) {
	rec := &recorder{}
	h := newTestIngress(t, rec, nil)
	body := `{"type":"agent.task.status_update","timestamp":"2026-11-26T11:59:00Z","payload":{"task_id":"t","status":"finished"}}`
	post := func(ts time.Time) (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, signedRequest(t, "/webhook", testSecret, strconv.FormatInt(ts.Unix(), 10), body))
		return w.Code, w.Body.String()
	}
	if code, _ := post(testNow); code != 200 {
		t.Fatal(code)
	}
	code, answer := post(testNow.Add(-time.Second))
	if code != 200 || !strings.Contains(answer, `"duplicate":true`) || len(rec.got) != 1 {
		t.Errorf("replay: %d %s, %d deliveries; want 200 duplicate and 1 delivery", code, answer, len(rec.got))
	}
	if h.Count(ResultDuplicate) != 1 {
		t.Errorf("duplicates counted: %d", h.Count(ResultDuplicate))
	}

	failing := &recorder{fail: errors.New("broker down")}
	h = newTestIngress(t, failing, nil)
	if code, _ := post(testNow); code != 503 {
		t.Fatalf("failing deliverer: %d", code)
	}
	failing.mu.Lock()
	failing.fail = nil
	failing.mu.Unlock()
	if code, answer := post(testNow); code != 200 || strings.Contains(answer, "duplicate") || len(failing.got) != 1 {
		t.Errorf("retry after a 503: %d %s, %d deliveries", code, answer, len(failing.got))
	}
}

// TestSpoolFullIs503: a full spool turns webhooks away with 503 and
// Retry-After, and takes them again once there is room.
func TestSpoolFullIs503(t *testing.T) {
	var mu sync.Mutex
	down := true
	sink := sinkFunc(func(context.Context, []sinks.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return errors.New("connection refused")
		}
		return nil
	})
	q, err := local.OpenQueue(t.TempDir(), local.Options{MaxEvents: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	cfg := testConfig(nil)
	retry := config.Retry{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxAge: time.Hour}
	spool := delivery.NewSpool(q, []config.Sink{{Name: "bus", Retry: retry}}, map[string]sinks.Sink{"bus": sink},
		delivery.Options{PublishTimeout: 5 * time.Second})
	spool.Start(context.Background())
	defer spool.Stop()
	h, err := New(cfg, Options{Router: route.New(cfg.Rules()), Deliverer: spool, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	post := func(task string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, signedRequest(t, "/webhook", testSecret, strconv.FormatInt(testNow.Unix(), 10),
			`{"task_id":"`+task+`","status":"finished"}`))
		return w
	}
	for _, task := range []string{"a", "b"} {
		if w := post(task); w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", task, w.Code, w.Body)
		}
	}
	w := post("c")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "spool is full") {
		t.Fatalf("full spool answered %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if h.Count(ResultSpoolFull) != 1 {
		t.Errorf("spool_full counted %d times", h.Count(ResultSpoolFull))
	}
	mu.Lock()
	down = false
	mu.Unlock()
	drain := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := spool.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	drain()
	if w := post("c"); w.Code != http.StatusOK {
		t.Fatalf("after draining: %d %s", w.Code, w.Body)
	}
	drain()
}

// sinkFunc is a Sink whose Publish is a function: fault injection.
type sinkFunc func(context.Context, []sinks.Message) error

func (f sinkFunc) Publish(ctx context.Context, batch []sinks.Message) error { return f(ctx, batch) }
func (f sinkFunc) Close(context.Context) error                              { return nil }

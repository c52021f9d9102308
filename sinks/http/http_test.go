package httpsink

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/sinks"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// openSink opens a sink for cfg until the test ends.
func openSink(t testing.TB, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// publishOne publishes one event to target and returns its error.
func publishOne(t testing.TB, s *Sink, target string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return sinks.MessageErr(s.Publish(ctx, []sinks.Message{sinktest.Event(target, "task-1", "evt-1")}), 0)
}

// outcome is how a Publish ended, as the spool sees it.
type outcome int

const (
	confirmed outcome = iota
	retryable
	permanent
)

func (o outcome) String() string { return [...]string{"confirmed", "retryable", "permanent"}[o] }

func classify(err error) outcome {
	switch {
	case err == nil:
		return confirmed
	case sinks.IsPermanent(err):
		return permanent
	}
	return retryable
}

// TestOutcomes answers a signed request with each status class and checks
// how the sink reports it: 2xx confirms; 408, 425, 429, 5xx and a
// redirect are retried (with Retry-After as the earliest retry); every
// other 4xx is permanent, quoting the status and the answer's first 512
// bytes.
func TestOutcomes(t *testing.T) {
	long := strings.Repeat("x", answerExcerpt) + "TAIL" // the tail must not show
	// now is the sink's clock, whole seconds, so an HTTP-date Retry-After
	// gives an exact delay.
	now := time.Now().Truncate(time.Second)
	tests := []struct {
		status     int
		header     map[string]string
		body       string
		want       outcome
		retryAfter time.Duration // with want == retryable; 0: none
		wantInErr  []string
	}{
		{status: 200, want: confirmed},
		{status: 204, want: confirmed},
		{status: 400, body: "bad event", want: permanent, wantInErr: []string{"400 Bad Request", `"bad event"`}},
		{status: 401, want: permanent, wantInErr: []string{"401 Unauthorized"}},
		{status: 404, want: permanent, wantInErr: []string{"404 Not Found"}},
		{status: 408, want: retryable, wantInErr: []string{"408 Request Timeout"}},
		{status: 410, want: permanent, wantInErr: []string{"410 Gone"}},
		{status: 422, body: long, want: permanent, wantInErr: []string{"422 Unprocessable Entity", `"` + strings.Repeat("x", answerExcerpt) + `"`}},
		{status: 425, want: retryable, wantInErr: []string{"425 Too Early"}},
		{status: 429, header: map[string]string{"Retry-After": "7"}, want: retryable, retryAfter: 7 * time.Second, wantInErr: []string{"429 Too Many Requests", "retry after 7s"}},
		{status: 500, want: retryable, wantInErr: []string{"500 Internal Server Error"}},
		{status: 503, header: map[string]string{"Retry-After": now.Add(90 * time.Second).UTC().Format(http.TimeFormat)}, want: retryable, retryAfter: 90 * time.Second},
		{status: 503, header: map[string]string{"Retry-After": "soon"}, want: retryable},
		{status: 302, header: map[string]string{"Location": "https://u:pw@elsewhere.example/hooks?token=abc"}, want: retryable,
			wantInErr: []string{"302 Found", "redirects are not followed", "https://u:xxxxx@elsewhere.example/hooks?…"}},
	}
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			rc.setAnswer(func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			})
			s := openSink(t, Config{Secret: secret})
			s.now = func() time.Time { return now }
			err := publishOne(t, s, rc.URL("/hook"))
			if got := classify(err); got != tt.want {
				t.Fatalf("answer %d: %v (%v), want %v", tt.status, got, err, tt.want)
			}
			for _, want := range tt.wantInErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("answer %d: error %q does not hold %q", tt.status, err, want)
				}
			}
			if strings.Contains(errText(err), "TAIL") || strings.Contains(errText(err), "token=abc") || strings.Contains(errText(err), "pw@") {
				t.Errorf("answer %d: the error shows more than it should: %v", tt.status, err)
			}
			if d := sinks.RetryAfter(err); d != tt.retryAfter {
				t.Errorf("answer %d: RetryAfter %v, want %v", tt.status, d, tt.retryAfter)
			}
		})
	}
	rc.setAnswer(nil)
	// Every request was signed; the redirect was not followed.
	if got := rc.received(t); len(got) != 0 {
		t.Errorf("the receiver recorded %d requests, want none (a redirect was followed?)", len(got))
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestNoAnswer: a refused connection, and a receiver slower than the
// timeout, are retryable.
func TestNoAnswer(t *testing.T) {
	secret := newSecret(t)
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		err = publishOne(t, openSink(t, Config{Secret: secret}), "http://"+addr+"/hook")
		if classify(err) != retryable || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("connection refused: %v, want a retryable error saying so", err)
		}
	})
	t.Run("slower than the timeout", func(t *testing.T) {
		rc := newReceiver(t, secret)
		release := rc.Hang()
		defer release()
		err := publishOne(t, openSink(t, Config{Secret: secret, Timeout: 100 * time.Millisecond}), rc.URL("/hook"))
		if classify(err) != retryable || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer within the timeout, 100ms") {
			t.Errorf("a receiver past the timeout: %v, want a retryable timeout", err)
		}
	})
	t.Run("no url", func(t *testing.T) {
		err := publishOne(t, openSink(t, Config{Secret: secret}), "")
		if classify(err) != permanent || !errors.Is(err, errNoURL) {
			t.Errorf("no url anywhere: %v, want errNoURL, permanent", err)
		}
	})
}

// TestRetryAfter reads both Retry-After forms and refuses the rest.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{" 120 ", 2 * time.Minute, true},
		{"99999999999999999999", maxRetryAfter, true},
		{"Fri, 04 Dec 2026 12:01:00 GMT", time.Minute, true},
		{"Fri, 04 Dec 2026 11:00:00 GMT", 0, true}, // past: retry now
		{"", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"tomorrow", 0, false},
	}
	for _, tt := range tests {
		if got, ok := retryAfter(tt.in, now); got != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestRotation signs with two secrets: a receiver that knows either one
// verifies the request, with the Standard Webhooks library; one that
// knows neither does not.
func TestRotation(t *testing.T) {
	oldSecret, newSecret, other := newSecret(t), newSecret(t), newSecret(t)
	rc := newReceiver(t, other, oldSecret) // records, whichever verifies
	s := openSink(t, Config{Secret: oldSecret, MoreSecrets: []string{newSecret}})
	if err := publishOne(t, s, rc.URL("/hook")); err != nil {
		t.Fatal(err)
	}
	got := rc.received(t)
	if len(got) != 1 {
		t.Fatalf("received %d requests, want 1", len(got))
	}
	r := got[0]
	if sigs := strings.Split(r.Header.Get("webhook-signature"), " "); len(sigs) != 2 {
		t.Errorf("webhook-signature %q, want two space-separated signatures", r.Header.Get("webhook-signature"))
	}
	for _, tt := range []struct {
		name, secret string
		ok           bool
	}{{"old", oldSecret, true}, {"new", newSecret, true}, {"unrelated", other, false}} {
		err := verifier(t, tt.secret).Verify(r.Body, r.Header)
		if (err == nil) != tt.ok {
			t.Errorf("verify with the %s secret: %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	if r.Header.Get("webhook-id") != "evt-1" {
		t.Errorf("webhook-id %q, want the event id evt-1", r.Header.Get("webhook-id"))
	}
}

// TestStaticHeaders: the configured headers arrive, beside the sink's.
func TestStaticHeaders(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	s := openSink(t, Config{Secret: secret, Headers: []string{"Authorization: Bearer t0ken", "x-tenant:acme  ", "User-Agent: mine"}})
	if err := publishOne(t, s, rc.URL("/hook")); err != nil {
		t.Fatal(err)
	}
	got := rc.received(t)
	if len(got) != 1 {
		t.Fatalf("received %d requests, want 1", len(got))
	}
	for k, want := range map[string]string{"Authorization": "Bearer t0ken", "X-Tenant": "acme", "User-Agent": "mine", "Content-Type": sinks.StructuredContentType} {
		if h := got[0].Header.Get(k); h != want {
			t.Errorf("header %s %q, want %q", k, h, want)
		}
	}
}

// TestConcurrencyBound: no more than max_concurrency requests to one URL
// are in flight at once, and a batch larger than that still completes.
func TestConcurrencyBound(t *testing.T) {
	const limit, n = 3, 12
	secret := newSecret(t)
	rc := newReceiver(t, secret)
	var (
		mu             sync.Mutex
		inFlight, most int
	)
	rc.setAnswer(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // lets others pile up, were they allowed
		mu.Lock()
		inFlight--
		mu.Unlock()
	})
	s := openSink(t, Config{Secret: secret, MaxConcurrency: limit})
	batch := make([]sinks.Message, n)
	for i := range batch {
		batch[i] = sinktest.Event(rc.URL("/hook"), "k", "evt-"+string(rune('a'+i)))
	}
	if err := s.Publish(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if most > limit || most == 0 {
		t.Errorf("%d requests were in flight at once, want 1 to %d", most, limit)
	}
	if len(s.limits.slots) != 0 {
		t.Errorf("the limiter keeps %d URLs after the batch, want none", len(s.limits.slots))
	}
}

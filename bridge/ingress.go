package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Header names Browser Use signs its deliveries with.
const (
	HeaderTimestamp = "X-Browser-Use-Timestamp"
	HeaderSignature = "X-Browser-Use-Signature"
)

// Result classifies how a webhook was answered.
type Result int

// Results, one per kind of answer.
const (
	ResultAccepted     Result = iota // 200, routed and kept
	ResultUnrouted                   // 200, verified but no route matched
	ResultTest                       // 200, a verified test delivery
	ResultNotFound                   // 404
	ResultBadMethod                  // 405
	ResultTooLarge                   // 413
	ResultBadRequest                 // 400
	ResultBadSignature               // 403, signature mismatch
	ResultStale                      // 403, timestamp outside tolerance or unparseable
	ResultNoStatus                   // 422
	ResultUnavailable                // 503, a sink did not confirm
	ResultSpoolFull                  // 503, the spool is full
	ResultDuplicate                  // 200, an event accepted moments ago, not published again
	ResultOverloaded                 // 503, too many requests at once
	numResults
)

var resultNames = [numResults]string{
	"accepted", "unrouted", "test", "not_found", "bad_method", "too_large",
	"bad_request", "bad_signature", "stale", "no_status", "unavailable", "spool_full",
	"duplicate", "overloaded",
}

func (r Result) String() string { return resultNames[r] }

// Ingress is the webhook HTTP handler: it verifies, normalizes, routes and
// delivers each request, and answers only once the event is kept.
//
// Checks run in this order, each with its own status and a JSON body
// {"error": "..."}: unknown path 404; method other than POST 405; body over
// the limit 413; a missing or repeated signature header 400; body not JSON,
// not UTF-8 or not an object 400; signature mismatch 403; timestamp outside
// tolerance 403; no status 422; a sink that did not confirm 503 with
// Retry-After. Accepted: 200 {"id": "<event id>", "routes": N}.
type Ingress struct {
	sources      map[string]*source // by path
	router       *Router
	deliverer    Deliverer
	log          *slog.Logger
	now          func() time.Time
	maxBody      int64
	maxDepth     int
	maxDigits    int
	publishLimit time.Duration
	retryAfter   string

	metrics *Metrics // nil: counted in results only

	canon   sync.Pool // *Canonicalizer
	bufs    sync.Pool // *bytes.Buffer
	results [numResults]atomic.Uint64
}

type source struct {
	name          string
	answered      [numResults]prometheus.Counter // nil without metrics
	verifier      *Verifier
	tolerance     time.Duration
	allowUnparsed bool
	replay        *replayCache  // nil: off
	shared        *sharedReplay // with server.replay_cache: nats; nil: this replica only
}

// NewIngress builds the handler for cfg's sources. now is the clock (nil:
// time.Now).
func NewIngress(cfg *Config, router *Router, d Deliverer, log *slog.Logger, now func() time.Time) (*Ingress, error) {
	if now == nil {
		now = time.Now
	}
	h := &Ingress{
		sources:      make(map[string]*source, len(cfg.Sources)),
		router:       router,
		deliverer:    d,
		log:          log,
		now:          now,
		maxBody:      cfg.Server.MaxBodyBytes,
		maxDepth:     cfg.Server.MaxJSONDepth,
		maxDigits:    cfg.Server.MaxNumberDigits,
		publishLimit: cfg.Server.PublishTimeout,
		retryAfter:   strconv.Itoa(int((cfg.Server.RetryAfter + time.Second - 1) / time.Second)),
	}
	h.canon.New = func() any { return &Canonicalizer{MaxDepth: h.maxDepth, MaxIntDigits: h.maxDigits} }
	h.bufs.New = func() any { return new(bytes.Buffer) }
	for _, sc := range cfg.Sources {
		secrets := make([][]byte, len(sc.Secrets))
		for i, s := range sc.Secrets {
			secrets[i] = []byte(s)
		}
		v, err := NewVerifier(secrets)
		if err != nil {
			return nil, fmt.Errorf("source %q: %w", sc.Name, err)
		}
		src := &source{name: sc.Name, verifier: v, tolerance: *sc.Tolerance, allowUnparsed: sc.AllowUnparsedTimestamp}
		if window := replayWindow(cfg, sc); window > 0 {
			src.replay = newReplayCache(window, cfg.Server.ReplayCacheSize)
		}
		h.sources[sc.Path] = src
	}
	return h, nil
}

// replayWindow is how long src's accepted ids are remembered: its
// tolerance, or server.replay_window where the tolerance is 0.
func replayWindow(cfg *Config, src SourceConfig) time.Duration {
	window := *src.Tolerance
	if window == 0 && cfg.Server.ReplayWindow != nil {
		window = *cfg.Server.ReplayWindow
	}
	return window
}

// setMetrics makes h count into m, with each source's counters looked up
// once here rather than on every request.
func (h *Ingress) setMetrics(m *Metrics) {
	h.metrics = m
	for _, src := range h.sources {
		for r := range numResults {
			src.answered[r] = m.webhooks.WithLabelValues(src.name, r.String())
		}
	}
}

// Count returns how many webhooks were answered with result r.
func (h *Ingress) Count(r Result) uint64 { return h.results[r].Load() }

// ServeHTTP implements http.Handler.
func (h *Ingress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	src, ok := h.sources[r.URL.Path]
	if !ok {
		h.reject(w, r, nil, ResultNotFound, http.StatusNotFound, fmt.Sprintf("no webhook source at path %q", r.URL.Path))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.reject(w, r, src, ResultBadMethod, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: webhooks are POSTed", r.Method))
		return
	}
	if r.ContentLength > h.maxBody {
		h.rejectTooLarge(w, r, src)
		return
	}

	buf := h.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer h.bufs.Put(buf)
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.maxBody)); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			h.rejectTooLarge(w, r, src)
			return
		}
		h.reject(w, r, src, ResultBadRequest, http.StatusBadRequest, "could not read the body: "+err.Error())
		return
	}
	body := buf.Bytes()

	ts, msg := singleHeader(r, HeaderTimestamp)
	if msg == "" {
		_, msg = singleHeader(r, HeaderSignature)
	}
	if msg != "" {
		h.reject(w, r, src, ResultBadRequest, http.StatusBadRequest, msg)
		return
	}
	sig := r.Header.Get(HeaderSignature)

	cz := h.canon.Get().(*Canonicalizer)
	defer h.canon.Put(cz)
	c, err := cz.Canonicalize(body)
	if err != nil {
		h.reject(w, r, src, ResultBadRequest, http.StatusBadRequest, "body is not valid JSON: "+err.Error())
		return
	}
	if !c.Object {
		h.reject(w, r, src, ResultBadRequest, http.StatusBadRequest, "body is not a JSON object")
		return
	}
	if !src.verifier.Verify(ts, c.JSON, sig) {
		h.reject(w, r, src, ResultBadSignature, http.StatusForbidden, "signature does not match: check the source's secret")
		return
	}
	received := h.now()
	if msg := checkFreshness(ts, received, src); msg != "" {
		h.reject(w, r, src, ResultStale, http.StatusForbidden, msg)
		return
	}

	ev, err := Normalize(src.name, ts, received, c, ParseTrace(r.Header.Get("Traceparent"), r.Header.Get("Tracestate")))
	if err != nil {
		h.reject(w, r, src, ResultNoStatus, http.StatusUnprocessableEntity, err.Error())
		return
	}
	if ev.Test {
		h.count(src, ResultTest)
		h.log.Info("test delivery verified", "source", src.name, "id", ev.ID)
		writeAccepted(w, ev.ID, 0, true)
		return
	}
	// A sender that hangs up mid-delivery does not cancel it: the event
	// may be stored already, and finishing costs less than a half-known
	// outcome. publishLimit still bounds the wait. (Detaching also saves
	// registering with the request's context on every delivery.)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.publishLimit)
	defer cancel()
	if src.seen(ctx, ev.ID, received) {
		// Browser Use retrying, or someone replaying: it is kept already.
		h.count(src, ResultDuplicate)
		h.log.Debug("repeat of an accepted event; not published again", "source", src.name, "id", ev.ID)
		writeAnswer(w, ev.ID, 0, `,"duplicate":true`)
		return
	}
	deliveries, routes := h.router.Route(ev)
	if len(deliveries) == 0 {
		src.remember(ev.ID, received)
		h.count(src, ResultUnrouted)
		h.log.Info("event matched no route", "source", src.name, "id", ev.ID, "status", ev.Status)
		writeAccepted(w, ev.ID, 0, false)
		return
	}
	if err := h.deliverer.Deliver(ctx, ev, deliveries); err != nil {
		w.Header().Set("Retry-After", h.retryAfter)
		if IsFull(err) {
			h.count(src, ResultSpoolFull)
		} else {
			h.count(src, ResultUnavailable)
		}
		h.log.Warn("event not delivered; answered 503 so the sender retries",
			"source", src.name, "id", ev.ID, "status", ev.Status, "err", err)
		writeError(w, http.StatusServiceUnavailable, "event not delivered, retry later: "+err.Error())
		return
	}
	src.remember(ev.ID, received)
	h.count(src, ResultAccepted)
	if h.metrics != nil {
		status := ev.Status
		if !h.router.Names(status) {
			status = "other" // an open string: keep the label bounded
		}
		for _, r := range routes {
			h.metrics.events.WithLabelValues(r, status).Inc()
		}
	}
	writeAccepted(w, ev.ID, len(routes), false)
}

// seen reports whether id was accepted within the replay window: by this
// replica, or with server.replay_cache: nats by any.
func (s *source) seen(ctx context.Context, id string, now time.Time) bool {
	if s.replay == nil {
		return false
	}
	if s.replay.contains(id, now) {
		return true
	}
	if s.shared != nil && s.shared.seen(ctx, id, s.replay.window, now) {
		s.replay.add(id, now)
		return true
	}
	return false
}

func (s *source) remember(id string, now time.Time) {
	if s.replay != nil {
		s.replay.add(id, now)
		if s.shared != nil {
			s.shared.remember(id, now)
		}
	}
}

// shareReplay makes every source that remembers ids also look them up in
// and record them to the bucket.
func (h *Ingress) shareReplay(b *replayBucket) {
	for _, src := range h.sources {
		if src.replay != nil {
			src.shared = &sharedReplay{bucket: b, log: h.log.With("source", src.name)}
		}
	}
}

// singleHeader returns the one value of header name, or a message saying
// why there is not exactly one.
func singleHeader(r *http.Request, name string) (string, string) {
	vs := r.Header.Values(name)
	switch {
	case len(vs) == 0 || vs[0] == "":
		return "", "missing header " + name
	case len(vs) > 1:
		return "", "header " + name + " given more than once"
	}
	return vs[0], ""
}

// checkFreshness returns why ts is not acceptable for src, or "".
func checkFreshness(ts string, now time.Time, src *source) string {
	t, err := ParseTimestamp(ts)
	if err != nil {
		if src.allowUnparsed {
			return ""
		}
		return "timestamp header is neither Unix time nor RFC 3339"
	}
	if src.tolerance == 0 {
		return ""
	}
	skew := now.Sub(t)
	switch {
	case skew > src.tolerance:
		return fmt.Sprintf("timestamp is %s old, more than the tolerance of %s", skew.Round(time.Second), src.tolerance)
	case -skew > src.tolerance:
		return fmt.Sprintf("timestamp is %s in the future, more than the tolerance of %s", (-skew).Round(time.Second), src.tolerance)
	}
	return ""
}

func (h *Ingress) rejectTooLarge(w http.ResponseWriter, r *http.Request, src *source) {
	// Closing the connection stops a client that is still sending.
	w.Header().Set("Connection", "close")
	h.reject(w, r, src, ResultTooLarge, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is larger than the limit of %d bytes", h.maxBody))
}

// count records one answer; src is nil when no source has the path.
func (h *Ingress) count(src *source, res Result) {
	h.results[res].Add(1)
	switch {
	case h.metrics == nil:
	case src == nil:
		h.metrics.webhooks.WithLabelValues("none", res.String()).Inc()
	default:
		src.answered[res].Inc()
	}
}

func (h *Ingress) reject(w http.ResponseWriter, r *http.Request, src *source, res Result, status int, msg string) {
	h.count(src, res)
	name := ""
	if src != nil {
		name = src.name
	}
	h.log.Info("webhook rejected", "status", status, "reason", msg, "source", name, "remote", r.RemoteAddr)
	writeError(w, status, msg)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	b := make([]byte, 0, len(msg)+16)
	b = append(b, `{"error":`...)
	b = AppendQuote(b, msg)
	b = append(b, '}', '\n')
	writeJSON(w, status, b)
}

func writeAccepted(w http.ResponseWriter, id string, routes int, test bool) {
	extra := ""
	if test {
		extra = `,"test":true`
	}
	writeAnswer(w, id, routes, extra)
}

// writeAnswer writes a 200 {"id": ..., "routes": N} plus extra members.
func writeAnswer(w http.ResponseWriter, id string, routes int, extra string) {
	b := make([]byte, 0, 80)
	b = append(b, `{"id":`...)
	b = AppendQuote(b, id)
	b = append(b, `,"routes":`...)
	b = strconv.AppendInt(b, int64(routes), 10)
	b = append(b, extra...)
	b = append(b, '}', '\n')
	writeJSON(w, http.StatusOK, b)
}

// Answer header values, shared by every answer: assigning them directly
// skips Header.Set's canonicalization and a slice per header. net/http
// copies them before writing, and adds Content-Length itself to an answer
// written in one piece under its 2 KiB buffer, as these are.
var (
	contentTypeJSON = []string{"application/json"}
	noSniff         = []string{"nosniff"}
)

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Package ingress is the webhook HTTP handler: it verifies each delivery
// (package signature), normalizes it (package event), routes it (package
// route) and hands it to a Deliverer, answering 200 only once the event is
// kept. It also remembers accepted event ids for a while, so that a
// sender's retry is answered without being published again.
package ingress

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

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/metrics"
	"github.com/hookbridge/hookbridge/bridge/queue"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/bridge/signature"
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
	ResultSlowBody                   // 408, body slower than server.body_read_timeout and min_body_rate allow
	numResults
)

var resultNames = [numResults]string{
	"accepted", "unrouted", "test", "not_found", "bad_method", "too_large",
	"bad_request", "bad_signature", "stale", "no_status", "unavailable", "spool_full",
	"duplicate", "overloaded", "slow_body",
}

func (r Result) String() string { return resultNames[r] }

// Handler is the webhook HTTP handler: it verifies, normalizes, routes and
// delivers each request, and answers only once the event is kept.
//
// Checks run in this order, each with its own status and a JSON body
// {"error": "..."}: unknown path 404; method other than POST 405; body over
// the limit 413; a missing or repeated signature header 400; body not JSON,
// not UTF-8 or not an object 400; signature mismatch 403; timestamp outside
// tolerance 403; no status 422; a sink that did not confirm 503 with
// Retry-After. Accepted: 200 {"id": "<event id>", "routes": N}.
type Handler struct {
	sources      map[string]*source // by path
	router       Router
	deliverer    Deliverer
	log          *slog.Logger
	now          func() time.Time
	maxBody      int64
	maxDepth     int
	maxDigits    int
	publishLimit time.Duration
	retryAfter   string
	budget       *Budget // nil: no budget (a handler tested alone)

	metrics  *metrics.Metrics
	noSource [numResults]prometheus.Counter // answers to a path no source has
	rejects  *rejectLog                     // samples the rejection lines

	canon   sync.Pool // *signature.Canonicalizer
	bufs    sync.Pool // *bytes.Buffer
	results [numResults]atomic.Uint64
}

// A Deliverer hands a routed event to its sinks. Deliver returns nil only
// when the event is kept: confirmed by every sink, or durably queued.
// package delivery implements it.
type Deliverer interface {
	Deliver(ctx context.Context, ev *event.Event, deliveries []route.Delivery) error
}

// A Router matches events to deliveries; *route.Router is one.
type Router interface {
	// Route returns ev's deliveries and the names of the routes that
	// matched.
	Route(ev *event.Event) (deliveries []route.Delivery, routes []string)
	// Names reports whether some route names status (not counting "*").
	Names(status string) bool
}

// SharedReplay remembers accepted ids for every replica (server.replay_cache:
// nats); the JetStream spool's replay bucket is one.
type SharedReplay interface {
	// Lookup returns when id was accepted, by any replica.
	Lookup(ctx context.Context, id string) (at time.Time, found bool, err error)
	// Remember records id as accepted at at, without waiting.
	Remember(id string, at time.Time) error
}

// Options are a Handler's parts beside the config.
type Options struct {
	Router    Router
	Deliverer Deliverer
	// Metrics counts the answers and accepted events; nil counts nothing.
	Metrics *metrics.Metrics
	// Shared, when not nil, is asked about ids this replica has not seen.
	Shared SharedReplay
	// Previous is the handler this one replaces on a reload: the ids it
	// remembers carry over, or a retry after the reload would be
	// published again.
	Previous *Handler
	// Budget bounds the requests in flight; the service shares one
	// across reloads. nil bounds nothing.
	Budget *Budget
	// Log receives a line per refused and per unrouted webhook.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

type source struct {
	name          string
	answered      [numResults]prometheus.Counter
	verifier      *signature.Verifier
	tolerance     time.Duration
	allowUnparsed bool
	replay        *replayCache // nil: off
	shared        SharedReplay // with server.replay_cache: nats; nil: this replica only
}

// New builds the handler for cfg's sources.
func New(cfg *config.Config, opts Options) (*Handler, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		sources:      make(map[string]*source, len(cfg.Sources)),
		router:       opts.Router,
		deliverer:    opts.Deliverer,
		log:          opts.Log,
		now:          opts.Now,
		maxBody:      cfg.Server.MaxBodyBytes,
		maxDepth:     cfg.Server.MaxJSONDepth,
		maxDigits:    cfg.Server.MaxNumberDigits,
		publishLimit: cfg.Server.PublishTimeout,
		retryAfter:   strconv.Itoa(int((cfg.Server.RetryAfter + time.Second - 1) / time.Second)),
		metrics:      opts.Metrics,
		budget:       opts.Budget,
	}
	h.rejects = newRejectLog(opts.Log, opts.Now)
	if opts.Previous != nil {
		h.rejects = opts.Previous.rejects
	}
	h.canon.New = func() any { return &signature.Canonicalizer{MaxDepth: h.maxDepth, MaxIntDigits: h.maxDigits} }
	h.bufs.New = func() any { return new(bytes.Buffer) }
	// Each source's counters are looked up once here rather than on every
	// request.
	for r := range numResults {
		h.noSource[r] = opts.Metrics.Answered("none", r.String())
	}
	for _, sc := range cfg.Sources {
		secrets := make([][]byte, len(sc.Secrets))
		for i, s := range sc.Secrets {
			secrets[i] = []byte(s)
		}
		v, err := signature.NewVerifier(secrets)
		if err != nil {
			return nil, fmt.Errorf("source %q: %w", sc.Name, err)
		}
		src := &source{name: sc.Name, verifier: v, tolerance: *sc.Tolerance, allowUnparsed: sc.AllowUnparsedTimestamp}
		for r := range numResults {
			src.answered[r] = opts.Metrics.Answered(sc.Name, r.String())
		}
		if window := cfg.ReplayWindow(sc); window > 0 {
			src.replay = newReplayCache(window, cfg.Server.ReplayCacheSize)
			if old := opts.Previous.source(sc.Path); old != nil && old.name == src.name && old.replay != nil && old.replay.window == window {
				src.replay = old.replay
			}
			src.shared = opts.Shared
		}
		h.sources[sc.Path] = src
	}
	return h, nil
}

// source returns the source at path, nil if none (or h is nil).
func (h *Handler) source(path string) *source {
	if h == nil {
		return nil
	}
	return h.sources[path]
}

// Count returns how many webhooks were answered with result r.
func (h *Handler) Count(r Result) uint64 { return h.results[r].Load() }

// Shed answers a webhook the server has no room for: 503 with
// Retry-After, at once and without reading it, so an overload costs
// nothing.
func (h *Handler) Shed(w http.ResponseWriter, r *http.Request) {
	h.shed(w, r, h.sources[r.URL.Path], "too many webhooks at once; retry later")
}

// shed answers 503 with Retry-After and msg, counted as overloaded.
func (h *Handler) shed(w http.ResponseWriter, r *http.Request, src *source, msg string) {
	h.count(src, ResultOverloaded)
	w.Header().Set("Retry-After", h.retryAfter)
	WriteError(w, http.StatusServiceUnavailable, msg)
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	src, ok := h.sources[r.URL.Path]
	if !ok {
		h.reject(w, r, nil, ResultNotFound, http.StatusNotFound, fmt.Sprintf("no webhook source at path %q", clip(r.URL.Path)))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.reject(w, r, src, ResultBadMethod, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: webhooks are POSTed", clip(r.Method)))
		return
	}
	if r.ContentLength > h.maxBody {
		h.rejectTooLarge(w, r, src)
		return
	}

	// The body is read (within the budget) before a delivery slot is
	// taken, so a slow sender cannot hold one.
	body, done, ok := h.readBody(w, r, src)
	if !ok {
		return
	}
	defer done()

	ts, msg := singleHeader(r, signature.HeaderTimestamp)
	if msg == "" {
		_, msg = singleHeader(r, signature.HeaderSignature)
	}
	if msg != "" {
		h.reject(w, r, src, ResultBadRequest, http.StatusBadRequest, msg)
		return
	}
	sig := r.Header.Get(signature.HeaderSignature)

	cz := h.canon.Get().(*signature.Canonicalizer)
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

	ev, err := event.Normalize(src.name, ts, received, c, event.ParseTrace(r.Header.Get("Traceparent"), r.Header.Get("Tracestate")))
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
	if h.seen(ctx, src, ev.ID, received) {
		// Browser Use retrying, or someone replaying: it is kept already.
		h.count(src, ResultDuplicate)
		h.log.Debug("repeat of an accepted event; not published again", "source", src.name, "id", ev.ID)
		writeAnswer(w, ev.ID, 0, `,"duplicate":true`)
		return
	}
	deliveries, routes := h.router.Route(ev)
	if len(deliveries) == 0 {
		h.remember(src, ev.ID, received)
		h.count(src, ResultUnrouted)
		h.log.Info("event matched no route", "source", src.name, "id", ev.ID, "status", ev.Status)
		writeAccepted(w, ev.ID, 0, false)
		return
	}
	if err := h.deliverer.Deliver(ctx, ev, deliveries); err != nil {
		w.Header().Set("Retry-After", h.retryAfter)
		if errors.Is(err, queue.ErrFull) {
			h.count(src, ResultSpoolFull)
		} else {
			h.count(src, ResultUnavailable)
		}
		h.log.Warn("event not delivered; answered 503 so the sender retries",
			"source", src.name, "id", ev.ID, "status", ev.Status, "err", err)
		WriteError(w, http.StatusServiceUnavailable, "event not delivered, retry later: "+err.Error())
		return
	}
	h.remember(src, ev.ID, received)
	h.count(src, ResultAccepted)
	if h.metrics != nil {
		status := ev.Status
		if !h.router.Names(status) {
			status = "other" // an open string: keep the label bounded
		}
		for _, r := range routes {
			h.metrics.Accepted(r, status)
		}
	}
	writeAccepted(w, ev.ID, len(routes), false)
}

// seen reports whether id was accepted within src's replay window: by
// this replica, or with server.replay_cache: nats by any. A lookup that
// fails counts as not seen: the event is then delivered again, and the
// stream's and sinks' Nats-Msg-Id still drop the repeat within their
// windows.
func (h *Handler) seen(ctx context.Context, src *source, id string, now time.Time) bool {
	if src.replay == nil {
		return false
	}
	if src.replay.contains(id, now) {
		return true
	}
	if src.shared == nil {
		return false
	}
	at, found, err := src.shared.Lookup(ctx, id)
	if err != nil {
		h.log.Warn("replay bucket lookup failed; treating the event as new", "source", src.name, "id", id, "err", err)
		return false
	}
	if found && now.Sub(at) < src.replay.window {
		src.replay.add(id, now)
		return true
	}
	return false
}

// remember records id as accepted at now, here and, with a shared replay
// cache, for every replica (without waiting: a record that fails costs at
// most a repeat that the stream's Nats-Msg-Id drops).
func (h *Handler) remember(src *source, id string, now time.Time) {
	if src.replay == nil {
		return
	}
	src.replay.add(id, now)
	if src.shared != nil {
		if err := src.shared.Remember(id, now); err != nil {
			h.log.Warn("could not share an accepted id", "source", src.name, "id", id, "err", err)
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
	err := signature.CheckTimestamp(ts, now, src.tolerance)
	if err == nil || (src.allowUnparsed && errors.Is(err, signature.ErrTimestampFormat)) {
		return ""
	}
	return err.Error()
}

func (h *Handler) rejectTooLarge(w http.ResponseWriter, r *http.Request, src *source) {
	// Closing the connection stops a client that is still sending.
	w.Header().Set("Connection", "close")
	h.reject(w, r, src, ResultTooLarge, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is larger than the limit of %d bytes", h.maxBody))
}

// count records one answer; src is nil when no source has the path.
func (h *Handler) count(src *source, res Result) {
	h.results[res].Add(1)
	if src == nil {
		h.noSource[res].Inc()
	} else {
		src.answered[res].Inc()
	}
}

func (h *Handler) reject(w http.ResponseWriter, r *http.Request, src *source, res Result, status int, msg string) {
	h.count(src, res)
	name := ""
	if src != nil {
		name = src.name
	}
	if h.rejects.allow(res) {
		h.log.Info("webhook rejected", "status", status, "reason", msg, "source", name, "remote", r.RemoteAddr)
	}
	WriteError(w, status, msg)
}

// WriteError answers status with the JSON body {"error": msg}, as every
// refusal of hookbridge's listeners is answered.
func WriteError(w http.ResponseWriter, status int, msg string) {
	b := make([]byte, 0, len(msg)+16)
	b = append(b, `{"error":`...)
	b = signature.AppendQuote(b, msg)
	b = append(b, '}', '\n')
	WriteJSON(w, status, b)
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
	b = signature.AppendQuote(b, id)
	b = append(b, `,"routes":`...)
	b = strconv.AppendInt(b, int64(routes), 10)
	b = append(b, extra...)
	b = append(b, '}', '\n')
	WriteJSON(w, http.StatusOK, b)
}

// Answer header values, shared by every answer: assigning them directly
// skips Header.Set's canonicalization and a slice per header. net/http
// copies them before writing, and adds Content-Length itself to an answer
// written in one piece under its 2 KiB buffer, as these are.
var (
	contentTypeJSON = []string{"application/json"}
	noSniff         = []string{"nosniff"}
)

// WriteJSON answers status with body, a JSON document.
func WriteJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

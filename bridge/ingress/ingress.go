// Package ingress is the webhook HTTP handler: it verifies each delivery
// (package signature), normalizes it (package event), routes it (package
// route) and hands it to a Deliverer, answering 200 only once the event is
// kept. It also remembers accepted event ids for a while, so that a
// sender's retry is answered without being published again.
package ingress

import (
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
	"go.opentelemetry.io/otel/trace"

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
	budget       *Budget      // nil: no budget (a handler tested alone)
	tracer       trace.Tracer // nil: no spans, and no cost (trace.go)
	taskIDAttr   bool         // telemetry.task_id_attribute

	metrics  *metrics.Metrics
	noSource [numResults]prometheus.Counter // answers to a path no source has
	rejects  *rejectLog                     // samples the rejection lines
	conds    *conditionLog                  // counts and samples failing conditions

	canon   sync.Pool // *signature.Canonicalizer
	bufs    sync.Pool // *bodyRead
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
	// Route returns ev's deliveries, the names of the routes that matched
	// and the routes whose condition failed on it.
	Route(ev *event.Event) route.Routing
	// Names reports whether some route names status (not counting "*").
	Names(status string) bool
}

// SharedReplay lets the replicas accept each event id once
// (server.replay_cache: nats); the JetStream spool's replay bucket is one.
type SharedReplay interface {
	// Claim takes id for this replica at now, unless some replica
	// accepted it (and it is not expired) or claimed it less than
	// abandonAfter ago.
	Claim(ctx context.Context, id string, now time.Time, abandonAfter time.Duration) (queue.ReplayClaim, error)
	// Wait returns once the claim at revision rev on id is settled.
	Wait(ctx context.Context, id string, rev uint64) error
	// Accept records id as kept until until, without waiting.
	Accept(id string, until time.Time) error
	// Release drops this replica's claim at revision rev on id.
	Release(ctx context.Context, id string, rev uint64) error
}

// Options are a Handler's parts beside the config.
type Options struct {
	Router    Router
	Deliverer Deliverer
	// Metrics counts the answers and accepted events; nil counts nothing.
	Metrics *metrics.Metrics
	// Shared, when not nil, is where a copy claims an id this replica
	// has not accepted, so that one replica delivers it.
	Shared SharedReplay
	// Previous is the handler this one replaces on a reload: the ids it
	// remembers carry over, or a retry after the reload would be
	// published again.
	Previous *Handler
	// Budget bounds the requests in flight; the service shares one
	// across reloads. nil bounds nothing.
	Budget *Budget
	// Tracer, when not nil, traces each webhook (trace.go); nil traces
	// nothing and costs nothing.
	Tracer trace.Tracer
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
		tracer:       opts.Tracer,
		taskIDAttr:   cfg.Telemetry.TaskIDAttribute,
	}
	h.rejects = newRejectLog(opts.Log, opts.Now)
	var prevConds *conditionLog
	if opts.Previous != nil {
		h.rejects, prevConds = opts.Previous.rejects, opts.Previous.conds
	}
	h.conds = newConditionLog(cfg, opts.Metrics, opts.Log, opts.Now, prevConds)
	h.canon.New = func() any { return &signature.Canonicalizer{MaxDepth: h.maxDepth, MaxIntDigits: h.maxDigits} }
	h.bufs.New = func() any { return &bodyRead{h: h} }
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
	h.count(w, src, ResultOverloaded)
	w.Header().Set("Retry-After", h.retryAfter)
	WriteError(w, http.StatusServiceUnavailable, msg)
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.tracer != nil {
		h.serveTraced(w, r)
		return
	}
	h.serve(w, r)
}

// serve answers r; traced, w is a *tracedWriter and r's context holds its
// server span.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
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
	br := h.readBody(w, r, src)
	if br == nil {
		return
	}
	defer br.done()
	body := br.p

	var vspan trace.Span
	if h.tracer != nil {
		_, vspan = h.startChild(w, r.Context(), SpanVerify)
	}
	ts, msg := singleHeader(r, signature.HeaderTimestamp)
	var sig string
	if msg == "" {
		sig, msg = singleHeader(r, signature.HeaderSignature)
	}
	if msg != "" {
		h.reject(w, r, src, ResultBadRequest, http.StatusBadRequest, msg)
		return
	}

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
	endChild(vspan, false, ResultAccepted)

	tc := event.ParseTrace(r.Header.Get("Traceparent"), r.Header.Get("Tracestate"))
	if h.tracer != nil && tc.Parent == "" {
		tc = startingTrace(r.Context())
	}
	ev, err := event.Normalize(src.name, ts, received, c, tc)
	if err != nil {
		h.reject(w, r, src, ResultNoStatus, http.StatusUnprocessableEntity, err.Error())
		return
	}
	if h.tracer != nil {
		h.noteEvent(w, ev)
	}
	if ev.Test {
		h.count(w, src, ResultTest)
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
	cl := h.claim(ctx, src, ev.ID, ts, received)
	switch cl.outcome {
	case claimDuplicate:
		// Browser Use retrying, or someone replaying: it is kept already.
		h.count(w, src, ResultDuplicate)
		h.log.Debug("repeat of an accepted event; not published again", "source", src.name, "id", ev.ID)
		writeAnswer(w, ev.ID, 0, `,"duplicate":true`)
		return
	case claimWait:
		// An earlier copy is still being delivered and this one's time
		// ran out: not kept yet, so not a duplicate either.
		h.count(w, src, ResultUnavailable)
		h.log.Info("an earlier copy of the event outlasted this one's publish_timeout; answered 503 so the sender retries", "source", src.name, "id", ev.ID)
		w.Header().Set("Retry-After", h.retryAfter)
		WriteError(w, http.StatusServiceUnavailable, "an earlier copy of this event is still being delivered; retry later")
		return
	}
	routing := h.router.Route(ev)
	if len(routing.Failed) > 0 {
		h.conds.failed(src.name, ev, routing.Failed)
	}
	deliveries, routes := routing.Deliveries, routing.Routes
	if h.tracer != nil {
		h.noteRouted(w, len(routes), len(deliveries), len(routing.Failed))
	}
	if len(deliveries) == 0 {
		h.settle(src, cl, ev.ID, true)
		h.count(w, src, ResultUnrouted)
		h.log.Info("event matched no route", "source", src.name, "id", ev.ID, "status", ev.Status)
		writeAccepted(w, ev.ID, 0, false)
		return
	}
	dctx, dspan := ctx, trace.Span(nil)
	if h.tracer != nil {
		dctx, dspan = h.startChild(w, ctx, SpanDeliver)
	}
	err = h.deliver(dctx, src, cl, ev, deliveries)
	res := ResultAccepted
	if errors.Is(err, queue.ErrFull) {
		res = ResultSpoolFull
	} else if err != nil {
		res = ResultUnavailable
	}
	endChild(dspan, err != nil, res) // nil when untraced: nothing to end
	if err != nil {
		// Never remembered: the sender's retry (or a copy waiting now)
		// must be delivered.
		h.settle(src, cl, ev.ID, false)
		w.Header().Set("Retry-After", h.retryAfter)
		h.count(w, src, res)
		h.log.Warn("event not delivered; answered 503 so the sender retries",
			"source", src.name, "id", ev.ID, "status", ev.Status, "err", err)
		WriteError(w, http.StatusServiceUnavailable, "event not delivered, retry later: "+err.Error())
		return
	}
	h.settle(src, cl, ev.ID, true)
	h.count(w, src, ResultAccepted)
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

// A claim is one copy's hold on its event id: at most one copy of an
// event is delivered at a time, per replica (the replay cache's in-flight
// table) and, with server.replay_cache: nats, across replicas (a claim in
// the replay bucket). Copies arriving meanwhile wait for its outcome:
// duplicate if it was kept, their own turn if not.
type claim struct {
	outcome claimResult
	key     replayKey
	until   int64  // remember the id until then (Unix ns), if kept
	held    bool   // this copy holds the local claim: settle it
	rev     uint64 // revision of its claim in the replay bucket; 0: none
}

// retention is until when src remembers an id first received at received
// under signed timestamp ts: the first moment a copy of that delivery
// fails the freshness check (ts + tolerance, which may be later than
// received + tolerance when the sender's clock runs ahead), and never
// sooner than the window from receipt. With tolerance 0, or an
// unparseable timestamp let through by allow_unparsed_timestamp, no
// moment fails the check, and the window from receipt is all there is.
func (src *source) retention(ts string, received time.Time) int64 {
	until := received.UnixNano() + int64(src.replay.window)
	if src.tolerance > 0 {
		if t, err := signature.ParseTimestamp(ts); err == nil {
			// +1: the check lets through a skew of exactly the tolerance.
			until = max(until, t.UnixNano()+int64(src.tolerance)+1)
		}
	}
	return until
}

// abandonAfter is how old another replica's claim must be to be taken
// over: its holder gives up after publishLimit, so a claim still pending
// twice that long (the second for clock skew between replicas and a
// confirmation in flight) belongs to a replica that died or lost NATS.
func (h *Handler) abandonAfter() time.Duration { return 2 * h.publishLimit }

// claim takes id for this copy, or waits (within ctx) for the copy that
// holds it. A replay bucket that fails does not stop delivery: the copy
// proceeds on its local claim, and the stream's and sinks' Nats-Msg-Id
// drop a repeat from another replica within their windows.
func (h *Handler) claim(ctx context.Context, src *source, id, ts string, received time.Time) claim {
	if src.replay == nil {
		return claim{outcome: claimed}
	}
	c := claim{key: keyOf(id), until: src.retention(ts, received)}
	for {
		res, wait, extended := src.replay.claim(c.key, received.UnixNano(), c.until)
		switch res {
		case claimDuplicate:
			if extended && src.shared != nil {
				// This copy passes the freshness check for longer than the
				// first: other replicas must remember it as long.
				h.accept(src, id, c.until)
			}
			c.outcome = claimDuplicate
			return c
		case claimWait:
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				c.outcome = claimWait
				return c
			}
		}
		break
	}
	c.held = true
	if src.shared == nil {
		return c
	}
	for {
		sc, err := src.shared.Claim(ctx, id, received, h.abandonAfter())
		if err == nil && sc.Pending != 0 {
			if err = src.shared.Wait(ctx, id, sc.Pending); err == nil {
				continue
			}
		}
		switch {
		case err == nil && sc.Rev != 0:
			c.rev = sc.Rev
		case err == nil: // kept by another replica
			src.replay.settle(c.key, true, received.UnixNano(), max(c.until, sc.Until.UnixNano()))
			if c.until > sc.Until.UnixNano() {
				h.accept(src, id, c.until)
			}
			c.held, c.outcome = false, claimDuplicate
		case ctx.Err() != nil:
			// Another replica is still delivering it (or NATS is slow);
			// this copy's time is up.
			src.replay.settle(c.key, false, 0, 0)
			c.held, c.outcome = false, claimWait
		default:
			h.log.Warn("replay bucket failed; delivering on this replica's claim only", "source", src.name, "id", id, "err", err)
		}
		return c
	}
}

// settle ends c: kept remembers its id, here and in the replay bucket;
// otherwise the claim is dropped, so that a waiting copy or the sender's
// retry delivers the event.
func (h *Handler) settle(src *source, c claim, id string, kept bool) {
	if !c.held {
		return
	}
	if c.rev != 0 {
		if kept {
			h.accept(src, id, c.until)
		} else {
			// The request's own context may be what ran out.
			ctx, cancel := context.WithTimeout(context.Background(), h.publishLimit)
			if err := src.shared.Release(ctx, id, c.rev); err != nil {
				h.log.Warn("replay bucket: could not release a failed event's claim; a retry waits for it to be abandoned",
					"source", src.name, "id", id, "err", err)
			}
			cancel()
		}
	}
	src.replay.settle(c.key, kept, h.now().UnixNano(), c.until)
}

// deliver hands ev to the Deliverer. Should it panic (net/http recovers
// the handler), the claim is dropped on the way out: left in place, it
// would hold every later copy of the event off for good.
func (h *Handler) deliver(ctx context.Context, src *source, cl claim, ev *event.Event, deliveries []route.Delivery) error {
	defer func() {
		if p := recover(); p != nil {
			h.settle(src, cl, ev.ID, false)
			panic(p)
		}
	}()
	return h.deliverer.Deliver(ctx, ev, deliveries)
}

// accept records id as kept in the replay bucket until until, without
// waiting: a record that fails leaves the claim to be abandoned.
func (h *Handler) accept(src *source, id string, until int64) {
	if err := src.shared.Accept(id, time.Unix(0, until)); err != nil {
		h.log.Warn("could not share an accepted id", "source", src.name, "id", id, "err", err)
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

// count records one answer (and its result on a traced request's span);
// src is nil when no source has the path.
func (h *Handler) count(w http.ResponseWriter, src *source, res Result) {
	if h.tracer != nil {
		h.noteResult(w, res)
	}
	h.results[res].Add(1)
	if src == nil {
		h.noSource[res].Inc()
	} else {
		src.answered[res].Inc()
	}
}

func (h *Handler) reject(w http.ResponseWriter, r *http.Request, src *source, res Result, status int, msg string) {
	h.count(w, src, res)
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

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookbridge/hookbridge/bridge/signature"
)

// delivery is one pre-signed webhook: signing happens before the clock
// starts, so the run measures the receiver, not the sender.
type delivery struct {
	body []byte
	ts   string
	sig  string
}

var statuses = [...]string{"initializing", "started", "paused", "stopped", "finished"}

// makeDeliveries signs n unique deliveries in the form Browser Use sends
// them, each task going through the five statuses in order. first
// numbers them so warm-up and measured sets never repeat a body.
func makeDeliveries(secret []byte, first, n int, flat bool, now time.Time) ([]delivery, error) {
	var cz signature.Canonicalizer
	ts := strconv.FormatInt(now.Unix(), 10)
	out := make([]delivery, n)
	for i := range out {
		k := first + i
		task := fmt.Sprintf("task-%07d", k/len(statuses))
		session := fmt.Sprintf("session-%07d", k/len(statuses))
		status := statuses[k%len(statuses)]
		var body string
		if flat {
			// The flat form carries no timestamp of its own; its id
			// hashes the header timestamp, so add a sequence to keep
			// every body distinct.
			body = fmt.Sprintf(`{"session_id": %q, "task_id": %q, "status": %q, "seq": %d}`, session, task, status, k)
		} else {
			at := now.Add(time.Duration(k) * time.Microsecond).UTC().Format("2006-01-02T15:04:05.000000+00:00")
			body = fmt.Sprintf(`{"type": "agent.task.status_update", "timestamp": %q, "payload": {"session_id": %q, "task_id": %q, "status": %q, "metadata": {"seq": %d}}}`,
				at, session, task, status, k)
		}
		c, err := cz.Canonicalize([]byte(body))
		if err != nil {
			return nil, fmt.Errorf("sample delivery %d: %w", k, err)
		}
		out[i] = delivery{body: []byte(body), ts: ts, sig: signature.Sign(secret, ts, c.JSON)}
	}
	return out, nil
}

// result is what one run against one receiver measured.
type result struct {
	sent      int
	elapsed   time.Duration
	latencies []time.Duration // sorted before percentile is asked
	statuses  map[int]int     // answers by HTTP status
	errors    int             // requests that got no answer
	firstErr  string
	acked     []string // event ids answered 200 (hookbridge only)
}

func (r *result) rps() float64 { return float64(r.sent) / r.elapsed.Seconds() }

// merge adds another round's figures to r.
func (r *result) merge(o *result) {
	r.sent += o.sent
	r.elapsed += o.elapsed
	r.latencies = append(r.latencies, o.latencies...)
	for code, n := range o.statuses {
		r.statuses[code] += n
	}
	r.errors += o.errors
	if r.firstErr == "" {
		r.firstErr = o.firstErr
	}
	r.acked = append(r.acked, o.acked...)
}

func (r *result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(p * float64(len(r.latencies)-1))
	return r.latencies[i]
}

func (r *result) non2xx() int {
	n := r.errors
	for code, c := range r.statuses {
		if code/100 != 2 {
			n += c
		}
	}
	return n
}

// generator sends deliveries over a fixed set of keep-alive connections.
type generator struct {
	url    string
	conns  int
	rate   float64 // events/s; 0 sends as fast as answers come back
	client *http.Client
}

func newGenerator(url string, conns int, rate float64) *generator {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &generator{url: url, conns: conns, rate: rate, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (g *generator) close() { g.client.CloseIdleConnections() }

// run sends every delivery once, from g.conns workers, and returns what
// it measured. With a rate, request i is due at start + i/rate and its
// latency counts from then, so a slow answer that delays the next
// requests shows in their latency too (no coordinated omission).
func (g *generator) run(ctx context.Context, ds []delivery) *result {
	lat := make([]time.Duration, len(ds))
	codes := make([]int, len(ds))
	ids := make([]string, len(ds))
	var next atomic.Int64
	var errMu sync.Mutex
	res := &result{sent: len(ds), statuses: map[int]int{}}
	var wg sync.WaitGroup
	start := time.Now()
	for range g.conns {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ds) || ctx.Err() != nil {
					return
				}
				due := time.Now()
				if g.rate > 0 {
					due = start.Add(time.Duration(float64(i) / g.rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
				}
				code, id, err := g.post(ctx, &ds[i])
				lat[i] = time.Since(due)
				codes[i] = code
				ids[i] = id
				if err != nil {
					errMu.Lock()
					if res.firstErr == "" {
						res.firstErr = err.Error()
					}
					errMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	for i, code := range codes {
		if code == 0 {
			res.errors++
			continue
		}
		res.statuses[code]++
		if code == http.StatusOK && ids[i] != "" {
			res.acked = append(res.acked, ids[i])
		}
	}
	res.latencies = lat // sorted once, in measure, over every round
	return res
}

// post sends one delivery and returns the answer's status and, for a 200
// from hookbridge, the event id it was accepted as.
func (g *generator) post(ctx context.Context, d *delivery) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url, bytes.NewReader(d.body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(signature.HeaderTimestamp, d.ts)
	req.Header.Set(signature.HeaderSignature, d.sig)
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, "", fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return resp.StatusCode, answerID(body), nil
}

// answerID extracts the id from hookbridge's {"id":"...",...} answer;
// ids are hex, so no unescaping is needed.
func answerID(body []byte) string {
	const key = `"id":"`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return ""
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

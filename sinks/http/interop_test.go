package httpsink_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookbridge/hookbridge/sinks"
	httpsink "github.com/hookbridge/hookbridge/sinks/http"
	"github.com/hookbridge/hookbridge/sinks/sinktest/cetest"
)

// The interop test POSTs cetest's events through the real sink, in each
// content mode, to a real HTTP server, and reads each request with the
// official CloudEvents SDK's HTTP binding (protocol/http.NewMessage, what
// its receivers wrap a request with): every attribute and the data must
// come back as hookbridge sent them, and the Standard Webhooks library
// must verify the signature. It is an external test package: cetest
// imports bridge/config, which imports this package to list its Kind.

// request is one request the endpoint got.
type request struct {
	path   string
	header http.Header
	body   []byte
}

// endpoint is a real HTTP server that records every request it gets
// and answers 200, stopped when the test ends.
type endpoint struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []request
}

func newEndpoint(t *testing.T) *endpoint {
	e := &endpoint{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		e.mu.Lock()
		e.reqs = append(e.reqs, request{path: r.URL.Path, header: r.Header.Clone(), body: body})
		e.mu.Unlock()
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) requests() []request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]request(nil), e.reqs...)
}

// arrives is the mode c arrives in from a sink set to mode: binary mode
// sends an event structured when an attribute value is empty or holds a
// character the HTTP binding percent-encodes (space, '"', '%', anything
// outside printable ASCII).
func arrives(c cetest.Case, mode sinks.ContentMode) sinks.ContentMode {
	if mode != sinks.Binary {
		return mode
	}
	for _, a := range c.Msg.Attrs {
		if a.Value == "" || strings.ContainsFunc(a.Value, func(r rune) bool { return r <= ' ' || r > '~' || r == '"' || r == '%' }) {
			return sinks.Structured
		}
	}
	return sinks.Binary
}

func encoding(mode sinks.ContentMode) binding.Encoding {
	if mode == sinks.Binary {
		return binding.EncodingBinary
	}
	return binding.EncodingStructured
}

// path is where c goes: dead letters keep their event's id, so they go
// to a URL of their own, as a dead_letter target does.
func path(c cetest.Case) string {
	if c.DeadLetter {
		return "/dead"
	}
	return "/events"
}

// checkHeaders checks the headers of r, the request of c in mode, beside
// what the SDK reads: structured carries no ce- header, binary one per
// attribute but datacontenttype, which is content-type; both carry the
// W3C trace context under its own names, the publish's when it has one
// (cetest.CheckTraceHeaders).
func checkHeaders(t *testing.T, c cetest.Case, mode sinks.ContentMode, h http.Header) {
	t.Helper()
	var ce int
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "ce-") {
			ce++
		}
	}
	want, wantCE := sinks.StructuredContentType, 0
	if mode == sinks.Binary {
		want, wantCE = c.Msg.Attr("datacontenttype"), len(c.Msg.Attrs)-1
	}
	if got := h.Get("content-type"); got != want || ce != wantCE {
		t.Errorf("%s: content-type %q and %d ce- headers, want %q and %d: %v", c.Name, got, ce, want, wantCE, h)
	}
	cetest.CheckTraceHeaders(t, c, func(name string) (string, bool) {
		v := h.Values(name)
		return strings.Join(v, ","), len(v) > 0
	})
}

func TestInterop(t *testing.T) {
	cases := cetest.Cases(t)
	for _, mode := range []sinks.ContentMode{sinks.Structured, sinks.Binary} {
		t.Run(string(mode), func(t *testing.T) {
			key := make([]byte, 32)
			rand.Read(key)
			secret := httpsink.SecretPrefix + base64.StdEncoding.EncodeToString(key)
			wh, err := standardwebhooks.NewWebhook(secret)
			if err != nil {
				t.Fatal(err)
			}
			e := newEndpoint(t)
			s, err := httpsink.New(httpsink.Config{Secret: secret, ContentMode: mode}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			batch := make([]sinks.Message, len(cases))
			for i, c := range cases {
				batch[i] = c.Msg
				batch[i].Target = e.srv.URL + path(c)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.Publish(ctx, batch); err != nil {
				t.Fatal(err)
			}
			// The batch's requests went concurrently: find each case's
			// by where it went and its webhook-id.
			got := map[string]request{}
			for _, r := range e.requests() {
				got[r.path+" "+r.header.Get("webhook-id")] = r
			}
			if len(got) != len(cases) {
				t.Errorf("the receiver accepted %d distinct requests, want %d", len(got), len(cases))
			}
			modes := map[sinks.ContentMode]int{}
			for _, c := range cases {
				r, ok := got[path(c)+" "+c.Msg.ID]
				if !ok {
					t.Errorf("%s: not received", c.Name)
					continue
				}
				m := arrives(c, mode)
				modes[m]++
				if err := wh.Verify(r.body, r.header); err != nil {
					t.Errorf("%s: the Standard Webhooks library does not verify the request: %v", c.Name, err)
				}
				checkHeaders(t, c, m, r.header)
				msg := cehttp.NewMessage(r.header, io.NopCloser(bytes.NewReader(r.body)))
				cetest.Check(t, c, cetest.Read(t, c.Name, msg, encoding(m)))
			}
			// Binary mode must really send some events binary, and
			// the fallback must really be exercised.
			if mode == sinks.Binary && (modes[sinks.Binary] == 0 || modes[sinks.Structured] == 0) {
				t.Errorf("binary mode sent %d events binary and %d structured: the cases no longer cover both", modes[sinks.Binary], modes[sinks.Structured])
			}
		})
	}
}

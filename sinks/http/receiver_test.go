package httpsink

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// newSecret returns a fresh Standard Webhooks secret: whsec_ and the
// base64 of 32 random bytes, as the spec's examples make them.
func newSecret(t testing.TB) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// verifier is the Standard Webhooks library's verifier for secret: the
// tests check signatures with it, never with the sink's code.
func verifier(t testing.TB, secret string) *standardwebhooks.Webhook {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("the Standard Webhooks library refuses the secret: %v", err)
	}
	return wh
}

// refuseMarker in a body makes the receiver answer 422: the test's
// message a receiver can never take.
const refuseMarker = `"hookbridgetestrefuse":true`

// recorded is one request the receiver accepted.
type recorded struct {
	Path   string
	Header http.Header
	Body   []byte
}

// receiver is a webhook endpoint on a real HTTP server (httptest, on
// loopback): it checks every request's signature with the Standard
// Webhooks library (401 when no secret verifies it), answers 422 to a
// body holding refuseMarker, can hang, and records what it accepted.
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	verifies []*standardwebhooks.Webhook
	got      []recorded
	unsigned []string      // why requests failed verification
	hold     chan struct{} // non-nil: requests wait until it is closed
	// answer, when set, answers instead of the default 200 (after the
	// signature check), for the outcome tests.
	answer func(w http.ResponseWriter, r *http.Request)
}

// newReceiver starts a receiver that accepts signatures by any of
// secrets, stopped when the test ends.
func newReceiver(t testing.TB, secrets ...string) *receiver {
	rc := &receiver{}
	for _, s := range secrets {
		rc.verifies = append(rc.verifies, verifier(t, s))
	}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

// newTLSReceiver is newReceiver over https, requiring a client
// certificate signed by clientCA. Its own certificate is httptest's,
// rc.srv.Certificate().
func newTLSReceiver(t testing.TB, clientCA *x509.Certificate, secrets ...string) *receiver {
	rc := &receiver{}
	for _, s := range secrets {
		rc.verifies = append(rc.verifies, verifier(t, s))
	}
	pool := x509.NewCertPool()
	pool.AddCert(clientCA)
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	rc.srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	// The refused handshakes are the test's point, not news.
	rc.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	rc.srv.StartTLS()
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	hold, answer, verifies := rc.hold, rc.answer, rc.verifies
	rc.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	var verr error
	for _, wh := range verifies {
		if verr = wh.Verify(body, r.Header); verr == nil {
			break
		}
	}
	if verr != nil {
		rc.mu.Lock()
		rc.unsigned = append(rc.unsigned, r.URL.Path+": "+verr.Error())
		rc.mu.Unlock()
		http.Error(w, "signature: "+verr.Error(), http.StatusUnauthorized)
		return
	}
	if bytes.Contains(body, []byte(refuseMarker)) {
		http.Error(w, "the test receiver refuses this event", http.StatusUnprocessableEntity)
		return
	}
	if answer != nil {
		answer(w, r)
		return
	}
	rc.mu.Lock()
	rc.got = append(rc.got, recorded{Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	rc.mu.Unlock()
}

// URL is the receiver's address with path.
func (rc *receiver) URL(path string) string { return rc.srv.URL + path }

// received returns what the receiver accepted, failing t if a request
// was not signed by one of its secrets.
func (rc *receiver) received(t testing.TB) []recorded {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, u := range rc.unsigned {
		t.Errorf("a request failed the Standard Webhooks verification: %s", u)
	}
	return append([]recorded(nil), rc.got...)
}

// setAnswer makes the receiver answer with f.
func (rc *receiver) setAnswer(f func(w http.ResponseWriter, r *http.Request)) {
	rc.mu.Lock()
	rc.answer = f
	rc.mu.Unlock()
}

// Hang makes requests wait, connections open, until release.
func (rc *receiver) Hang() (release func()) {
	hold := make(chan struct{})
	rc.mu.Lock()
	rc.hold = hold
	rc.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			rc.mu.Lock()
			rc.hold = nil
			rc.mu.Unlock()
			close(hold)
		})
	}
}

package signature_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/hookbridge/hookbridge/bridge/signature"
)

// A handler that accepts a delivery only if it is signed with the
// webhook's secret and fresh.
func Example() {
	secret := []byte("whsec_example")
	verifier, err := signature.NewVerifier([][]byte{secret})
	if err != nil {
		panic(err)
	}
	handler := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		// A Canonicalizer is not safe for concurrent use: a busy handler
		// keeps them in a sync.Pool.
		var cz signature.Canonicalizer
		canonical, err := cz.Canonicalize(body)
		if err != nil {
			http.Error(w, "not JSON", http.StatusBadRequest)
			return
		}
		ts := r.Header.Get(signature.HeaderTimestamp)
		if !verifier.Verify(ts, canonical.JSON, r.Header.Get(signature.HeaderSignature)) {
			http.Error(w, "bad signature", http.StatusForbidden)
			return
		}
		if err := signature.CheckTimestamp(ts, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		fmt.Fprintln(w, "accepted")
	}

	// What Browser Use sends: the body as its Python json.dumps writes it,
	// signed over the canonical form.
	body := `{"type": "agent.task.status_update", "payload": {"task_id": "t1", "status": "finished"}}`
	var cz signature.Canonicalizer
	canonical, _ := cz.Canonicalize([]byte(body))
	ts := fmt.Sprint(time.Now().Unix())
	fmt.Printf("signed: %s.%s\n", "<timestamp>", canonical.JSON)

	for _, sig := range []string{signature.Sign(secret, ts, canonical.JSON), signature.Sign([]byte("wrong"), ts, canonical.JSON)} {
		req := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(body))
		req.Header.Set(signature.HeaderTimestamp, ts)
		req.Header.Set(signature.HeaderSignature, sig)
		rec := httptest.NewRecorder()
		handler(rec, req)
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	// Output:
	// signed: <timestamp>.{"payload":{"status":"finished","task_id":"t1"},"type":"agent.task.status_update"}
	// 200 accepted
	// 403 bad signature
}

func ExampleCheckTimestamp() {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, ts := range []string{"1796299200", "2026-12-03T11:50:00Z", "yesterday"} {
		fmt.Println(signature.CheckTimestamp(ts, now, 5*time.Minute))
	}
	// Output:
	// <nil>
	// timestamp is 10m0s old, more than the tolerance of 5m0s
	// timestamp header is neither Unix time nor RFC 3339
}

package ingress

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/signature"
)

var fuzzPaths = [...]string{"/webhook", "/lenient", "/nope"}

// FuzzIngress sends arbitrary requests to the handler. Whatever comes in,
// it never panics or answers 500, every refusal is a JSON {"error"}, and a
// 200 is given only to a body signed with one of the source's secrets over
// its canonical form: the handler cannot be fooled into accepting a
// forged delivery.
func FuzzIngress(f *testing.F) {
	now := strconv.FormatInt(testNow.Unix(), 10)
	for _, s := range []struct {
		body, ts, sig, method string
		sign                  bool
		path                  uint8
	}{
		{`{"type":"agent.task.status_update","timestamp":"2026-11-26T12:00:00Z","payload":{"task_id":"t","status":"finished"}}`, now, "", "POST", true, 0},
		{`{"task_id":"t","status":"paused"}`, now, "", "POST", true, 0},
		{`{"task_id":"t","status":"created"}`, now, "", "POST", true, 1},
		{`{"test":"ok"}`, now, "", "POST", true, 0},
		{`{"type":"test","payload":{}}`, "yesterday", "", "POST", true, 1},
		{`{"status":"finished","status":"stopped"}`, now, "", "POST", true, 0},
		{`{"status":"finished"}`, now, strings.Repeat("0", 64), "POST", false, 0},
		{`{"status":"finished"}`, now, "", "GET", true, 0},
		{`{}`, now, "", "POST", true, 2},
		{"\xff\xfe{\x00}", "", "", "POST", false, 0},
		{`{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`, now, "", "POST", true, 0},
		{`{"n":1e400,"m":NaN,"s":"\ud800"}`, now, "", "POST", true, 0},
	} {
		f.Add([]byte(s.body), s.ts, s.sig, s.method, s.sign, s.path)
	}
	secrets := [][]byte{[]byte(testSecret), []byte("old-secret")}

	f.Fuzz(func(t *testing.T, body []byte, ts, sig, method string, sign bool, path uint8) {
		rec := &recorder{}
		h := newTestIngress(t, rec, func(c *config.Config) { c.Server.MaxBodyBytes = 8192 })

		// The signature the sender would compute, if the body has a
		// canonical form at all.
		var cz signature.Canonicalizer
		c, cerr := cz.Canonicalize(body)
		if sign && cerr == nil {
			sig = signature.Sign([]byte(testSecret), ts, c.JSON)
		}
		signedRight := false
		if cerr == nil {
			for _, s := range secrets {
				if sig == signature.Sign(s, ts, c.JSON) {
					signedRight = true
				}
			}
		}

		p := fuzzPaths[int(path)%len(fuzzPaths)]
		req := httptest.NewRequest(http.MethodPost, p, bytes.NewReader(body))
		req.Method = method
		req.Header.Set(signature.HeaderTimestamp, ts)
		req.Header.Set(signature.HeaderSignature, sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)

		switch w.Code {
		case 200, 400, 403, 404, 405, 413, 422, 503:
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		var answer map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil {
			t.Fatalf("%d answer is not JSON: %v: %q", w.Code, err, w.Body)
		}
		if w.Code != 200 {
			if msg, ok := answer["error"].(string); !ok || msg == "" {
				t.Fatalf("%d without an error string: %s", w.Code, w.Body)
			}
			if len(rec.got) != 0 {
				t.Fatalf("answered %d but delivered", w.Code)
			}
			return
		}
		if !signedRight {
			t.Fatalf("200 for a body not signed with the source's secret: body %q ts %q sig %q: %s", body, ts, sig, w.Body)
		}
		if method != http.MethodPost || p == "/nope" {
			t.Fatalf("200 for %s %s", method, p)
		}
		if id, _ := answer["id"].(string); len(id) != 32 {
			t.Fatalf("200 without an id: %s", w.Body)
		}
		for _, r := range rec.got {
			if r.ev.Test || r.ev.Status == "" {
				t.Fatalf("delivered a test or status-less event: %+v", r.ev)
			}
		}
	})
}

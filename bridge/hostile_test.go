package bridge

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/bridge/signature"
)

const (
	hostileSecret   = "whsec_hostile"
	hostileMaxBody  = 32 << 10 // room for a depth-10000 body and a 5000-digit number, which must be 400, not 413
	hostileMaxHeads = 4 << 10
)

func hostileConfig(dir string) string {
	return budgetConfig(dir, fmt.Sprintf(`  max_body_bytes: %d
  max_header_bytes: %d
  read_header_timeout: 1s
  read_timeout: 2s`, hostileMaxBody, hostileMaxHeads))
}

// hostileCase is one request and the answer it must get.
type hostileCase struct {
	name string
	// Exactly one of req and raw is set: req goes through net/http's
	// client, raw is written as is on a fresh connection.
	req    func(t *testing.T, base string) *http.Request
	raw    string
	status int
	// netHTTP: the answer is written by net/http itself (no JSON body).
	netHTTP bool
	check   func(t *testing.T, body []byte)
}

// hostileSign returns the signature of body at ts with secret, or 64 zeros
// when body does not canonicalize.
func hostileSign(secret, ts string, body []byte) string {
	var cz signature.Canonicalizer
	c, err := cz.Canonicalize(body)
	if err != nil {
		return strings.Repeat("0", 64)
	}
	return signature.Sign([]byte(secret), ts, c.JSON)
}

func nowTS() string { return strconv.FormatInt(time.Now().Unix(), 10) }

// post builds a POST to base+path signed at ts (now when ""), letting edit
// change the headers afterwards.
func post(path, ts, body string, edit func(h http.Header)) func(t *testing.T, base string) *http.Request {
	return func(t *testing.T, base string) *http.Request {
		t.Helper()
		if ts == "" {
			ts = nowTS()
		}
		req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(signature.HeaderTimestamp, ts)
		req.Header.Set(signature.HeaderSignature, hostileSign(hostileSecret, ts, []byte(body)))
		if edit != nil {
			edit(req.Header)
		}
		return req
	}
}

// postCanon is post signed over canonical, the form CPython computes for
// body (json.dumps(json.loads(body), separators=(",", ":"),
// sort_keys=True)), rather than over hookbridge's own canonical form.
func postCanon(body, canonical string) func(t *testing.T, base string) *http.Request {
	return func(t *testing.T, base string) *http.Request {
		r := post("/webhook", "", body, nil)(t, base)
		r.Header.Set(signature.HeaderSignature, signature.Sign([]byte(hostileSecret), r.Header.Get(signature.HeaderTimestamp), []byte(canonical)))
		return r
	}
}

// cpythonSigned are bodies signed as CPython canonicalizes them (computed
// with CPython 3, see postCanon): hookbridge must accept each.
var cpythonSigned = []struct{ name, body, canonical string }{
	{"float with 5000 digits", `{"task_id":"t-cp1","status":"finished","n":1.` + strings.Repeat("0", 5000) + `}`, `{"n":1.0,"status":"finished","task_id":"t-cp1"}`},
	{"overflowing exponent", "{\"task_id\":\"t-cp2\",\"status\":\"finished\",\"n\":1e400,\"m\":-1e400}", "{\"m\":-Infinity,\"n\":Infinity,\"status\":\"finished\",\"task_id\":\"t-cp2\"}"},
	{"lone surrogate and astral keys", "{\"task_id\":\"t-cp3\",\"status\":\"finished\",\"\\ud83d\\ude00\":1,\"\\uffff\":2,\"\\ud800\":\"\\udfff\"}", "{\"status\":\"finished\",\"task_id\":\"t-cp3\",\"\\ud800\":\"\\udfff\",\"\\uffff\":2,\"\\ud83d\\ude00\":1}"},
	{"duplicate key via escape", "{\"task_id\":\"t-cp4\",\"status\":\"stopped\",\"\\u0073tatus\":\"finished\"}", "{\"status\":\"finished\",\"task_id\":\"t-cp4\"}"},
	{"integer of exactly 4300 digits", `{"task_id":"t-cp5","status":"finished","n":-` + strings.Repeat("9", 4300) + `}`, `{"n":-` + strings.Repeat("9", 4300) + `,"status":"finished","task_id":"t-cp5"}`},
	{"float reprs", "{\"task_id\":\"t-cp6\",\"status\":\"finished\",\"a\":1e16,\"b\":1.5e-7,\"c\":123456789012345678.0,\"d\":-0.0,\"e\":0.1,\"f\":1E+2,\"g\":NaN}", "{\"a\":1e+16,\"b\":1.5e-07,\"c\":1.2345678901234568e+17,\"d\":-0.0,\"e\":0.1,\"f\":100.0,\"g\":NaN,\"status\":\"finished\",\"task_id\":\"t-cp6\"}"},
	{"UTF-16 body", "\xff\xfe{\x00\"\x00t\x00a\x00s\x00k\x00_\x00i\x00d\x00\"\x00:\x00\"\x00t\x00-\x00c\x00p\x007\x00\"\x00,\x00\"\x00s\x00t\x00a\x00t\x00u\x00s\x00\"\x00:\x00\"\x00f\x00i\x00n\x00i\x00s\x00h\x00e\x00d\x00\"\x00,\x00\"\x00x\x00\"\x00:\x00\"\x00\xe9\x00=\xd8\x00\xde\"\x00}\x00", "{\"status\":\"finished\",\"task_id\":\"t-cp7\",\"x\":\"\\u00e9\\ud83d\\ude00\"}"},
	{"UTF-8 BOM", "\xef\xbb\xbf{\"task_id\":\"t-cp8\",\"status\":\"finished\"}", "{\"status\":\"finished\",\"task_id\":\"t-cp8\"}"},
	{"whitespace everywhere", " \x09\x0d\x0a{ \"task_id\" : \"t-cp9\" ,\x0a\"status\":\x09\"finished\" } \x0a", "{\"status\":\"finished\",\"task_id\":\"t-cp9\"}"},
}

func TestHostileInputs(t *testing.T) {
	// Snapshot before the service starts; the deferred check runs after
	// the deferred Shutdown below (defers run last-in, first-out).
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	dir := t.TempDir()
	cfg, err := config.Parse("hostile.yaml", []byte(hostileConfig(dir)), nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := Start(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{}
	client := &http.Client{Transport: transport, Timeout: 15 * time.Second}
	defer func() {
		transport.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	addr := svc.Addr().String()
	base := "http://" + addr

	finished := `{"task_id":"t-ok","status":"finished"}`
	envelope := func(task, status string) string {
		return fmt.Sprintf(`{"type":"agent.task.status_update","timestamp":"2026-11-26T12:00:00Z","payload":{"task_id":%q,"status":%q}}`, task, status)
	}
	deep := `{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`
	hugeNumber := `{"status":"finished","n":1` + strings.Repeat("0", 4999) + `}`
	bigString := `{"task_id":"t-big","status":"finished","pad":"` + strings.Repeat("x", hostileMaxBody-200) + `"}`
	overString := `{"task_id":"t-over","status":"finished","pad":"` + strings.Repeat("x", hostileMaxBody+1) + `"}`
	replayBody := envelope("t-replay", "paused")
	sigOf := func(ts, body string) string { return hostileSign(hostileSecret, ts, []byte(body)) }
	setSig := func(f func(sig string) string) func(h http.Header) {
		return func(h http.Header) { h.Set(signature.HeaderSignature, f(h.Get(signature.HeaderSignature))) }
	}
	expectJSONField := func(field string, want any) func(t *testing.T, body []byte) {
		return func(t *testing.T, body []byte) {
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("answer not JSON: %v: %s", err, body)
			}
			if m[field] != want {
				t.Errorf("answer %s: %s = %v, want %v", body, field, m[field], want)
			}
		}
	}
	// hostileHead is a request line and headers well over max_header_bytes
	// (net/http allows MaxHeaderBytes + 4096 before answering 431).
	hostileHead := "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 4*hostileMaxHeads+8192) + "\r\n\r\n"

	cases := []hostileCase{
		{name: "GET", req: func(t *testing.T, base string) *http.Request {
			r, _ := http.NewRequest(http.MethodGet, base+"/webhook", nil)
			return r
		}, status: 405},
		{name: "PUT signed", req: func(t *testing.T, base string) *http.Request {
			r := post("/webhook", "", finished, nil)(t, base)
			r.Method = http.MethodPut
			return r
		}, status: 405},
		{name: "wrong path", req: post("/webhooks", "", finished, nil), status: 404},
		{name: "missing timestamp", req: post("/webhook", "", finished, func(h http.Header) { h.Del(signature.HeaderTimestamp) }), status: 400},
		{name: "missing signature", req: post("/webhook", "", finished, func(h http.Header) { h.Del(signature.HeaderSignature) }), status: 400},
		{name: "signature twice", req: post("/webhook", "", finished, func(h http.Header) { h.Add(signature.HeaderSignature, h.Get(signature.HeaderSignature)) }), status: 400},
		{name: "timestamp twice", req: post("/webhook", "", finished, func(h http.Header) { h.Add(signature.HeaderTimestamp, h.Get(signature.HeaderTimestamp)) }), status: 400},
		{name: "signature upper case", req: post("/webhook", "", finished, setSig(strings.ToUpper)), status: 403},
		{name: "signature with a space inside", req: post("/webhook", "", finished, setSig(func(s string) string { return s[:32] + " " + s[32:] })), status: 403},
		{name: "signature as two halves", req: post("/webhook", "", finished, setSig(func(s string) string { return s[:32] + ", " + s[32:] })), status: 403},
		{name: "signature too short", req: post("/webhook", "", finished, setSig(func(s string) string { return s[:63] })), status: 403},
		{name: "signature too long", req: post("/webhook", "", finished, setSig(func(s string) string { return s + "0" })), status: 403},
		{name: "signature with sha256= prefix", req: post("/webhook", "", finished, setSig(func(s string) string { return "sha256=" + s })), status: 403},
		{name: "signature of another secret", req: post("/webhook", "", finished, func(h http.Header) {
			h.Set(signature.HeaderSignature, hostileSign("guess", h.Get(signature.HeaderTimestamp), []byte(finished)))
		}), status: 403},
		{name: "timestamp far past", req: post("/webhook", "1000000000", finished, nil), status: 403},
		{name: "timestamp far future", req: post("/webhook", "4000000000", finished, nil), status: 403},
		{name: "timestamp far future (ms)", req: post("/webhook", "9999999999999", finished, nil), status: 403},
		{name: "timestamp zero", req: post("/webhook", "0", finished, nil), status: 403},
		{name: "timestamp negative", req: post("/webhook", "-1", finished, nil), status: 403},
		{name: "timestamp unparseable", req: post("/webhook", "yesterday", finished, nil), status: 403},
		{name: "timestamp 20 digits", req: post("/webhook", "99999999999999999999", finished, nil), status: 403},
		{name: "empty body", req: post("/webhook", "", "", nil), status: 400},
		{name: "truncated JSON", req: post("/webhook", "", finished[:len(finished)-5], nil), status: 400},
		{name: "body not UTF-8", req: post("/webhook", "", "{\"status\":\"finished\",\"x\":\"\xc3\x28\"}", nil), status: 400},
		{name: "lone surrogate escape", req: post("/webhook", "", `{"status":"finished","x":"\ud800"}`, nil), status: 200},
		{name: "not an object", req: post("/webhook", "", `["finished"]`, nil), status: 400},
		{name: "NUL byte", req: post("/webhook", "", "{\"status\":\"finished\"}\x00", nil), status: 400},
		{name: "trailing garbage", req: post("/webhook", "", finished+"{}", nil), status: 400},
		{name: "deeply nested (depth 10000)", req: post("/webhook", "", deep, nil), status: 400},
		{name: "huge number (5000 digits)", req: post("/webhook", "", hugeNumber, nil), status: 400},
		{name: "huge string inside the limit", req: post("/webhook", "", bigString, nil), status: 200,
			check: expectJSONField("routes", float64(1))},
		{name: "string over the body limit", req: post("/webhook", "", overString, nil), status: 413},
		{name: "string over the body limit, chunked", req: func(t *testing.T, base string) *http.Request {
			r := post("/webhook", "", overString, nil)(t, base)
			r.ContentLength = -1
			r.Body = io.NopCloser(strings.NewReader(overString))
			return r
		}, status: 413},
		{name: "duplicate keys, last wins", req: post("/webhook", "", `{"task_id":"t-dup","status":"stopped","status":"finished"}`, nil), status: 200,
			check: expectJSONField("routes", float64(1))},
		{name: "empty object", req: post("/webhook", "", `{}`, nil), status: 422},
		{name: "status not a string", req: post("/webhook", "", `{"task_id":"t","status":1}`, nil), status: 422},
		{name: "flat test ping", req: post("/webhook", "", `{"test":"ok"}`, nil), status: 200,
			check: expectJSONField("test", true)},
		{name: "envelope test ping", req: post("/webhook", "", `{"type":"test","timestamp":"2026-11-26T12:00:00Z","payload":{"test":true}}`, nil), status: 200,
			check: expectJSONField("test", true)},
		{name: "valid flat delivery", req: post("/webhook", "", finished, nil), status: 200,
			check: expectJSONField("routes", float64(1))},
		{name: "replayed event: first", req: post("/webhook", "", replayBody, nil), status: 200,
			check: expectJSONField("duplicate", nil)},
		{name: "replayed event: again, re-signed", req: func(t *testing.T, base string) *http.Request {
			ts := strconv.FormatInt(time.Now().Unix()-1, 10)
			r := post("/webhook", ts, replayBody, nil)(t, base)
			r.Header.Set(signature.HeaderSignature, sigOf(ts, replayBody))
			return r
		}, status: 200, check: expectJSONField("duplicate", true)},
		{name: "malformed request line", raw: "POST\r\n\r\n", status: 400, netHTTP: true},
		{name: "garbage instead of HTTP", raw: "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", status: 400, netHTTP: true},
		{name: "bad Content-Length", raw: "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", status: 400, netHTTP: true},
		{name: "two Content-Lengths", raw: "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", status: 400, netHTTP: true},
		{name: "headers over max_header_bytes", raw: hostileHead, status: 431, netHTTP: true},
		{name: "HTTP/1.1 without Host", raw: "POST /webhook HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", status: 400, netHTTP: true},
	}

	for _, cp := range cpythonSigned {
		cases = append(cases, hostileCase{name: "CPython-signed " + cp.name, req: postCanon(cp.body, cp.canonical), status: 200,
			check: expectJSONField("routes", float64(1))})
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var (
				status int
				header http.Header
				body   []byte
			)
			if tc.raw != "" {
				status, header, body = rawExchange(t, addr, tc.raw)
			} else {
				resp, err := client.Do(tc.req(t, base))
				if err != nil {
					t.Fatal(err)
				}
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				status, header = resp.StatusCode, resp.Header
			}
			if status != tc.status {
				t.Fatalf("status %d, want %d; body %q", status, tc.status, truncate(body))
			}
			if tc.netHTTP {
				return
			}
			if ct := header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if strings.Contains(string(body), hostileSecret) {
				t.Error("the answer shows the secret")
			}
			var answer map[string]any
			if err := json.Unmarshal(body, &answer); err != nil {
				t.Fatalf("answer is not JSON: %v: %q", err, truncate(body))
			}
			if status != 200 {
				if msg, ok := answer["error"].(string); !ok || msg == "" {
					t.Errorf("error answer without an \"error\" string: %s", body)
				}
			} else if id, _ := answer["id"].(string); len(id) != 32 {
				t.Errorf("200 without an id: %s", body)
			}
			if status == 405 && header.Get("Allow") != http.MethodPost {
				t.Errorf("405 with Allow %q", header.Get("Allow"))
			}
			if tc.check != nil {
				tc.check(t, body)
			}
		})
	}

	t.Run("slowloris is cut off by read_header_timeout", func(t *testing.T) {
		slowloris(t, addr, 0)
	})
	t.Run("slowloris after a fast request line is cut off too", func(t *testing.T) {
		slowloris(t, addr, len("POST /webhook HTTP/1.1\r\nHost: x\r\n"))
	})

	// Still serving after all that.
	resp, err := client.Do(post("/webhook", "", `{"task_id":"t-after","status":"finished"}`, nil)(t, base))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("valid delivery after the hostile ones: %d", resp.StatusCode)
	}
	resp, err = client.Get("http://" + svc.AdminAddr().String() + HealthzPath)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}

	// What reached the file sink: the duplicate-key body with the last
	// status, the replay once, nothing rejected.
	data, err := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{} // task id -> statuses
	for line := range strings.Lines(string(data)) {
		var ev struct {
			Data struct {
				TaskID string `json:"task_id"`
				Status string `json:"status"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("sink line is not JSON: %v: %.200s", err, line)
		}
		seen[ev.Data.TaskID] = append(seen[ev.Data.TaskID], ev.Data.Status)
	}
	want := map[string]string{"t-dup": "finished", "t-replay": "paused", "t-big": "finished", "t-after": "finished", "t-ok": "finished"}
	for i := range cpythonSigned {
		want[fmt.Sprintf("t-cp%d", i+1)] = "finished"
	}
	for task, want := range want {
		if got := seen[task]; len(got) != 1 || got[0] != want {
			t.Errorf("task %s delivered as %v, want once as %q", task, got, want)
		}
	}
	for _, task := range []string{"t-over", "t"} {
		if got := seen[task]; len(got) != 0 {
			t.Errorf("rejected task %s was delivered: %v", task, got)
		}
	}
}

// rawExchange writes raw on a new connection and reads one response.
func rawExchange(t *testing.T, addr, raw string) (int, http.Header, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := io.WriteString(conn, raw)
		werr <- err
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response: %v (write: %v)", err, <-werr)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	conn.Close()
	<-werr // the server may have closed before all was written
	return resp.StatusCode, resp.Header, body
}

// slowloris sends a request's headers one byte every 200 ms and expects
// the server to close the connection (or answer 408) well before the
// headers are complete. The first fast bytes are sent at once.
func slowloris(t *testing.T, addr string, fast int) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Browser-Use-Timestamp: " + nowTS() + "\r\nX-Slow: " + strings.Repeat("s", 200) + "\r\n\r\n"
	stop := make(chan struct{})
	wrote := make(chan int, 1)
	go func() {
		n := 0
		defer func() { wrote <- n }()
		if _, err := io.WriteString(conn, head[:fast]); err != nil {
			return
		}
		for i := fast; i < len(head); i++ {
			if _, err := conn.Write([]byte{head[i]}); err != nil {
				return
			}
			n++
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); <-wrote }()

	// read_header_timeout is 1s: allow generous slack on a loaded machine,
	// but far less than the ~50s the whole header would take.
	const bound = 10 * time.Second
	start := time.Now()
	conn.SetReadDeadline(start.Add(bound))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	elapsed := time.Since(start)
	how := "closed without an answer"
	if err == nil {
		how = "answered " + resp.Status + " and closed"
	}
	switch {
	case err == nil:
		// net/http answers itself: a request line cut short by the
		// deadline is read as a malformed one (bufio.Reader.ReadLine
		// returns the partial line without the error), so 400; 408 would
		// do too. Either way the connection must be closed after it.
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("slow headers answered %d after %v, want the connection closed, 400 or 408", resp.StatusCode, elapsed)
		}
		if resp.Header.Get("Connection") != "close" && !resp.Close {
			t.Errorf("%d without Connection: close", resp.StatusCode)
		}
		if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection still open after the %d answer: %v", resp.StatusCode, err)
		}
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("connection still open after %v of slow headers", bound)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), isConnReset(err):
		// closed by the server without an answer
	default:
		t.Fatalf("unexpected read error: %v", err)
	}
	if elapsed > bound {
		t.Errorf("cut off after %v, more than %v", elapsed, bound)
	}
	t.Logf("slow client %s after %v", how, elapsed.Round(10*time.Millisecond))
}

func isConnReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "connection reset")
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

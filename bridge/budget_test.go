package bridge

import (
	"bufio"
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

	"github.com/hookbridge/hookbridge/bridge/signature"
)

// budgetConfig is a sync service writing to a file, with the budget keys
// in server (YAML lines, indented by two).
func budgetConfig(dir, server string) string {
	return fmt.Sprintf(`
delivery: sync
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
%s
sources:
  - name: browser-use
    secrets: [%q]
sinks:
  - name: audit
    type: file
    path: %q
routes:
  - name: everything
    status: ["*"]
    to:
      - {sink: audit}
`, server, hostileSecret, filepath.Join(dir, "audit.jsonl"))
}

// signedBody is a delivery for task, padded to at least size bytes.
func signedBody(task string, size int) (body, ts, sig string) {
	body = `{"task_id":"` + task + `","status":"finished"}`
	if pad := size - len(body) - len(`,"pad":""`); pad > 0 {
		body = body[:len(body)-1] + `,"pad":"` + strings.Repeat("p", pad) + `"}`
	}
	ts = nowTS()
	return body, ts, hostileSign(hostileSecret, ts, []byte(body))
}

// genuine posts a signed delivery for task and returns its status.
func genuine(t *testing.T, addr, task string) (int, http.Header) {
	t.Helper()
	body, ts, sig := signedBody(task, 0)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/webhook", strings.NewReader(body))
	req.Header.Set(signature.HeaderTimestamp, ts)
	req.Header.Set(signature.HeaderSignature, sig)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("genuine delivery %s: %v", task, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// slowBody opens a connection that sends a request's headers declaring
// length body bytes, then one byte of the body, and no more.
func slowBody(t *testing.T, addr string, length int) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	head := "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Browser-Use-Timestamp: " + nowTS() +
		"\r\nX-Browser-Use-Signature: " + strings.Repeat("0", 64) +
		"\r\nContent-Length: " + strconv.Itoa(length) + "\r\n\r\n{"
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	return conn
}

// waitFor polls cond until it holds, failing after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectCutOff reads conn's answer: status with a JSON error, then the
// connection closed, within bound.
func expectCutOff(t *testing.T, conn net.Conn, status int, bound time.Duration) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(bound))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer within %v: %v", bound, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status || !strings.HasPrefix(string(b), `{"error":`) {
		t.Fatalf("answered %d %s, want %d with a JSON error", resp.StatusCode, b, status)
	}
	if !resp.Close {
		t.Errorf("%d without Connection: close", status)
	}
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after the %d: %v", status, err)
	}
}

// Slow bodies are read before a delivery slot is taken: more of them than
// there are slots leave genuine deliveries answered 200, and each is cut
// off with a 408 once body_read_timeout passes.
func TestSlowBodyHoldsNoDeliverySlot(t *testing.T) {
	svc := startYAML(t, "budget.yaml", budgetConfig(t.TempDir(), `
  max_concurrent_requests: 2
  max_concurrent_reads: 16
  body_read_timeout: 1s
  min_body_rate: 1024`), nil)
	addr := svc.Addr().String()
	var slow []net.Conn
	for range 6 {
		slow = append(slow, slowBody(t, addr, 100_000))
	}
	waitFor(t, "6 bodies being read", func() bool { return svc.budget.Reading() == 6 })
	start := time.Now()
	for i := range 3 {
		if code, _ := genuine(t, addr, fmt.Sprintf("t-genuine-%d", i)); code != http.StatusOK {
			t.Fatalf("genuine delivery answered %d while slow bodies were read", code)
		}
	}
	for _, c := range slow {
		// 1s + 1 byte at 1024 B/s; generous for a loaded machine.
		expectCutOff(t, c, http.StatusRequestTimeout, 8*time.Second)
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("slow bodies cut off after %v, before body_read_timeout", took)
	}
	waitFor(t, "the reads released", func() bool { return svc.budget.Reading() == 0 })
}

// A body that keeps arriving faster than min_body_rate keeps extending
// its deadline past body_read_timeout and is accepted.
func TestBodyAtMinRateIsRead(t *testing.T) {
	svc := startYAML(t, "budget.yaml", budgetConfig(t.TempDir(), `
  body_read_timeout: 300ms
  min_body_rate: 1000`), nil)
	body, ts, sig := signedBody("t-steady", 3000)
	conn, err := net.DialTimeout("tcp", svc.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /webhook HTTP/1.1\r\nHost: x\r\n%s: %s\r\n%s: %s\r\nContent-Length: %d\r\n\r\n",
		signature.HeaderTimestamp, ts, signature.HeaderSignature, sig, len(body))
	// 500 bytes every 150ms: 3333 B/s, each chunk extending the deadline
	// by 500ms; the whole body takes ~750ms, past body_read_timeout.
	start := time.Now()
	for i := 0; i < len(body); i += 500 {
		if _, err := io.WriteString(conn, body[i:min(i+500, len(body))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("steady body answered %d after %v, want 200", resp.StatusCode, time.Since(start))
	}
}

// Bodies in flight share max_buffered_bytes: once declared bodies hold
// it, a request is answered 503 with Retry-After at once, and served
// again once they are cut off.
func TestMaxBufferedBytes(t *testing.T) {
	svc := startYAML(t, "budget.yaml", budgetConfig(t.TempDir(), `
  max_body_bytes: 65536
  max_buffered_bytes: 131072
  body_read_timeout: 1s`), nil)
	addr := svc.Addr().String()
	// Each reserves 64 KiB before reading: the two hold the budget.
	a, b := slowBody(t, addr, 65536), slowBody(t, addr, 65536)
	waitFor(t, "2 bodies being read", func() bool { return svc.budget.Reading() == 2 })
	start := time.Now()
	code, h := genuine(t, addr, "t-over-budget")
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("over the buffered bytes: %d Retry-After %q, want 503 with Retry-After", code, h.Get("Retry-After"))
	}
	if took := time.Since(start); took > 900*time.Millisecond {
		t.Errorf("503 took %v: it must come at once, not after the slow bodies", took)
	}
	expectCutOff(t, a, http.StatusRequestTimeout, 8*time.Second)
	expectCutOff(t, b, http.StatusRequestTimeout, 8*time.Second)
	waitFor(t, "the reads released", func() bool { return svc.budget.Reading() == 0 })
	if code, _ := genuine(t, addr, "t-after"); code != http.StatusOK {
		t.Fatalf("after the slow bodies: %d, want 200", code)
	}
}

// A declared size is reserved only up to 64 KiB before it arrives: a
// sender declaring a megabyte and sending a byte does not hold a
// megabyte of the budget.
func TestDeclaredLengthReservedAsItArrives(t *testing.T) {
	svc := startYAML(t, "budget.yaml", budgetConfig(t.TempDir(), `
  max_body_bytes: 1048576
  max_buffered_bytes: 1048576
  body_read_timeout: 5s`), nil)
	addr := svc.Addr().String()
	for range 4 {
		slowBody(t, addr, 1_000_000)
	}
	waitFor(t, "4 bodies being read", func() bool { return svc.budget.Reading() == 4 })
	if code, _ := genuine(t, addr, "t-beside-declared"); code != http.StatusOK {
		t.Fatalf("beside 4 slow 1 MB declarations in a 1 MiB budget: %d, want 200", code)
	}
}

// Past max_connections a connection waits in the backlog, unanswered,
// until an open one closes.
func TestMaxConnections(t *testing.T) {
	svc := startYAML(t, "budget.yaml", budgetConfig(t.TempDir(), `
  max_connections: 2`), nil)
	addr := svc.Addr().String()
	ask := func(c net.Conn, br *bufio.Reader, bound time.Duration) (int, error) {
		c.SetReadDeadline(time.Now().Add(bound))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	const get = "GET /webhook HTTP/1.1\r\nHost: x\r\n\r\n" // 405, keeping the connection
	var open []net.Conn
	for range 2 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, get)
		if code, err := ask(c, bufio.NewReader(c), 10*time.Second); code != http.StatusMethodNotAllowed {
			t.Fatalf("connection %d: %d %v", len(open), code, err)
		}
		open = append(open, c)
	}
	third, err := net.DialTimeout("tcp", addr, 5*time.Second) // the kernel's backlog takes it
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	io.WriteString(third, get)
	br := bufio.NewReader(third)
	if code, err := ask(third, br, 500*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("third connection answered (%d, %v) while 2 were open", code, err)
	}
	open[0].Close()
	if code, err := ask(third, br, 10*time.Second); code != http.StatusMethodNotAllowed {
		t.Fatalf("third connection after one closed: %d %v", code, err)
	}
}

// A request with both Transfer-Encoding and Content-Length is answered
// 400 with a JSON error and its connection closed (RFC 9112 §6.1); one
// with Transfer-Encoding alone is served, on a connection kept open.
func TestTransferEncodingWithContentLength(t *testing.T) {
	svc := startYAML(t, "budget.yaml", budgetConfig(t.TempDir(), ""), nil)
	addr := svc.Addr().String()
	body, ts, sig := signedBody("t-chunked", 0)
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	head := "POST /webhook HTTP/1.1\r\nHost: x\r\n" + signature.HeaderTimestamp + ": " + ts + "\r\n" + signature.HeaderSignature + ": " + sig + "\r\n"

	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, head+"Transfer-Encoding: chunked\r\n\r\n"+chunked)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("chunked alone: %d (close %v), want 200 on an open connection", resp.StatusCode, resp.Close)
	}
	// The same connection, now with both framings: a smuggler's request.
	io.WriteString(conn, head+"content-length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked)
	expectCutOff(t, conn, http.StatusBadRequest, 10*time.Second)
}

//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// TestDiskFullAnswers503AndRecovers fills the spool's disk under the real
// binary and empties it again. Root ignores file modes, so the full disk
// is the child's file-size limit (RLIMIT_FSIZE) set a little above its
// segment: a write past it fails with EFBIG, as one on a full disk fails
// with ENOSPC (the Go runtime ignores SIGXFSZ). The broker runs in the
// test process, out of reach of the limit. Delivering cannot hide the
// failure by draining the spool: a removal is a frame appended too, so
// within a segment the log only grows and reaches the limit regardless.
func TestDiskFullAnswers503AndRecovers(t *testing.T) {
	bin, config, url, spoolDir, js := spoolingBinary(t, "")
	p := startBinary(t, bin, config)
	client := &http.Client{Timeout: 10 * time.Second}

	acked := map[string]int{} // id -> n, answered 200
	refused := 0              // answered 503
	n := 0
	// post sends the next event, every one the same size, so that one
	// that did not fit is not followed by a smaller one that does.
	post := func() webhookAnswer {
		meta := map[string]string{"n": fmt.Sprintf("%06d", n), "pad": strings.Repeat("x", 400)}
		a := postWebhook(t, client, url, crashSecret, string(envelope("disk-full", "started", n, meta)))
		switch a.code {
		case http.StatusOK:
			acked[a.id] = n
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("event %d answered %d %s", n, a.code, a.body)
		}
		n++
		return a
	}
	// check503 asserts a over-the-limit answer: 503, Retry-After, a JSON
	// error; and readiness down meanwhile.
	check503 := func(a webhookAnswer) {
		t.Helper()
		if a.code != http.StatusServiceUnavailable {
			t.Fatalf("event past the size limit answered %d %s, want 503", a.code, a.body)
		}
		if a.header.Get("Retry-After") == "" {
			t.Errorf("503 without Retry-After: %v", a.header)
		}
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Error == "" {
			t.Errorf("503 body %q is not JSON {\"error\": ...}", a.body)
		}
		// Within failureHold (5s) of a failed write, /readyz reports it
		// whatever a probe would say.
		if code, body := p.status(t, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "spool") {
			t.Errorf("/readyz after a failed spool write: %d %s, want 503 naming the spool", code, body)
		}
	}

	for range 5 {
		if a := post(); a.code != http.StatusOK {
			t.Fatalf("before the limit: answered %d %s", a.code, a.body)
		}
	}
	sinktest.WaitFor(t, "the first events in JetStream", func() bool { return sinktest.StreamCount(js, "HOOKBRIDGE") >= len(acked) })

	seg := lastSegment(t, spoolDir)
	fi, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	limit := uint64(fi.Size()) + 4096 // room for a few events more
	setFileSizeLimit(t, p.cmd.Process.Pid, limit)
	t.Logf("segment %s is %d bytes; file-size limit set to %d", filepath.Base(seg), fi.Size(), limit)

	first := webhookAnswer{}
	for range 100 {
		if first = post(); first.code != http.StatusOK {
			break
		}
	}
	check503(first)
	okBefore := len(acked)
	for range 5 {
		check503(post())
	}
	if l := p.line(t, "event not delivered; answered 503"); l == nil {
		t.Errorf("no log line names the failed spool write:\n%s", tail(p.logs.String(), 10))
	} else if e, _ := l["err"].(string); l["level"] != "WARN" || !strings.Contains(e, "spool write") || !strings.Contains(e, "file too large") {
		t.Errorf("the failed append's log line is %v, want a WARN whose err names the spool write and EFBIG", l)
	} else {
		t.Logf("logged: %s %s err=%q", l["level"], l["msg"], e)
	}

	// Room again: appends succeed at once, readiness once its hold
	// expired and a probe wrote.
	setFileSizeLimit(t, p.cmd.Process.Pid, unix.RLIM_INFINITY)
	sinktest.WaitFor(t, "a webhook answered 200 again", func() bool { return post().code == http.StatusOK })
	sinktest.WaitFor(t, "/readyz ready again", func() bool {
		code, _ := p.status(t, "/readyz")
		return code == http.StatusOK
	})
	for range 5 {
		if a := post(); a.code != http.StatusOK {
			t.Fatalf("after the limit was lifted: answered %d %s", a.code, a.body)
		}
	}

	// Every event answered 200 is delivered, once; those answered 503
	// need not be (their sender retries), and nothing else is there.
	stored := waitStored(t, js, slices.Collect(maps.Keys(acked)))
	for id, c := range stored {
		if c != 1 {
			t.Errorf("event %s stored %d times", id, c)
		}
		if _, ok := acked[id]; !ok {
			t.Errorf("event %s is in the stream but was answered 503", id)
		}
	}
	t.Logf("%d events answered 200 (%d before the limit was reached), %d answered 503; %d in the stream", len(acked), okBefore, refused, len(stored))
	p.stop(t)
}

// setFileSizeLimit sets process pid's RLIMIT_FSIZE to limit bytes
// (unix.RLIM_INFINITY: none).
func setFileSizeLimit(t *testing.T, pid int, limit uint64) {
	t.Helper()
	rl := unix.Rlimit{Cur: limit, Max: unix.RLIM_INFINITY}
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &rl, nil); err != nil {
		t.Skipf("cannot set the child's file-size limit: %v", err)
	}
}

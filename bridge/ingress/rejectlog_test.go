package ingress

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/route"
)

// TestRejectionLogIsSampled: a flood of bad requests writes at most
// rejectLinesPerSecond lines per kind and second, then one line counting
// the rest; the metrics and counts still see every rejection.
func TestRejectionLogIsSampled(t *testing.T) {
	var out bytes.Buffer
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	cfg := testConfig(nil)
	h, err := New(cfg, Options{Router: route.New(cfg.Rules()), Deliverer: &recorder{},
		Log: slog.New(slog.NewTextHandler(&out, nil)), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	const flood = 500
	for i := range flood {
		path := "/nowhere"
		if i%2 == 1 {
			path = "/" + strings.Repeat("x", 10_000) // echoed clipped
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, nil))
		if w.Code != http.StatusNotFound {
			t.Fatalf("answer %d", w.Code)
		}
		if len(w.Body.String()) > 200 {
			t.Fatalf("the answer echoes the whole path: %d bytes", w.Body.Len())
		}
	}
	if got := h.Count(ResultNotFound); got != flood {
		t.Errorf("counted %d rejections, want %d", got, flood)
	}
	if n := strings.Count(out.String(), "webhook rejected"); n != rejectLinesPerSecond {
		t.Errorf("%d rejection lines in one second, want %d", n, rejectLinesPerSecond)
	}
	h.rejects.flush()
	if !strings.Contains(out.String(), "webhook rejections not logged") || !strings.Contains(out.String(), "total=490 not_found=490") {
		t.Errorf("no summary of the %d rejections held back:\n%s", flood-rejectLinesPerSecond, out.String())
	}
	if out.Len() > 10_000 {
		t.Errorf("the log grew by %d bytes for %d rejections", out.Len(), flood)
	}

	// The next second has a budget of its own.
	now.Add(int64(time.Second))
	out.Reset()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/nowhere", nil))
	if !strings.Contains(out.String(), "webhook rejected") {
		t.Errorf("a rejection in the next second was not logged:\n%s", out.String())
	}
}

func TestClip(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"short", "short"},
		{strings.Repeat("a", maxEchoed), strings.Repeat("a", maxEchoed)},
		{strings.Repeat("a", 100), strings.Repeat("a", maxEchoed) + "…(100 bytes)"},
		// A multi-byte rune across the cut is not split.
		{strings.Repeat("a", maxEchoed-1) + "é" + "zz", strings.Repeat("a", maxEchoed-1) + "…(67 bytes)"},
	} {
		if got := clip(tt.in); got != tt.want {
			t.Errorf("clip(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

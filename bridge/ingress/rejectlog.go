package ingress

import (
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Rejection logging is sampled so that a flood of bad requests cannot fill
// the disk: each second, the first rejectLinesPerSecond rejections of each
// kind are logged; the rest are counted, and one line a second later says
// how many of each kind went unlogged. The metrics count every rejection.
const (
	rejectLinesPerSecond = 10
	rejectSummaryAfter   = time.Second
)

// rejectLog is the sampler. It outlives a reload (Options.Previous), so a
// reload does not reset the budget.
type rejectLog struct {
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	second  int64              // the unix second the counts below are for
	logged  [numResults]int    // lines written this second, by kind
	held    [numResults]uint64 // rejections not logged since the last summary
	summary *time.Timer        // armed while some are held
}

func newRejectLog(log *slog.Logger, now func() time.Time) *rejectLog {
	return &rejectLog{log: log, now: now}
}

// allow reports whether a rejection of kind res may be logged now, and
// counts it otherwise.
func (l *rejectLog) allow(res Result) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sec := l.now().Unix(); sec != l.second {
		l.second = sec
		l.logged = [numResults]int{}
	}
	if l.logged[res] < rejectLinesPerSecond {
		l.logged[res]++
		return true
	}
	l.held[res]++
	if l.summary == nil {
		l.summary = time.AfterFunc(rejectSummaryAfter, l.flush)
	}
	return false
}

// flush writes one line counting the rejections held back since the
// last, by kind.
func (l *rejectLog) flush() {
	l.mu.Lock()
	held := l.held
	l.held = [numResults]uint64{}
	l.summary = nil
	l.mu.Unlock()
	attrs := make([]any, 0, 2*numResults+2)
	var total uint64
	for res, n := range held {
		if n > 0 {
			attrs = append(attrs, Result(res).String(), n)
			total += n
		}
	}
	if total == 0 {
		return
	}
	l.log.Warn("webhook rejections not logged (over the log budget; metrics count them all)",
		append([]any{"total", total}, attrs...)...)
}

// maxEchoed is the most bytes of a sender's own text (a path, a method)
// that an answer or a log line repeats.
const maxEchoed = 64

// clip returns s cut to maxEchoed bytes at a rune boundary, saying how
// long it was.
func clip(s string) string { return clipTo(s, maxEchoed) }

// clipTo returns s cut to n bytes at a rune boundary, saying how long it
// was.
func clipTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

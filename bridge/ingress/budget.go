package ingress

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/hookbridge/hookbridge/bridge/config"
)

// Budget bounds what webhook requests in flight may hold, across every
// generation of the handler: the bodies being read (server.max_concurrent_reads),
// the requests being verified and delivered (server.max_concurrent_requests)
// and the body bytes buffered (server.max_buffered_bytes). A body is read
// before a delivery slot is taken, so a sender that is slow to send its
// body holds a read slot and the bytes it has sent, never a delivery slot.
type Budget struct {
	reads   chan struct{}
	slots   chan struct{}
	bytes   *semaphore.Weighted
	timeout time.Duration // server.body_read_timeout
	rate    int64         // server.min_body_rate, bytes/s
	limit   time.Duration // server.read_timeout: no extension goes past it
}

// NewBudget makes the budget of s, which SetDefaults has filled.
func NewBudget(s config.Server) *Budget {
	return &Budget{
		reads:   make(chan struct{}, s.MaxConcurrentReads),
		slots:   make(chan struct{}, s.MaxConcurrentRequests),
		bytes:   semaphore.NewWeighted(s.MaxBufferedBytes),
		timeout: s.BodyReadTimeout,
		rate:    s.MinBodyRate,
		limit:   max(s.ReadTimeout, s.BodyReadTimeout),
	}
}

const (
	// firstReserve is the most of a declared Content-Length reserved
	// before any of it arrives: all of a Browser Use delivery (a few KB),
	// while a sender declaring a megabyte and sending a byte holds no more
	// than this. The rest is reserved as it arrives.
	firstReserve = 64 << 10
	// chunkedReserve is the first reservation of a body of unknown size.
	chunkedReserve = 4 << 10
	// poolMax is the largest buffer kept for reuse: a rare large body's
	// buffer is left to the collector rather than kept for small ones.
	poolMax = 64 << 10
)

// errBodyBudget says a body's next bytes do not fit server.max_buffered_bytes.
var errBodyBudget = errors.New("body budget exhausted")

// bodyRead is one request's body and what it holds of the budget. It is
// pooled with its buffer, so reading a body allocates nothing.
type bodyRead struct {
	h        *Handler // whose pool it is: set once, by the pool
	p        []byte   // the body; its capacity is the buffer
	reserved int64    // bytes of p's capacity counted against b.bytes
	slot     bool     // holds a delivery slot
	start    time.Time
	one      [1]byte // reads the byte past a full body
}

// reserve makes p's capacity at least n (at most the body limit),
// counting it against the budget first.
func (br *bodyRead) reserve(n int64) error {
	n = min(n, br.h.maxBody)
	if int64(cap(br.p)) >= n {
		return nil
	}
	if br.h.budget != nil {
		// A pooled buffer's capacity was counted when it was taken; the
		// new one replaces it, so only the difference is added.
		if !br.h.budget.bytes.TryAcquire(n - br.reserved) {
			return errBodyBudget
		}
		br.reserved = n
	}
	np := make([]byte, len(br.p), n)
	copy(np, br.p)
	br.p = np
	return nil
}

// deadline is when the body must have arrived, got bytes in:
// mod_reqtimeout's MinRate, one more second per min_body_rate bytes, up to
// read_timeout.
func (br *bodyRead) deadline(got int) time.Time {
	ext := time.Duration(int64(got) * int64(time.Second) / br.h.budget.rate)
	return br.start.Add(min(br.h.budget.timeout+ext, br.h.budget.limit))
}

// done gives back the delivery slot, the budget's bytes and the buffer:
// call it once the body is no longer used.
func (br *bodyRead) done() {
	if br.slot {
		<-br.h.budget.slots
		br.slot = false
	}
	if br.h.budget != nil && br.reserved > 0 {
		br.h.budget.bytes.Release(br.reserved)
	}
	br.reserved = 0
	if cap(br.p) > poolMax {
		return // a rare large body's buffer is left to the collector
	}
	br.p = br.p[:0]
	br.h.bufs.Put(br)
}

// readBody reads r's body within h's budget and takes a delivery slot.
// It answers the request itself and returns nil when it cannot: 503 with
// Retry-After when a budget is full, 408 for a body slower than
// server.body_read_timeout and server.min_body_rate allow, 413 over
// server.max_body_bytes, 400 for a broken body. The caller reads the body
// from p and calls done once it is no longer used.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, src *source) *bodyRead {
	if len(r.TransferEncoding) > 0 && framingConflict(r.Context()) {
		// Closing ends whatever the two framings disagree on.
		w.Header().Set("Connection", "close")
		h.reject(w, r, src, ResultBadRequest, http.StatusBadRequest, "both Transfer-Encoding and Content-Length: give one (RFC 9112 section 6.1)")
		return nil
	}
	b := h.budget
	if b != nil {
		select {
		case b.reads <- struct{}{}:
		default:
			h.shed(w, r, src, "too many webhook bodies being read at once; retry later")
			return nil
		}
	}
	br := h.bufs.Get().(*bodyRead)
	if b != nil && cap(br.p) > 0 {
		// The pooled buffer is held while this request is: count it.
		if !b.bytes.TryAcquire(int64(cap(br.p))) {
			br.p = nil
		} else {
			br.reserved = int64(cap(br.p))
		}
	}
	first := int64(chunkedReserve)
	if r.ContentLength >= 0 {
		first = min(r.ContentLength, firstReserve)
	}
	if err := br.reserve(first); err != nil {
		if b != nil {
			<-b.reads
		}
		br.done()
		h.shed(w, r, src, "too many webhook bytes buffered at once; retry later")
		return nil
	}

	rc := http.NewResponseController(w)
	br.start = time.Now()
	// A server without deadlines (HTTP/2 on some connections, a test's
	// recorder) keeps read_timeout alone.
	timed := b != nil && rc.SetReadDeadline(br.deadline(0)) == nil
	rd := http.MaxBytesReader(w, r.Body, h.maxBody)
	var err error
	full := h.maxBody
	if r.ContentLength >= 0 {
		full = r.ContentLength // no more than max_body_bytes: checked before
	}
	for {
		if len(br.p) == cap(br.p) {
			if int64(len(br.p)) >= full {
				// All that may come has: expect the end, or the byte
				// that makes the body too large.
				var n int
				n, err = io.ReadFull(rd, br.one[:])
				if n > 0 {
					err = &http.MaxBytesError{Limit: h.maxBody}
				}
				if err == io.EOF {
					err = nil
				}
				break
			}
			if err = br.reserve(min(max(int64(2*cap(br.p)), chunkedReserve), full)); err != nil {
				break
			}
		}
		var n int
		n, err = rd.Read(br.p[len(br.p):cap(br.p)])
		br.p = br.p[:len(br.p)+n]
		if n > 0 && timed {
			_ = rc.SetReadDeadline(br.deadline(len(br.p)))
		}
		if err == io.EOF {
			err = nil
			break
		}
		if err != nil {
			break
		}
	}
	if b != nil {
		<-b.reads
	}
	if err != nil {
		br.done()
		switch {
		case errors.Is(err, errBodyBudget):
			// The rest of the body is not read: close rather than drain it.
			w.Header().Set("Connection", "close")
			h.shed(w, r, src, "too many webhook bytes buffered at once; retry later")
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.Header().Set("Connection", "close")
			h.reject(w, r, src, ResultSlowBody, http.StatusRequestTimeout, "body not received in time: it must arrive within server.body_read_timeout plus a second per server.min_body_rate bytes")
		default:
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				h.rejectTooLarge(w, r, src)
			} else {
				h.reject(w, r, src, ResultBadRequest, http.StatusBadRequest, "could not read the body: "+err.Error())
			}
		}
		return nil
	}
	if timed {
		// Read whole: the server's own deadlines apply again.
		_ = rc.SetReadDeadline(time.Time{})
	}
	if b != nil {
		// The buffer stays reserved until done: the body is verified and
		// delivered from it.
		select {
		case b.slots <- struct{}{}:
			br.slot = true
		default:
			br.done()
			h.shed(w, r, src, "too many webhooks at once; retry later")
			return nil
		}
	}
	return br
}

// Reading is how many bodies are being read now.
func (b *Budget) Reading() int { return len(b.reads) }

// Handling is how many webhooks hold a delivery slot now.
func (b *Budget) Handling() int { return len(b.slots) }

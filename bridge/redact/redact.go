// Package redact removes known secret values from text before hookbridge
// writes it anywhere: config errors, log lines, and the errors and output
// of its commands.
//
// A Scrubber is told the secret values (config.Config.Secrets lists them)
// and replaces every form in which one can appear in output with
// Placeholder: the raw value; the body of its Go quoted forms (%q and %+q,
// as validators and slog's text handler write it); its JSON string forms
// (encoding/json, with and without HTML escaping, and the ASCII-only form
// of signature.AppendQuote); its URL forms (url.QueryEscape,
// url.PathEscape and user-info escaping); and each of those quoted once
// more as Go or JSON (an error quoting the value, written by a JSON log
// handler).
//
// Values shorter than MinLen bytes are not scrubbed: replacing every "ab"
// in the output would make it unreadable while protecting nothing, since a
// secret that short can be guessed.
package redact

import (
	"cmp"
	"encoding/json"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hookbridge/hookbridge/bridge/signature"
)

// Placeholder replaces every form of a secret.
const Placeholder = "[redacted]"

// MinLen is the shortest value a Scrubber removes, in bytes.
const MinLen = 4

// Scrubber removes every form of a set of secret values from text. It is
// safe for concurrent use; values can be added (a reload brings new
// secrets) but never removed, so a rotated-out secret stays scrubbed. The
// nil Scrubber removes nothing.
type Scrubber struct {
	mu     sync.RWMutex
	values map[string]bool
	r      *strings.Replacer // nil when there is nothing to remove
}

// New returns a Scrubber that removes values (see Add).
func New(values ...string) *Scrubber {
	s := &Scrubber{values: map[string]bool{}}
	s.Add(values...)
	return s
}

// Add makes s remove values too. Empty values and values shorter than
// MinLen are ignored.
func (s *Scrubber) Add(values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for _, v := range values {
		if len(v) >= MinLen && !s.values[v] {
			s.values[v] = true
			changed = true
		}
	}
	if !changed {
		return
	}
	seen := map[string]bool{}
	for v := range s.values {
		for _, f := range Forms(v) {
			seen[f] = true
		}
	}
	forms := make([]string, 0, len(seen))
	for f := range seen {
		forms = append(forms, f)
	}
	// Longest first, so a form that contains another is removed whole:
	// strings.Replacer tries the old strings in argument order.
	slices.SortFunc(forms, func(a, b string) int {
		return cmp.Or(len(b)-len(a), strings.Compare(a, b))
	})
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, Placeholder)
	}
	s.r = strings.NewReplacer(pairs...)
}

// String returns text with every form of every secret replaced by
// Placeholder.
func (s *Scrubber) String(text string) string {
	if s == nil {
		return text
	}
	s.mu.RLock()
	r := s.r
	s.mu.RUnlock()
	if r == nil {
		return text
	}
	return r.Replace(text)
}

// Error returns err with a scrubbed message, or nil for nil. The result
// still unwraps to err, for errors.Is and errors.As; only its message
// changes.
func (s *Scrubber) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if clean := s.String(msg); clean != msg {
		return &scrubbed{msg: clean, err: err}
	}
	return err
}

// Writer returns a writer that scrubs each write before passing it to w:
// for a command's stderr, whose lines are written whole. A secret split
// across two writes is not caught.
func (s *Scrubber) Writer(w io.Writer) io.Writer {
	if s == nil {
		return w
	}
	return &writer{s: s, w: w}
}

type writer struct {
	s *Scrubber
	w io.Writer
}

func (w *writer) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.w, w.s.String(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// Forms returns the forms of v that output may hold (see the package
// documentation), without duplicates.
func Forms(v string) []string {
	base := []string{
		v,
		unquote(strconv.Quote(v)),
		unquote(strconv.QuoteToASCII(v)),
		unquote(jsonString(v, true)),
		unquote(jsonString(v, false)),
		unquote(string(signature.AppendQuote(nil, v))),
		url.QueryEscape(v),
		url.PathEscape(v),
		strings.TrimPrefix(url.UserPassword("u", v).String(), "u:"),
		url.User(v).String(),
	}
	forms := slices.Clone(base)
	for _, f := range base {
		forms = append(forms, unquote(strconv.Quote(f)), unquote(jsonString(f, true)), unquote(jsonString(f, false)))
	}
	slices.Sort(forms)
	return slices.Compact(forms)
}

func unquote(q string) string { return q[1 : len(q)-1] }

// jsonString is s as encoding/json writes a string, quotes included.
func jsonString(s string, escapeHTML bool) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(s); err != nil {
		return strconv.Quote(s) // cannot happen: a string always encodes
	}
	return strings.TrimSuffix(b.String(), "\n")
}

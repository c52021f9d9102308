package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/hookbridge/hookbridge/bridge/signature"
)

const marker = "CANARY"

// secrets each hold marker, which no escaping changes, so finding marker
// in an output finds any form of the secret.
var secrets = []string{
	`q"CANARY"q`,
	`b\CANARY\x`,
	"t\tCANARY\tt",
	"p%CANARY%2F x+/?&=#",
	"üCANARYé€\u2028<>&'",
	"n\nCANARY\x00\x7f",
	"bad\xffCANARY",
	"e😀CANARY",
}

func TestEveryFormIsScrubbed(t *testing.T) {
	jsonNoHTML := func(s string) string {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		return b.String()
	}
	jsonHTML := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	encodings := map[string]func(string) string{
		"raw":                   func(s string) string { return s },
		"%q":                    func(s string) string { return fmt.Sprintf("%q", s) },
		"%+q":                   func(s string) string { return fmt.Sprintf("%+q", s) },
		"json":                  jsonHTML,
		"json without HTML":     jsonNoHTML,
		"signature.AppendQuote": func(s string) string { return string(signature.AppendQuote(nil, s)) },
		"query":                 url.QueryEscape,
		"path":                  url.PathEscape,
		"userinfo": func(s string) string {
			return (&url.URL{Scheme: "nats", User: url.UserPassword("u", s), Host: "h"}).String()
		},
		"user only":        func(s string) string { return (&url.URL{Scheme: "nats", User: url.User(s), Host: "h"}).String() },
		"%q of %q":         func(s string) string { return strconv.Quote(strconv.Quote(s)) },
		"json of %q":       func(s string) string { return jsonHTML(strconv.Quote(s)) },
		"json of userinfo": func(s string) string { return jsonHTML("nats://u:" + url.UserPassword("u", s).String() + "@h") },
	}
	s := New(secrets...)
	for _, sec := range secrets {
		for name, enc := range encodings {
			in := "before " + enc(sec) + " after"
			if !strings.Contains(in, marker) {
				t.Fatalf("%q, %s: the encoding lost the marker: %q", sec, name, in)
			}
			out := s.String(in)
			if strings.Contains(out, marker) || !strings.Contains(out, Placeholder) {
				t.Errorf("%q, %s: %q scrubbed to %q", sec, name, in, out)
			}
			if !strings.HasPrefix(out, "before ") || !strings.HasSuffix(out, " after") {
				t.Errorf("%q, %s: the text around the secret changed: %q", sec, name, out)
			}
		}
	}
}

func TestShortValuesAreKept(t *testing.T) {
	s := New("abc", "", "abcd")
	if got := s.String("abc abcd xabcdx"); got != "abc [redacted] x[redacted]x" {
		t.Errorf("got %q", got)
	}
}

func TestAddAndNil(t *testing.T) {
	s := New()
	if got := s.String("secret1 here"); got != "secret1 here" {
		t.Errorf("an empty scrubber changed the text: %q", got)
	}
	s.Add("secret1")
	s.Add("secret2") // a reload: the old secret stays scrubbed
	if got := s.String("secret1 secret2"); got != "[redacted] [redacted]" {
		t.Errorf("got %q", got)
	}
	var none *Scrubber
	if got := none.String("secret1"); got != "secret1" {
		t.Errorf("nil scrubber: %q", got)
	}
	if none.Error(nil) != nil || New("x").Error(nil) != nil {
		t.Error("Error(nil) is not nil")
	}
}

func TestErrorKeepsTheChain(t *testing.T) {
	s := New(secrets[0])
	err := fmt.Errorf("open %q: %w", secrets[0], fs.ErrNotExist)
	got := s.Error(err)
	if strings.Contains(got.Error(), marker) {
		t.Errorf("not scrubbed: %v", got)
	}
	if !errors.Is(got, fs.ErrNotExist) {
		t.Error("the scrubbed error does not unwrap to the original")
	}
	plain := errors.New("nothing secret")
	if s.Error(plain) != plain {
		t.Error("an error without a secret was replaced")
	}
}

type creds struct{ User, Password string }

type stringer struct{ v string }

func (s stringer) String() string { return "stringer " + s.v }

func TestHandler(t *testing.T) {
	sec := secrets[0]
	for _, format := range []string{"text", "json"} {
		var b bytes.Buffer
		var next slog.Handler = slog.NewTextHandler(&b, nil)
		if format == "json" {
			next = slog.NewJSONHandler(&b, nil)
		}
		log := slog.New(New(sec).Handler(next))
		log.Info("message "+sec, "s", sec, "err", fmt.Errorf("dial %q: refused", sec), "n", 42,
			"group", slog.GroupValue(slog.String("inner", "x"+sec)), "any", creds{"u", sec}, "stringer", stringer{sec},
			sec, "as a key")
		log.With("with", sec).WithGroup("g"+sec).Info("grouped", "k", sec)
		out := b.String()
		if strings.Contains(out, marker) {
			t.Errorf("%s: a secret is in the log:\n%s", format, out)
		}
		for _, want := range []string{"message [redacted]", "42", "inner", "grouped"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: %q is missing from the log:\n%s", format, want, out)
			}
		}
	}
	if (*Scrubber)(nil).Handler(slog.DiscardHandler) != slog.DiscardHandler {
		t.Error("a nil scrubber wrapped the handler")
	}
}

func TestWriter(t *testing.T) {
	var out strings.Builder
	w := New("hunter2-secret").Writer(&out)
	line := "connect to nats://u:hunter2-secret@host: refused\n"
	if n, err := io.WriteString(w, line); err != nil || n != len(line) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(line))
	}
	if got := out.String(); got != "connect to nats://u:[redacted]@host: refused\n" {
		t.Errorf("wrote %q", got)
	}
	var nilScrubber *Scrubber
	if nilScrubber.Writer(&out) != io.Writer(&out) {
		t.Error("a nil scrubber wraps the writer")
	}
}

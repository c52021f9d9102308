package redact

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
)

// Handler returns a slog.Handler that scrubs every record before next
// handles it: the message, every attribute's key and value (strings,
// errors, fmt.Stringers and any other value as it would be printed),
// inside groups and in the attributes and group names added with WithAttrs
// and WithGroup. A nil Scrubber returns next.
func (s *Scrubber) Handler(next slog.Handler) slog.Handler {
	if s == nil {
		return next
	}
	return &handler{s: s, next: next}
}

type handler struct {
	s    *Scrubber
	next slog.Handler
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	clean := slog.NewRecord(r.Time, r.Level, h.s.String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		clean.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, clean)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = h.attr(a)
	}
	return &handler{s: h.s, next: h.next.WithAttrs(clean)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{s: h.s, next: h.next.WithGroup(h.s.String(name))}
}

func (h *handler) attr(a slog.Attr) slog.Attr {
	a.Key = h.s.String(a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(h.s.String(v.String()))
	case slog.KindGroup:
		group := v.Group()
		clean := make([]slog.Attr, len(group))
		for i, g := range group {
			clean[i] = h.attr(g)
		}
		a.Value = slog.GroupValue(clean...)
	case slog.KindAny:
		a.Value = h.any(v)
	default:
		a.Value = v
	}
	return a
}

// any scrubs a value of kind Any: the text and JSON handlers print an
// error as its message, and anything else with %+v or as JSON. When a
// secret shows in either, the value is replaced by its scrubbed text.
func (h *handler) any(v slog.Value) slog.Value {
	x := v.Any()
	if err, ok := x.(error); ok {
		msg := err.Error()
		if clean := h.s.String(msg); clean != msg {
			return slog.StringValue(clean)
		}
		return v
	}
	text := fmt.Sprintf("%+v", x)
	clean := h.s.String(text)
	if clean != text {
		return slog.StringValue(clean)
	}
	if b, err := json.Marshal(x); err == nil {
		if j := string(b); h.s.String(j) != j {
			return slog.StringValue(clean)
		}
	}
	return v
}

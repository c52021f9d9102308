package sinks

import (
	"errors"
	"fmt"
	"testing"
)

func TestPermanent(t *testing.T) {
	base := errors.New("message too large")
	p := Permanent(base)
	wrapped := fmt.Errorf("publish: %w", p)
	batch := &BatchError{Failed: map[int]error{1: wrapped}}
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{base, false},
		{p, true},
		{wrapped, true},
		{MessageErr(batch, 1), true},
		{MessageErr(batch, 0), false},
	}
	for _, tt := range tests {
		if got := IsPermanent(tt.err); got != tt.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if Permanent(nil) != nil || !errors.Is(p, base) || p.Error() != base.Error() {
		t.Error("Permanent changes the error it marks")
	}
}

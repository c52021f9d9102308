package sinktest

import (
	"errors"
	"testing"

	"github.com/hookbridge/hookbridge/sinks"
)

// Problems returns the messages of the problems a sink config's Validate
// reported, in order, failing t for any that is not a *sinks.ConfigError
// (the loader places only those at their file:line).
func Problems(t testing.TB, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	out := make([]string, len(errs))
	for i, e := range errs {
		if _, ok := errors.AsType[*sinks.ConfigError](e); !ok {
			t.Errorf("%v is a %T, not a *sinks.ConfigError", e, e)
		}
		out[i] = e.Error()
	}
	return out
}

package event

import (
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/signature"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// Benchmarks of Normalize on the bodies the hot path's other benchmarks
// use (sinktest's deliveries).

// BenchmarkNormalize calls Normalize on an already canonicalized body, as
// Ingress.ServeHTTP does after verifying it.
func BenchmarkNormalize(b *testing.B) {
	for _, bc := range []struct {
		name string
		body []byte
	}{
		{"flat-200B", sinktest.DeliveryFlat200},
		{"envelope-200B", sinktest.Delivery200},
		{"envelope-20KB", sinktest.Delivery20K()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var cz signature.Canonicalizer
			c, err := cz.Canonicalize(bc.body)
			if err != nil {
				b.Fatal(err)
			}
			const ts = "1748164942"
			received := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				ev, err := Normalize("browser-use", ts, received, c, Trace{})
				if err != nil {
					b.Fatal(err)
				}
				if ev.Status != "finished" || ev.Test || len(ev.JSON) < len(c.JSON)/2 {
					b.Fatalf("unexpected event: status %q test %v, %d bytes", ev.Status, ev.Test, len(ev.JSON))
				}
			}
		})
	}
}

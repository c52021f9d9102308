package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// syncMetric is the local spool's histogram of group commits (write plus
// fdatasync), read from hookbridge's /metrics.
const (
	syncMetric   = "hookbridge_spool_sync_duration_seconds"
	syncRequests = "hookbridge_spool_sync_requests_total"
)

// syncSample is the spool's commit histogram at one moment: cumulative
// counts by upper bound, the commit count and the requests they carried.
type syncSample struct {
	buckets  map[float64]float64
	commits  float64
	requests float64
}

// readSync scrapes hookbridge's admin listener for the spool's commit
// histogram; ok is false when there is none (no local spool).
func readSync(ctx context.Context, admin string) (s syncSample, ok bool, err error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, false, fmt.Errorf("read hookbridge's metrics: %w", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return s, false, fmt.Errorf("read hookbridge's metrics: %w", err)
	}
	if f := families[syncRequests]; f != nil && len(f.GetMetric()) == 1 {
		s.requests = f.GetMetric()[0].GetCounter().GetValue()
	}
	f := families[syncMetric]
	if f == nil || len(f.GetMetric()) != 1 {
		return s, false, nil
	}
	h := f.GetMetric()[0].GetHistogram()
	s.commits = float64(h.GetSampleCount())
	s.buckets = map[float64]float64{math.Inf(1): s.commits}
	for _, b := range h.GetBucket() {
		s.buckets[b.GetUpperBound()] = float64(b.GetCumulativeCount())
	}
	return s, true, nil
}

// diskReport is what the spool's commits did between two samples.
type diskReport struct {
	commits, requests float64
	p50, p99, slowest float64 // upper bounds of the buckets, seconds
}

// diskBetween subtracts before from after.
func diskBetween(before, after syncSample) diskReport {
	d := diskReport{commits: after.commits - before.commits, requests: after.requests - before.requests}
	bounds := make([]float64, 0, len(after.buckets))
	for b := range after.buckets {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	quantile := func(q float64) float64 {
		for _, b := range bounds {
			if after.buckets[b]-before.buckets[b] >= q*d.commits {
				return b
			}
		}
		return math.Inf(1)
	}
	d.p50, d.p99, d.slowest = quantile(0.5), quantile(0.99), quantile(1)
	return d
}

// The p99 of one commit (write plus fdatasync) that tells a quiet disk
// from a busy and a stalling one. On the machine of docs/performance.md
// an otherwise idle disk keeps it within 2.5 ms at a steady rate (within
// 5 ms when hookbridge runs flat out, its commits larger and the CPU
// shared); with another process writing and syncing beside it, the p99
// reaches 5 ms and the slowest commits 25 ms; past 10 ms the disk stalls
// and the latency figures measure it, not hookbridge.
const (
	quietDisk = 2500 * time.Microsecond
	busyDisk  = 10 * time.Millisecond
)

func (d diskReport) String() string {
	if d.commits <= 0 {
		return "spool disk: no group commit measured"
	}
	verdict := "a quiet disk"
	switch p99 := time.Duration(d.p99 * float64(time.Second)); {
	case p99 > busyDisk:
		verdict = fmt.Sprintf("a STALLING disk (p99 over %s): the latency figures above measure the disk, not hookbridge", busyDisk)
	case p99 > quietDisk:
		verdict = fmt.Sprintf("a busy disk (p99 over %s: another writer, or commits of a flat-out run)", quietDisk)
	}
	return fmt.Sprintf("spool disk: %.0f group commits, %.1f requests per fdatasync; one commit (write + fdatasync) p50 ≤ %s, p99 ≤ %s, slowest ≤ %s: %s",
		d.commits, d.requests/d.commits, bound(d.p50), bound(d.p99), bound(d.slowest), verdict)
}

func bound(s float64) string {
	if math.IsInf(s, 1) {
		return "∞"
	}
	return time.Duration(s * float64(time.Second)).String()
}

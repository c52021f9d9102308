package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
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
	s.buckets = map[float64]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, value, found := strings.Cut(line, " ")
		if !found || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(name, syncMetric+`_bucket{le="`):
			le := strings.TrimSuffix(strings.TrimPrefix(name, syncMetric+`_bucket{le="`), `"}`)
			bound, err := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
			if err != nil {
				continue
			}
			s.buckets[bound] = v
			ok = true
		case name == syncMetric+"_count":
			s.commits = v
		case name == syncRequests:
			s.requests = v
		}
	}
	return s, ok, sc.Err()
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

// quietDisk is the p99 of one commit under which the disk is taken as
// quiet: on the machines measured in docs/performance.md an idle disk's
// write plus fdatasync stays within 2.5 ms at the 99th percentile, while
// a stalling one (another process flushing, a noisy neighbour) puts the
// tail at tens of milliseconds.
const quietDisk = 5 * time.Millisecond

func (d diskReport) String() string {
	if d.commits <= 0 {
		return "spool disk: no group commit measured"
	}
	verdict := "a quiet disk"
	if d.p99 > quietDisk.Seconds() {
		verdict = fmt.Sprintf("a STALLING disk (p99 over %s): the latency figures above measure the disk, not hookbridge", quietDisk)
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

package config

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// ConnOverhead is what an open webhook connection costs beside its
// header limit: the connection's goroutine stack, net/http's 4 KiB read
// and write buffers, its conn, request and response structs, and the
// copies textproto makes of a long header line. Measured (SECURITY.md,
// "Memory budgets"): 512 connections each holding 16 KiB of unfinished
// headers took 47 KiB apiece of RSS, 27 KiB beside the 20 KiB header
// allowance; 32 KiB leaves headroom.
const ConnOverhead = 32 << 10

// headerSlack is what net/http reads past MaxHeaderBytes before it
// refuses a header block (its own 4096-byte allowance).
const headerSlack = 4096

// PerConnection is the most memory one open webhook connection can hold
// outside its body: the header limit plus ConnOverhead.
func (s *Server) PerConnection() int64 {
	return int64(s.MaxHeaderBytes) + headerSlack + ConnOverhead
}

// WorstCaseMemory is the most memory the webhook listener's requests can
// hold at once under s: every connection open with full headers, and the
// body buffers at max_buffered_bytes. The process's own baseline (code,
// the routing table, sinks' client buffers, the replay cache) comes on
// top.
func (s *Server) WorstCaseMemory() int64 {
	return int64(s.MaxConnections)*s.PerConnection() + s.MaxBufferedBytes
}

// DescribeWorstCase is WorstCaseMemory as `hookbridge check` prints it.
func (s *Server) DescribeWorstCase() string {
	return fmt.Sprintf("worst-case request memory: %s (%d connections × %s + %s of bodies)",
		bytesHuman(s.WorstCaseMemory()), s.MaxConnections, bytesHuman(s.PerConnection()), bytesHuman(s.MaxBufferedBytes))
}

// MemoryLimit is a limit the process runs under.
type MemoryLimit struct {
	Name  string // "GOMEMLIMIT" or the cgroup file it was read from
	Bytes int64
}

// MemoryLimits returns the limits set on this process: GOMEMLIMIT (as
// the runtime has it) and the cgroup's memory limit (v2, else v1).
// Unset ones are left out.
func MemoryLimits() []MemoryLimit {
	return memoryLimits(debug.SetMemoryLimit(-1), os.ReadFile)
}

func memoryLimits(goLimit int64, readFile func(string) ([]byte, error)) []MemoryLimit {
	var out []MemoryLimit
	// math.MaxInt64 is the runtime's "no limit".
	if goLimit > 0 && goLimit < 1<<62 {
		out = append(out, MemoryLimit{"GOMEMLIMIT", goLimit})
	}
	// The cgroup memory limit: v2, then v1.
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := readFile(f)
		if err != nil {
			continue
		}
		// "max" (v2) or a huge page-rounded number (v1) mean no limit.
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err == nil && n > 0 && n < 1<<62 {
			out = append(out, MemoryLimit{f, n})
		}
		break
	}
	return out
}

// MemoryWarnings says, for each of limits that the worst case exceeds,
// that it does; nil when it fits them all.
func (s *Server) MemoryWarnings(limits []MemoryLimit) []string {
	var out []string
	w := s.WorstCaseMemory()
	for _, l := range limits {
		if w > l.Bytes {
			out = append(out, fmt.Sprintf("worst-case request memory %s exceeds %s (%s): lower server.max_connections or server.max_buffered_bytes",
				bytesHuman(w), l.Name, bytesHuman(l.Bytes)))
		}
	}
	return out
}

// bytesHuman writes n in the largest binary unit that keeps one decimal.
func bytesHuman(n int64) string {
	switch {
	case n >= 1<<30:
		return trimUnit(float64(n)/(1<<30), "GiB")
	case n >= 1<<20:
		return trimUnit(float64(n)/(1<<20), "MiB")
	case n >= 1<<10:
		return trimUnit(float64(n)/(1<<10), "KiB")
	}
	return strconv.FormatInt(n, 10) + " B"
}

func trimUnit(v float64, unit string) string {
	return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0") + " " + unit
}

// The local spool indexes the messages waiting in memory (the log itself
// is on disk). SpoolIndexPerMessage is what one costs: its index entry,
// its map slot and list place, and a 36-byte task id; 162 bytes measured,
// and bridge/queue/local's TestIndexMemory fails should it grow past
// this. SpoolCacheBytes is what the spool keeps of whole messages
// besides, so that delivering reads nothing back (local.DefaultCacheBytes,
// held equal by the same test).
const (
	SpoolIndexPerMessage = 176
	SpoolCacheBytes      = 8 << 20
)

// spoolMessageFloor is the least a message counts against spool.max_bytes
// (its record's fixed overhead and a minimal CloudEvent), used to bound
// the messages waiting when only max_bytes caps them.
const spoolMessageFloor = 256

// SpoolMemory is the most memory the local spool's index can take when it
// is full: spool.max_events messages (or as many as spool.max_bytes can
// hold) at SpoolIndexPerMessage, plus SpoolCacheBytes. It is 0 when no
// route spools locally, and -1 when neither limit is set (unbounded).
func (c *Config) SpoolMemory() int64 {
	if !c.UsesSpool() || c.Spool.Backend != SpoolLocal {
		return 0
	}
	n := int64(c.Spool.MaxEvents)
	if byBytes := c.Spool.MaxBytes / spoolMessageFloor; c.Spool.MaxBytes > 0 && (n <= 0 || byBytes < n) {
		n = byBytes
	}
	if n <= 0 {
		return -1
	}
	return n*SpoolIndexPerMessage + SpoolCacheBytes
}

// DescribeSpoolMemory is SpoolMemory as `hookbridge check` prints it, ""
// without a local spool.
func (c *Config) DescribeSpoolMemory() string {
	switch m := c.SpoolMemory(); {
	case m == 0:
		return ""
	case m < 0:
		return fmt.Sprintf("worst-case spool index memory: unbounded (neither spool.max_events nor spool.max_bytes is set): about %d B per waiting message", SpoolIndexPerMessage)
	default:
		return fmt.Sprintf("worst-case spool index memory: %s (%d waiting messages × %d B + %s kept whole)",
			bytesHuman(m), (m-SpoolCacheBytes)/SpoolIndexPerMessage, SpoolIndexPerMessage, bytesHuman(SpoolCacheBytes))
	}
}

// MemoryWarnings says, for each of limits, whether the worst-case
// request memory exceeds it (Server.MemoryWarnings), or else whether the
// requests and a full local spool's index together do.
func (c *Config) MemoryWarnings(limits []MemoryLimit) []string {
	out := c.Server.MemoryWarnings(limits)
	spool := c.SpoolMemory()
	if spool == 0 {
		return out
	}
	req := c.Server.WorstCaseMemory()
	for _, l := range limits {
		switch {
		case req > l.Bytes:
		case spool < 0:
			out = append(out, fmt.Sprintf("the local spool's index is unbounded (no spool.max_events or spool.max_bytes) under %s (%s): a long broker outage can exhaust memory; set spool.max_events",
				l.Name, bytesHuman(l.Bytes)))
		case req+spool > l.Bytes:
			out = append(out, fmt.Sprintf("worst-case memory %s (requests %s + spool index %s) exceeds %s (%s): lower spool.max_events (each waiting message takes about %d B) or raise the limit",
				bytesHuman(req+spool), bytesHuman(req), bytesHuman(spool), l.Name, bytesHuman(l.Bytes), SpoolIndexPerMessage))
		}
	}
	return out
}

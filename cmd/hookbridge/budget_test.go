package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/config"
	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

// TestCheckPrintsWorstCaseMemory: check states the memory the budgets
// and a full local spool allow. (Its warnings over a limit are config's MemoryWarnings, tested
// there: GOMEMLIMIT cannot be set for an in-process run.)
func TestCheckPrintsWorstCaseMemory(t *testing.T) {
	env := map[string]string{"BROWSER_USE_WEBHOOK_SECRET": "whsec_x"}
	code, stdout, stderr := runCmd(t, "", env, "check", "-config", "../../config.yaml")
	if code != 0 {
		t.Fatalf("check: code %d stderr %s", code, stderr)
	}
	for _, want := range []string{
		"worst-case request memory: 58 MiB (512 connections × 52 KiB + 32 MiB of bodies)",
		// config.yaml spools locally with the default max_events.
		"worst-case spool index memory: 175.8 MiB (1000000 waiting messages × 176 B + 8 MiB kept whole)",
	} {
		if !strings.Contains(stdout, want) || strings.Contains(stdout, "warning:") {
			t.Errorf("check output lacks %q (or warns):\n%s", want, stdout)
		}
	}
}

// TestSlowBodiesThroughTheBinary is issue 16's finding, against the real
// binary with the default budgets and max_concurrent_requests: 200 (the
// report's setting): 300 connections send headers declaring nearly
// max_body_bytes, then half of them one byte and half all but the last
// byte, and stall. Meanwhile genuine signed deliveries must each be
// answered 200, and hookbridge's peak RSS must stay within the budgets'
// worst case plus the process's baseline. Before the budgets the slow
// connections held every delivery slot (genuine deliveries got 503) and
// their bodies took ~300 MB.
func TestSlowBodiesThroughTheBinary(t *testing.T) {
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	addr := sinktest.FreeAddr(t)
	// Only keys the code before the budgets knew, so that code runs it.
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
server:
  listen: %q
  admin_listen: "127.0.0.1:0"
  max_concurrent_requests: 200
delivery: sync
sources:
  - name: browser-use
    secrets: ["whsec_load"]
sinks:
  - {name: audit, type: file, path: %q}
routes:
  - {name: all, status: ["*"], to: [{sink: audit}]}
`, addr, filepath.Join(dir, "audit.jsonl"))), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=off") // the bound must hold without the GC's help
	var logs sinktest.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sinktest.WaitFor(t, "hookbridge to listen", func() bool { return strings.Contains(logs.String(), "hookbridge listening") })

	const slowConns = 300
	const declared = 1_048_000 // just under max_body_bytes (1 MiB)
	filler := []byte("{\"pad\":\"" + strings.Repeat("p", declared) + "\"}")[:declared-1]
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var writers sync.WaitGroup
	for i := range slowConns {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("slow connection %d: %v", i, err)
		}
		conns = append(conns, c)
		head := "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Browser-Use-Timestamp: " + strconv.FormatInt(time.Now().Unix(), 10) +
			"\r\nX-Browser-Use-Signature: " + strings.Repeat("0", 64) + "\r\nContent-Length: " + strconv.Itoa(declared) + "\r\n\r\n"
		body := filler[:1]
		if i%2 == 1 {
			body = filler // all but the last byte
		}
		writers.Go(func() {
			c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			// The server may refuse (503) and close mid-body: that is fine.
			_, _ = io.WriteString(c, head)
			_, _ = c.Write(body)
		})
	}

	writers.Wait() // every slow body sent (or refused): now they stall

	// Genuine deliveries, 4 at a time, while the slow bodies stall.
	url := "http://" + addr + "/webhook"
	var mu sync.Mutex
	var failures []string
	var senders sync.WaitGroup
	for w := range 4 {
		senders.Go(func() {
			// A new connection per delivery, as Browser Use's are.
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			for n := range 10 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				body := fmt.Sprintf(`{"task_id":"t-%d-%d","status":"finished"}`, w, n)
				if _, err := postBody(ctx, client, url, "whsec_load", body); err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("delivery %d-%d: %v", w, n, err))
					mu.Unlock()
				}
				cancel()
			}
		})
	}
	senders.Wait()
	hwm := vmHWM(t, cmd.Process.Pid)

	for _, f := range failures {
		t.Error(f)
	}
	var c config.Config
	c.SetDefaults()
	s := c.Server
	bound := s.WorstCaseMemory() + baselineRSS
	t.Logf("peak RSS %d MiB; bound %d MiB (%s + %d MiB baseline)", hwm>>20, bound>>20, s.DescribeWorstCase(), baselineRSS>>20)
	if hwm > bound {
		t.Errorf("peak RSS %d MiB exceeds the bound %d MiB", hwm>>20, bound>>20)
	}
}

// baselineRSS is what hookbridge takes beside its requests, measured:
// ~22 MiB idle (code, runtime, the file sink), plus the garbage the
// collector lets accumulate (GOGC=100 lets the heap grow to twice what is
// live) over what is buffered.
const baselineRSS = 64 << 20

// vmHWM reads a process's peak resident set size.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

package main

// The crash test runs a few rounds by default, so that go test ./... stays
// quick. Run a longer one, with its seed logged for a replay, with:
//
//	HOOKBRIDGE_CRASH_ITERATIONS=200 go test -count=1 -run TestKill9 ./cmd/hookbridge -v
//
// and replay a failure with the seed it logged:
//
//	HOOKBRIDGE_CRASH_SEED=<seed> HOOKBRIDGE_CRASH_ITERATIONS=<n> go test -count=1 -run TestKill9 ./cmd/hookbridge -v

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/sinks/sinktest"
)

const crashSecret = "whsec_crash"

// spoolingBinary builds the binary and writes its config: a local spool
// delivering to a nats-server in the test process, out of reach of what
// the test does to the binary, plus extra (top-level YAML keys, or "").
// It returns the binary, the config, the webhook URL, the spool directory
// and the broker's JetStream.
func spoolingBinary(t *testing.T, extra string) (bin, config, url, spoolDir string, js jetstream.JetStream) {
	t.Helper()
	dir := t.TempDir()
	bin = buildBinary(t, dir)
	spoolDir = filepath.Join(dir, "spool")
	nats := sinktest.NATS(t)
	_, js = sinktest.JetStream(t, nats.ClientURL())
	webhookAddr := sinktest.FreeAddr(t)
	config = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(spoolConfig(webhookAddr, spoolDir, nats.ClientURL())+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return bin, config, "http://" + webhookAddr + "/webhook", spoolDir, js
}

// spoolConfig is a serve config on webhookAddr spooling to spoolDir (the
// local backend) and delivering every event to the JetStream at natsURL,
// subject task.<status>. The broker runs in the test process, so killing
// hookbridge leaves it, and what it stored, alone.
func spoolConfig(webhookAddr, spoolDir, natsURL string) string {
	return fmt.Sprintf(`
server:
  listen: %q
  admin_listen: "127.0.0.1:0"
delivery: spool
spool:
  backend: local
  dir: %q
sources:
  - name: browser-use
    secrets: ["${BROWSER_USE_WEBHOOK_SECRET}"]
sinks:
  - name: bus
    type: nats
    url: %q
    jetstream: true
routes:
  - name: all
    status: ["*"]
    to:
      - {sink: bus, subject: "task.{status}"}
`, webhookAddr, spoolDir, natsURL)
}

// TestKill9LosesNoAcknowledgedEvent runs the real binary on one spool
// directory for several rounds: each round sends steady traffic from
// concurrent clients and SIGKILLs the process at a random point; every
// other round then damages the end of the last segment as a crash in the
// middle of a write would, and the restart must cut it off and say so.
// At the end every event answered 200 in any round must be in JetStream
// exactly once, and every message there must be one that was sent.
func TestKill9LosesNoAcknowledgedEvent(t *testing.T) {
	iterations := envInt(t, "HOOKBRIDGE_CRASH_ITERATIONS", 8)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HOOKBRIDGE_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("HOOKBRIDGE_CRASH_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d, %d rounds (replay with HOOKBRIDGE_CRASH_SEED=%d HOOKBRIDGE_CRASH_ITERATIONS=%d)", seed, iterations, seed, iterations)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	bin, config, url, spoolDir, js := spoolingBinary(t, "")

	var (
		mu    sync.Mutex
		sent  = map[sentKey]map[string]string{} // every event posted: its metadata
		acked = map[string]sentKey{}            // events answered 200, by id
	)
	damageOffset := rng.IntN(len(tailDamages))
	var injected, counted, tornByKill int
	wantTorn := int64(-1) // bytes the next start must cut off; -1: no damage injected
	for round := range iterations + 1 {
		p := startBinary(t, bin, config)
		// The start after a damaged round must cut the damage off and
		// report it, in the log and in /metrics.
		torn := p.tornLine(t)
		switch {
		case wantTorn >= 0 && torn == nil:
			t.Errorf("round %d: the start after a damaged tail did not log %q:\n%s", round, tornMsg, tail(p.logs.String(), 10))
		case wantTorn >= 0:
			counted++
			if torn["torn_writes"] != 1.0 || torn["bytes"] != float64(wantTorn) {
				t.Errorf("round %d: torn-write line says torn_writes %v bytes %v, want 1 and %d", round, torn["torn_writes"], torn["bytes"], wantTorn)
			}
			if m := p.get(t, "/metrics"); !strings.Contains(m, "\nhookbridge_spool_torn_writes 1\n") {
				t.Errorf("round %d: /metrics does not show hookbridge_spool_torn_writes 1:\n%s", round, grepLines(m, "hookbridge_spool_torn"))
			}
		case torn != nil:
			tornByKill++ // the kill itself landed mid-write: allowed
		}
		if round == iterations {
			// The last start only delivers what the kills left.
			mu.Lock()
			ids := slices.Collect(maps.Keys(acked))
			mu.Unlock()
			waitStored(t, js, ids)
			p.stop(t)
			break
		}

		// Steady traffic from four clients, each its own task, until the
		// kill, at a random number of events acknowledged this round.
		killAt := 1 + rng.IntN(150)
		var roundAcked int
		stop := make(chan struct{})
		var clients sync.WaitGroup
		for c := range 4 {
			task := fmt.Sprintf("crash-r%d-c%d", round, c)
			pad := 1 + rng.IntN(300) // frames of varied sizes
			clients.Go(func() {
				client := &http.Client{Timeout: 5 * time.Second}
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					meta := map[string]string{"n": strconv.Itoa(n), "pad": strings.Repeat(string(rune('a'+n%26)), pad)}
					mu.Lock()
					sent[sentKey{task, n}] = meta
					mu.Unlock()
					id, err := postBody(t.Context(), client, url, crashSecret, string(envelope(task, "started", n, meta)))
					if err == nil {
						mu.Lock()
						acked[id] = sentKey{task, n}
						roundAcked++
						mu.Unlock()
					}
				}
			})
		}
		sinktest.WaitFor(t, fmt.Sprintf("%d events acknowledged in round %d", killAt, round), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return roundAcked >= killAt
		})
		p.kill(t)
		close(stop)
		clients.Wait()

		wantTorn = -1
		if round%2 == 1 {
			// In turn from a random first one: every kind in four
			// damaged rounds.
			kind := tailDamages[(round/2+damageOffset)%len(tailDamages)]
			wantTorn = damageLastSegment(t, spoolDir, kind, rng)
			injected++
			t.Logf("round %d: killed after %d acknowledged; damaged the last segment's tail: %s", round, roundAcked, kind.name)
		}
	}

	// Every acknowledged event is there; every message is one that was
	// sent, with the data sent; none twice. A kill between a publish and
	// the removal of its record redelivers it on the next start, but
	// within the stream's duplicate window (2m) JetStream drops the copy
	// by its Nats-Msg-Id, so a second copy is a bug, not bad luck.
	stored := 0
	ids := map[string]int{}
	for _, m := range sinktest.ReadStream(t, js, "HOOKBRIDGE") {
		stored++
		ce := sinktest.ReadCloudEvent(t, m.Data())
		ids[ce.ID]++
		key := sentKey{ce.Data.TaskID, ce.N()}
		meta, ok := sent[key]
		switch {
		case !ok:
			t.Errorf("stored event %s (task %q n %d) was never sent", ce.ID, key.task, key.n)
		case !maps.Equal(ce.Data.Metadata, meta):
			t.Errorf("stored event %s has metadata %v, sent %v", ce.ID, ce.Data.Metadata, meta)
		}
		if k, ok := acked[ce.ID]; ok && k != key {
			t.Errorf("stored event %s is task %q n %d, but that id was answered for task %q n %d", ce.ID, key.task, key.n, k.task, k.n)
		}
	}
	for id, k := range acked {
		if ids[id] == 0 {
			t.Errorf("event %s (task %q n %d) was answered 200 but is not in the stream", id, k.task, k.n)
		}
	}
	dups, unacked := 0, 0
	for id, n := range ids {
		if n > 1 {
			dups++
			t.Errorf("event %s stored %d times", id, n)
		}
		if _, ok := acked[id]; !ok {
			unacked++ // stored, but the kill came before its answer
		}
	}
	t.Logf("%d rounds: %d events posted, %d acknowledged, %d stored (%d never answered 200, %d duplicated); torn tails injected %d, reported %d; kills that tore a write themselves %d",
		iterations, len(sent), len(acked), stored, unacked, dups, injected, counted, tornByKill)
}

// sentKey names one posted event: its task and its sequence number there.
type sentKey struct {
	task string
	n    int
}

// A tailDamage is what a crash in the middle of a write can leave after
// the last whole frame of the last segment. Each only adds bytes: the
// whole frames before were acknowledged and must not be touched.
type tailDamage struct {
	name string
	// bytes returns the bytes to append, given the segment's last whole
	// frame (header included).
	bytes func(rng *rand.Rand, lastFrame []byte) []byte
}

var tailDamages = []tailDamage{
	{"a frame header promising more bytes than follow", func(rng *rand.Rand, _ []byte) []byte {
		follow := make([]byte, rng.IntN(32))
		h := make([]byte, 8, 8+len(follow))
		binary.LittleEndian.PutUint32(h, uint32(len(follow)+1+rng.IntN(4096)))
		binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(follow, crc32.MakeTable(crc32.Castagnoli)))
		return append(h, follow...)
	}},
	{"random garbage", func(rng *rand.Rand, _ []byte) []byte {
		b := make([]byte, 1+rng.IntN(64))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}},
	{"the first bytes of the last frame written again", func(rng *rand.Rand, last []byte) []byte {
		return slices.Clone(last[:1+rng.IntN(len(last)-1)])
	}},
	{"zeros, the file extended but never written", func(rng *rand.Rand, _ []byte) []byte {
		return make([]byte, 1+rng.IntN(64))
	}},
}

// damageLastSegment appends kind's damage to the spool's last segment and
// returns how many bytes the next start must cut off: the damage, and
// whatever torn tail the kill itself left before it.
func damageLastSegment(t *testing.T, spoolDir string, kind tailDamage, rng *rand.Rand) int64 {
	t.Helper()
	path := lastSegment(t, spoolDir)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:8]) != "hbspool\x01" {
		t.Fatalf("%s does not start with the spool magic", path)
	}
	// Walk the whole frames, as recovery does, to the last one.
	end, last := 8, []byte(nil)
	for end+8 <= len(b) {
		n := int(binary.LittleEndian.Uint32(b[end:]))
		if n == 0 || end+8+n > len(b) || crc32.Checksum(b[end+8:end+8+n], crc32.MakeTable(crc32.Castagnoli)) != binary.LittleEndian.Uint32(b[end+4:]) {
			break
		}
		last, end = b[end:end+8+n], end+8+n
	}
	if last == nil {
		t.Fatalf("%s holds no whole frame", path)
	}
	damage := kind.bytes(rng, last)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(damage); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return int64(len(b) - end + len(damage))
}

// lastSegment is the path of the spool's newest segment.
func lastSegment(t *testing.T, spoolDir string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(spoolDir, strings.Repeat("[0-9]", 20)+".log"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no spool segment in %s (%v)", spoolDir, err)
	}
	return segs[len(segs)-1] // 20 digits: names sort as numbers
}

// tornMsg begins the line a start logs when it cut off a torn write.
const tornMsg = "spool: cut off the end of the log"

// binaryRun is the real binary serving, logging JSON.
type binaryRun struct {
	cmd    *exec.Cmd
	logs   *sinktest.Buffer
	exited chan struct{} // closed once it exited
	admin  string        // the admin listener's address
}

// startBinary runs bin serve -config config -log-format json and waits
// until it listens; it is killed when the test ends if still running.
func startBinary(t *testing.T, bin, config string) *binaryRun {
	t.Helper()
	p := &binaryRun{logs: &sinktest.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "-config", config, "-log-format", "json")
	p.cmd.Env = append(os.Environ(), "BROWSER_USE_WEBHOOK_SECRET="+crashSecret)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	sinktest.WaitFor(t, "hookbridge to listen", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("hookbridge exited (%v) before it listened:\n%s", p.cmd.ProcessState, p.logs.String())
		default:
		}
		if l := p.line(t, "hookbridge listening"); l != nil {
			p.admin, _ = l["admin"].(string)
			return true
		}
		return false
	})
	return p
}

// lines are the complete JSON log lines so far.
func (p *binaryRun) lines(t *testing.T) []map[string]any {
	t.Helper()
	return jsonLines(t, p.logs.String())
}

// line is the first log line whose msg starts with prefix, nil if none.
func (p *binaryRun) line(t *testing.T, prefix string) map[string]any {
	t.Helper()
	for _, l := range p.lines(t) {
		if msg, _ := l["msg"].(string); strings.HasPrefix(msg, prefix) {
			return l
		}
	}
	return nil
}

// tornLine is the WARN line saying a torn write was cut off, nil if none.
func (p *binaryRun) tornLine(t *testing.T) map[string]any {
	t.Helper()
	l := p.line(t, tornMsg)
	if l != nil && l["level"] != "WARN" {
		t.Errorf("%q logged at level %v, want WARN", tornMsg, l["level"])
	}
	return l
}

// get returns the body of the admin listener's path, failing on anything
// but 200.
func (p *binaryRun) get(t *testing.T, path string) string {
	t.Helper()
	code, body := p.status(t, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return body
}

// status returns the status and body of the admin listener's path.
func (p *binaryRun) status(t *testing.T, path string) (int, string) {
	t.Helper()
	return httpGet(t, "http://"+p.admin+path)
}

// kill SIGKILLs it and waits until it is gone.
func (p *binaryRun) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// stop SIGTERMs it and waits until it is gone.
func (p *binaryRun) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// envInt is the integer in environment variable name, def when unset.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

// buildBinary builds hookbridge into dir, or skips the test under -short.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(dir, "hookbridge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// waitStored waits until the HOOKBRIDGE stream holds every event of ids
// and returns how many times it holds each event.
func waitStored(t *testing.T, js jetstream.JetStream, ids []string) map[string]int {
	t.Helper()
	var stored map[string]int
	sinktest.WaitFor(t, "every acknowledged event in JetStream", func() bool {
		if sinktest.StreamCount(js, "HOOKBRIDGE") < len(ids) {
			return false
		}
		stored = storedIDs(t, t.Context(), js)
		for _, id := range ids {
			if stored[id] == 0 {
				return false
			}
		}
		return true
	})
	return stored
}

// storedIDs counts the events in the HOOKBRIDGE stream by CloudEvents id.
func storedIDs(t *testing.T, ctx context.Context, js jetstream.JetStream) map[string]int {
	t.Helper()
	ids := map[string]int{}
	if sinktest.StreamCount(js, "HOOKBRIDGE") <= 0 {
		return ids // no stream yet: the caller polls again
	}
	for _, m := range sinktest.ReadStream(t, js, "HOOKBRIDGE") {
		ids[sinktest.ReadCloudEvent(t, m.Data()).ID]++
	}
	return ids
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

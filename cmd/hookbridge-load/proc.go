package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// child is a receiver running in its own process, so its memory and CPU
// are its own and not the load generator's.
type child struct {
	cmd    *exec.Cmd
	url    string // where deliveries go
	admin  string // hookbridge's admin listener, "" for the trivial server
	logs   *tailBuffer
	exited chan struct{}
}

// startHookbridge runs bin serve on cfgPath and waits until it is ready.
func startHookbridge(ctx context.Context, bin, cfgPath string, env []string) (*child, error) {
	cmd := exec.Command(bin, "serve", "-config", cfgPath, "-log-format", "json")
	cmd.Env = append(os.Environ(), env...)
	ch, lines, err := startChild(cmd)
	if err != nil {
		return nil, err
	}
	type listening struct {
		Msg   string `json:"msg"`
		Addr  string `json:"addr"`
		Admin string `json:"admin"`
	}
	found := make(chan listening, 1)
	go func() {
		for line := range lines {
			var l listening
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "hookbridge listening" {
				found <- l
				return
			}
		}
	}()
	select {
	case l := <-found:
		ch.url = "http://" + l.Addr + "/webhook"
		ch.admin = l.Admin
	case <-ch.exited:
		return nil, fmt.Errorf("hookbridge exited before listening:\n%s", ch.logs.String())
	case <-time.After(60 * time.Second):
		ch.stop()
		return nil, fmt.Errorf("hookbridge did not listen within 60s:\n%s", ch.logs.String())
	case <-ctx.Done():
		ch.stop()
		return nil, ctx.Err()
	}
	if err := waitReady(ctx, "http://"+ch.admin+"/readyz", ch.exited); err != nil {
		ch.stop()
		return nil, fmt.Errorf("%w\n%s", err, ch.logs.String())
	}
	return ch, nil
}

// startBaseline runs this program again as a baseline server: role is
// "trivial" or "bare" (see serveBare).
func startBaseline(ctx context.Context, role string, env ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	ch, lines, err := startChild(cmd)
	if err != nil {
		return nil, err
	}
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(line, "listening on ")
		if !ok {
			ch.stop()
			return nil, fmt.Errorf("%s server said %q", role, line)
		}
		ch.url = "http://" + addr + "/webhook"
	case <-ch.exited:
		return nil, fmt.Errorf("%s server exited:\n%s", role, ch.logs.String())
	case <-ctx.Done():
		ch.stop()
		return nil, ctx.Err()
	}
	go func() {
		for range lines {
		}
	}()
	return ch, nil
}

// startChild starts cmd with its stdout and stderr going to a bounded
// buffer and, line by line, to the returned channel.
func startChild(cmd *exec.Cmd) (*child, <-chan string, error) {
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	ch := &child{cmd: cmd, logs: &tailBuffer{max: 16 << 10}, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(ch.exited)
	}()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			ch.logs.add(sc.Text())
			select {
			case lines <- sc.Text():
			default: // nobody listening any more: keep only the tail
			}
		}
	}()
	return ch, lines, nil
}

// stop asks the child to shut down and waits for it.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

func waitReady(ctx context.Context, url string, exited <-chan struct{}) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("hookbridge exited before it was ready")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready within 60s", url)
}

// procStats is what the kernel says about a process.
type procStats struct {
	rss, peak  int64         // bytes: VmRSS, VmHWM
	anon, file int64         // bytes: RssAnon (heap, stacks) and RssFile (the binary's mapped pages), now
	cpu        time.Duration // user + system
}

// memSampler follows a process's anonymous memory, which VmHWM does not
// tell apart from the binary's mapped pages: the peak of RssAnon, and
// RssFile at that moment.
type memSampler struct {
	once sync.Once
	stop chan struct{}
	done chan struct{}
	peak procStats // the sample with the most anonymous memory
}

func sampleMemory(pid int, every time.Duration) *memSampler {
	m := &memSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if s, ok := readProcStats(pid); ok && s.anon > m.peak.anon {
				m.peak = s
			}
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// end stops sampling and returns the sample with the most anonymous
// memory. Calling it again returns the same.
func (m *memSampler) end() procStats {
	m.once.Do(func() { close(m.stop) })
	<-m.done
	return m.peak
}

// readProcStats reads /proc (Linux only; elsewhere ok is false).
func readProcStats(pid int) (procStats, bool) {
	var s procStats
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, false
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			s.rss = kb << 10
		case "VmHWM":
			s.peak = kb << 10
		case "RssAnon":
			s.anon = kb << 10
		case "RssFile":
			s.file = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, false
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15.
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) > 12 {
		const ticksPerSecond = 100 // USER_HZ, 100 on every Linux ABI Go supports
		u, _ := strconv.ParseInt(f[11], 10, 64)
		sy, _ := strconv.ParseInt(f[12], 10, 64)
		s.cpu = time.Duration(u+sy) * time.Second / ticksPerSecond
	}
	return s, true
}

// serveTrivial is the baseline receiver: it reads the body and answers
// 200, with net/http's defaults, as small a webhook endpoint as Go has.
func serveTrivial() int {
	answer := []byte(`{"ok":true}` + "\n")
	return serveBaseline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}))
}

// serveBare is the floor of a JetStream bridge: it reads the body,
// publishes it as it is to JetStream (bare.event, with a random
// Nats-Msg-Id) and answers 200 once the PubAck came, with nothing else:
// no signature, no event, no routing. It shows what the broker and its Go
// client cost on this machine, so hookbridge's own share can be told
// apart.
//
// With spoolEnv set it is the floor of a spooling bridge instead
// (bare-spool): it appends the body to a log file in that directory,
// answers once a group commit's single fsync covered it (for a file that
// grows, as much work as fdatasync: its size must be journaled), and
// publishes to JetStream afterwards, in the background — no index, no
// removal, no retries: less than any spool that survives a restart needs.
func serveBare() int {
	js, err := bareJetStream(os.Getenv(natsURLEnv), os.Getenv(storeEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	publish := func(body []byte) (jetstream.PubAckFuture, error) {
		var id [16]byte
		_, _ = rand.Read(id[:])
		m := natsgo.NewMsg("bare.event")
		m.Header.Set(jetstream.MsgIDHeader, hex.EncodeToString(id[:]))
		m.Data = body
		return js.PublishMsgAsync(m)
	}
	var log *groupLog
	if dir := os.Getenv(spoolEnv); dir != "" {
		if log, err = openGroupLog(filepath.Join(dir, "bare-spool.log"), publish); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return serveBaseline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		if log != nil {
			err = log.append(ctx, body)
		} else {
			var f jetstream.PubAckFuture
			if f, err = publish(body); err == nil {
				select {
				case <-f.Ok():
				case err = <-f.Err():
				case <-ctx.Done():
					err = ctx.Err()
				}
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}` + "\n"))
	}))
}

// groupLog is bare-spool's log: one writer appends whatever requests
// are waiting, fsyncs once for all of them, answers them, and hands
// the bodies to publish.
type groupLog struct {
	reqs chan logAppend
}

type logAppend struct {
	body []byte
	done chan error
}

func openGroupLog(path string, publish func([]byte) (jetstream.PubAckFuture, error)) (*groupLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	l := &groupLog{reqs: make(chan logAppend, 1024)}
	go func() {
		var buf []byte
		for first := range l.reqs {
			group := []logAppend{first}
			for more := true; more; {
				select {
				case a := <-l.reqs:
					group = append(group, a)
				default:
					more = false
				}
			}
			buf = buf[:0]
			for _, a := range group {
				buf = binary.AppendUvarint(buf, uint64(len(a.body)))
				buf = append(buf, a.body...)
			}
			_, err := f.Write(buf)
			if err == nil {
				err = f.Sync()
			}
			for _, a := range group {
				a.done <- err
			}
			if err == nil {
				for _, a := range group {
					if _, err := publish(a.body); err != nil {
						fmt.Fprintln(os.Stderr, "bare-spool: publish:", err)
					}
				}
			}
		}
	}()
	return l, nil
}

func (l *groupLog) append(ctx context.Context, body []byte) error {
	done := make(chan error, 1)
	select {
	case l.reqs <- logAppend{body, done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// bareJetStream connects to the NATS server at url, or, when url is
// "embedded", to a JetStream server started in this process with its
// store in storeDir and reached over an in-memory pipe, as hookbridge
// reaches its embedded one, with a stream for bare.>.
func bareJetStream(url, storeDir string) (jetstream.JetStream, error) {
	if url != "embedded" {
		nc, err := natsgo.Connect(url)
		if err != nil {
			return nil, err
		}
		return jetstream.New(nc)
	}
	srv, err := server.NewServer(&server.Options{DontListen: true, JetStream: true, StoreDir: storeDir, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, err
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		return nil, errors.New("embedded nats-server did not start in 10s")
	}
	nc, err := natsgo.Connect("", natsgo.InProcessServer(srv))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.CreateStream(ctx, streamConfig(bareStream, "bare.>"))
	return js, err
}

// serveBaseline serves h on a loopback port until SIGTERM, after telling
// the parent the port.
func serveBaseline(h http.Handler) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: h}
	go func() {
		sig := make(chan os.Signal, 1)
		signalNotify(sig)
		<-sig
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// tailBuffer keeps the last max bytes of a child's output for error
// messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, line...)
	t.b = append(t.b, '\n')
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// profileSeconds is how long -profile profiles the CPU: pprof's endpoint
// takes a duration up front, so size -n to keep hookbridge busy for it.
const profileSeconds = 5

// fetchProfile asks hookbridge's admin listener (server.pprof) for the
// profile named by query and returns a function that waits for it and
// writes it to path.
func fetchProfile(ctx context.Context, admin, query, path string) func() error {
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
			"http://"+admin+"/debug/pprof/"+query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- fmt.Errorf("profile %s: %w", query, err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("profile %s: %s", query, resp.Status)
			return
		}
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		done <- errors.Join(err, f.Close())
	}()
	return func() error { return <-done }
}

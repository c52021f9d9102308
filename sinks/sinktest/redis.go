package sinktest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// RedisServer is a private redis-server a test started: on a loopback
// port of its own, in a temporary directory, never the system service.
type RedisServer struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd  // nil while stopped
	exited chan error // receives cmd.Wait()'s result
}

// Redis starts a private redis-server (Debian's redis-server package) on
// a free loopback port, without persistence, and waits until it answers
// PING. It returns the server's URL, a stop function that kills it
// (connections are then refused), and the server, which can also be
// restarted on the same port or made to hang. The server is killed when
// the test ends.
//
// Without redis-server the test is skipped, or fails when
// HOOKBRIDGE_TEST_REQUIRE_SERVERS=1 (CI, where a skip would hide a gap).
func Redis(t testing.TB) (url string, stop func(), srv *RedisServer) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		const install = "apt-get install -y --no-install-recommends redis-server"
		if os.Getenv("HOOKBRIDGE_TEST_REQUIRE_SERVERS") == "1" {
			t.Fatalf("redis-server not installed and HOOKBRIDGE_TEST_REQUIRE_SERVERS=1: %s", install)
		}
		t.Skipf("redis-server not installed: %s", install)
	}
	srv = &RedisServer{t: t, bin: bin, dir: t.TempDir(), port: FreePort(t)}
	t.Cleanup(srv.Stop)
	srv.Start()
	return srv.URL(), srv.Stop, srv
}

// URL is the server's redis:// URL, database 0.
func (s *RedisServer) URL() string { return "redis://" + s.Addr() + "/0" }

// Addr is the server's host:port.
func (s *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Start starts the server on its port, empty (nothing is persisted), and
// waits until it answers PING. It does nothing when the server runs.
func (s *RedisServer) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	logFile := filepath.Join(s.dir, "redis.log")
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", logFile)
	// A process group of its own, so that Stop kills anything it spawned.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.cmd = cmd
	cl := goredis.NewClient(&goredis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer cl.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := cl.Ping(ctx).Err()
		cancel()
		if err == nil {
			break
		}
		select {
		case werr := <-exited:
			s.cmd = nil
			log, _ := os.ReadFile(logFile)
			s.t.Fatalf("redis-server on port %d exited (%v) before answering PING:\n%s", s.port, werr, log)
		default:
		}
		if time.Now().After(deadline) {
			s.killLocked(cmd, exited)
			s.t.Fatalf("redis-server on port %d does not answer PING: %v", s.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.exited = exited
}

// Stop kills the server: its port then refuses connections. It does
// nothing when the server is stopped.
func (s *RedisServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.killLocked(s.cmd, s.exited)
	}
}

// killLocked kills cmd's process group, a stopped one too (SIGKILL needs
// no SIGCONT), and waits until it has exited.
func (s *RedisServer) killLocked(cmd *exec.Cmd, exited chan error) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
	s.cmd = nil
}

// Hang stops the server process (SIGSTOP): connections stay open and
// nothing is answered until release (SIGCONT).
func (s *RedisServer) Hang() (release func()) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatal("Hang: redis-server is not running")
	}
	pid := s.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		s.t.Fatalf("SIGSTOP redis-server: %v", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.cmd != nil && s.cmd.Process.Pid == pid {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		})
	}
}

// RedisClient is a go-redis client of url, closed when the test ends.
func RedisClient(t testing.TB, url string) *goredis.Client {
	t.Helper()
	opts, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	cl := goredis.NewClient(opts)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// RedisStream reads every entry of stream with XRANGE, in stream order;
// none when it does not exist.
func RedisStream(t testing.TB, cl *goredis.Client, stream string) []goredis.XMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs, err := cl.XRange(ctx, stream, "-", "+").Result()
	if err != nil {
		t.Fatal(fmt.Errorf("XRANGE %s: %w", stream, err))
	}
	return msgs
}

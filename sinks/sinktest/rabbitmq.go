package sinktest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitMQServerBinary is Debian's rabbitmq-server start script, run
// directly: the /usr/sbin wrapper switches to the rabbitmq user, which a
// test cannot.
const RabbitMQServerBinary = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// rabbitMQStartTimeout bounds a broker's start: it answers after about
// 8 s on an idle machine, and a loaded CI runner can take several times
// that.
const rabbitMQStartTimeout = 90 * time.Second

// NeedRabbitMQ skips the test when rabbitmq-server is not installed, or
// fails it when HOOKBRIDGE_TEST_REQUIRE_SERVERS=1 says it must be.
func NeedRabbitMQ(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(RabbitMQServerBinary); err == nil {
		return
	}
	if os.Getenv("HOOKBRIDGE_TEST_REQUIRE_SERVERS") == "1" {
		t.Fatalf("%s not found and HOOKBRIDGE_TEST_REQUIRE_SERVERS=1: apt-get install -y --no-install-recommends rabbitmq-server", RabbitMQServerBinary)
	}
	t.Skip("rabbitmq-server not installed: apt-get install -y --no-install-recommends rabbitmq-server")
}

// RabbitMQServer is a private rabbitmq-server on loopback ports of its
// own, with its data in a directory of its own: never the system
// service. Stop and Start restart it on the same ports with the same
// data, as a broker restart does.
type RabbitMQServer struct {
	dir                      string
	port, distPort, epmdPort int
	cmd                      *exec.Cmd
	exited                   chan struct{} // closed when cmd has been waited for
}

// RabbitMQ starts a private broker in t.TempDir() and stops it, with the
// epmd it started, when the test ends. A broker takes seconds to start:
// tests that can share one use StartRabbitMQ once per test binary.
func RabbitMQ(t testing.TB) *RabbitMQServer {
	t.Helper()
	NeedRabbitMQ(t)
	r, err := StartRabbitMQ(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// StartRabbitMQ starts a private broker with its data in dir and waits
// until it takes AMQP connections. The caller calls Close; dir is the
// caller's to remove after. The binary must exist (see NeedRabbitMQ).
func StartRabbitMQ(dir string) (*RabbitMQServer, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "plugins"), []byte("[].\n"), 0o644); err != nil {
		return nil, err
	}
	r := &RabbitMQServer{dir: dir, port: ports[0], distPort: ports[1], epmdPort: ports[2]}
	if err := r.Start(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// freePorts returns n distinct loopback ports free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close() // held until all are chosen, so they differ
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Addr is the broker's AMQP host:port.
func (r *RabbitMQServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// URL is the AMQP URL of the broker's default virtual host as guest,
// whom RabbitMQ lets in on loopback.
func (r *RabbitMQServer) URL() string { return "amqp://guest:guest@" + r.Addr() + "/" }

// Start starts the broker, stopped by Stop, again on the same ports
// with the same data, and waits until it takes AMQP connections.
func (r *RabbitMQServer) Start() error {
	if r.cmd != nil {
		return errors.New("rabbitmq-server is already running")
	}
	out, err := os.OpenFile(filepath.Join(r.dir, "out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(RabbitMQServerBinary)
	cmd.Dir = r.dir
	cmd.Env = r.env()
	cmd.Stdout, cmd.Stderr = out, out
	// A process group of its own: Stop signals the script and the Erlang
	// VM it starts together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", RabbitMQServerBinary, err)
	}
	return r.waitStarted(cmd)
}

// env is the broker's environment, which rabbitmqctl needs too to find
// it: its node name, its epmd and its Erlang cookie (in HOME).
func (r *RabbitMQServer) env() []string {
	return append(os.Environ(),
		"HOME="+r.dir, // where Erlang keeps its cookie
		"RABBITMQ_NODENAME=hookbridge-test-"+strconv.Itoa(r.port)+"@localhost",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(r.port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(r.distPort),
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_MNESIA_BASE="+filepath.Join(r.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(r.dir, "log"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(r.dir, "plugins"),
		"RABBITMQ_FEATURE_FLAGS_FILE="+filepath.Join(r.dir, "ff"),
		"RABBITMQ_PLUGINS_EXPAND_DIR="+filepath.Join(r.dir, "expand"),
		"RABBITMQ_PID_FILE="+filepath.Join(r.dir, "pid"),
		"ERL_EPMD_PORT="+strconv.Itoa(r.epmdPort),
	)
}

// waitStarted waits until cmd, the broker just started, takes AMQP
// connections.
func (r *RabbitMQServer) waitStarted(cmd *exec.Cmd) error {
	r.cmd, r.exited = cmd, make(chan struct{})
	exited := r.exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(rabbitMQStartTimeout)
	for {
		conn, err := amqp.DialConfig(r.URL(), amqp.Config{Dial: amqp.DefaultDial(time.Second)})
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-exited:
			r.cmd = nil
			return fmt.Errorf("rabbitmq-server exited before taking connections:\n%s", r.logTail())
		default:
		}
		if time.Now().After(deadline) {
			r.Stop()
			return fmt.Errorf("rabbitmq-server did not take connections on %s within %v (%v):\n%s", r.Addr(), rabbitMQStartTimeout, err, r.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logTail is the end of what the broker printed, for errors.
func (r *RabbitMQServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "out"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(bytes.TrimSpace(b))
}

// Stop shuts the broker down, gracefully (SIGTERM, as systemd does), so
// that its durable queues and persistent messages are there when Start
// runs it again; it kills it after a minute. epmd keeps running, for the
// next Start.
func (r *RabbitMQServer) Stop() {
	if r.cmd == nil {
		return
	}
	pgid := r.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(time.Minute):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-r.exited
	}
	// The VM's helpers (erl_child_setup, the disk monitor's shell) are in
	// sessions of their own and end with it.
	r.cmd = nil
}

// Close stops the broker and the epmd it started on its own port, which
// runs detached from the broker's process group and would outlive it.
func (r *RabbitMQServer) Close() {
	r.Stop()
	epmd := exec.Command("epmd", "-kill")
	epmd.Env = append(os.Environ(), "ERL_EPMD_PORT="+strconv.Itoa(r.epmdPort))
	epmd.Run() // nothing to kill if it never started
}

// Ctl runs rabbitmqctl with args against the broker, e.g.
// "set_vm_memory_high_watermark", "0", and returns what it printed.
func (r *RabbitMQServer) Ctl(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(filepath.Dir(RabbitMQServerBinary), "rabbitmqctl"), args...)
	cmd.Env = r.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl %v: %w: %s", args, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// RabbitMQQueue declares a durable queue named name on the broker at url
// and binds it to exchange with each binding key, until the test ends:
// what a test reads messages from, bound before the sink publishes.
func RabbitMQQueue(t testing.TB, url, exchange, name string, bindingKeys ...string) {
	t.Helper()
	ch := RabbitMQChannel(t, url)
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for _, key := range bindingKeys {
		if err := ch.QueueBind(name, key, exchange, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if ch.IsClosed() {
			return // the test stopped the broker
		}
		ch.QueueDelete(name, false, false, false)
	})
}

// RabbitMQChannel opens a connection and a channel to the broker at url
// with the real client, closed when the test ends.
func RabbitMQChannel(t testing.TB, url string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// ReadRabbitMQQueue gets every message queue holds, in queue order, with
// the real client, and acknowledges them: the queue is empty after.
func ReadRabbitMQQueue(t testing.TB, url, queue string) []amqp.Delivery {
	t.Helper()
	ch := RabbitMQChannel(t, url)
	var out []amqp.Delivery
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

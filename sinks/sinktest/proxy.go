package sinktest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards TCP connections to a broker until the test ends. Hold
// makes the broker look hung: connections stay open and what either side
// sends waits in the proxy, unanswered, until released.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cond   *sync.Cond // signalled when held or closed changes
	held   bool
	closed bool
	conns  map[net.Conn]bool
	wg     sync.WaitGroup

	waiting atomic.Int64 // bytes clients sent that wait while held
}

// StartProxy listens on a free loopback port and forwards every
// connection to target (host:port).
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Hold stops forwarding, in both directions, until release is called.
func (p *Proxy) Hold() (release func()) {
	p.mu.Lock()
	p.held = true
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			p.held = false
			p.cond.Broadcast()
			p.mu.Unlock()
		})
	}
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			return
		}
		p.wg.Go(func() { p.pipe(up, c, true) })
		p.wg.Go(func() { p.pipe(c, up, false) })
	}
}

// track records a connection pair, or closes it if the proxy is closed.
func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = true
	}
	return true
}

// Waiting is how many bytes clients sent that the proxy holds: a client
// has written into the hung path once it is above 0.
func (p *Proxy) Waiting() int64 { return p.waiting.Load() }

// pipe copies src to dst, waiting while the proxy is held, and closes
// both when either side ends. fromClient counts what waits.
func (p *Proxy) pipe(dst, src net.Conn, fromClient bool) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromClient && p.isHeld() {
				p.waiting.Add(int64(n))
			}
			if !p.wait() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) isHeld() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

// wait blocks while the proxy is held; false once it is closed.
func (p *Proxy) wait() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.held && !p.closed {
		p.cond.Wait()
	}
	return !p.closed
}

// Close closes p at once, as the end of the test would: its connections
// end and new ones are refused, so the broker behind it looks down to the
// client while other tests keep using it. It may be called more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

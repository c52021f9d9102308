package ingress

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
)

// net/http serves a request that has both Transfer-Encoding and
// Content-Length by the chunked body, deleting Content-Length before a
// handler sees it, and keeps the connection open. RFC 9112 §6.1 says such
// a message "ought to be handled as an error" and the connection closed
// after it: a proxy in front that framed it by Content-Length would read
// the rest as another request (smuggling). The header block is only
// visible on the wire, so ScanFraming watches the bytes as net/http reads
// them.

// ScanFraming wraps l's connections so that the webhook handler can tell a
// request that declared both Transfer-Encoding and Content-Length. Serve
// with ConnContext. It is for plain HTTP: over TLS net/http needs the
// *tls.Conn itself, and a wrapper above it would hide it.
func ScanFraming(l net.Listener) net.Listener { return framingListener{l} }

type framingListener struct{ net.Listener }

func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c}, nil
}

type connKey struct{}

// ConnContext is the http.Server.ConnContext for ScanFraming's
// connections: it lets the handler find the connection's scan.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*framingConn); ok {
		return context.WithValue(ctx, connKey{}, fc)
	}
	return ctx
}

// framingConflict reports whether a header block read on ctx's
// connection had both Transfer-Encoding and Content-Length.
func framingConflict(ctx context.Context) bool {
	fc, ok := ctx.Value(connKey{}).(*framingConn)
	return ok && fc.conflict.Load()
}

// framingConn notes the start of every line read: a header block is the
// lines up to an empty one. Body lines pass through the same scan; only
// the sender's own request can put a "Content-Length:" line there.
type framingConn struct {
	net.Conn
	head     [len("transfer-encoding:")]byte // the current line's first bytes
	n        int                             // of head filled
	lineLen  int                             // the current line's length so far, capped
	te, cl   bool                            // seen in the current block
	conflict atomic.Bool                     // latched: the handler reads it from another goroutine
}

func (c *framingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.scan(p[:n])
	return n, err
}

func (c *framingConn) scan(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if c.n < len(c.head) {
			c.n += copy(c.head[c.n:], seg)
		}
		c.lineLen = min(c.lineLen+len(seg), 2)
		if i < 0 {
			return
		}
		c.endLine()
		p = p[i+1:]
	}
}

func (c *framingConn) endLine() {
	line := c.head[:c.n]
	switch {
	case c.lineLen == 0 || c.lineLen == 1 && line[0] == '\r':
		if c.te && c.cl {
			c.conflict.Store(true)
		}
		c.te, c.cl = false, false
	case hasPrefixFold(line, "content-length:"):
		c.cl = true
	case hasPrefixFold(line, "transfer-encoding:"):
		c.te = true
	}
	c.n, c.lineLen = 0, 0
}

// hasPrefixFold is bytes.HasPrefix ignoring ASCII case; prefix is lower
// case.
func hasPrefixFold(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i := range len(prefix) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

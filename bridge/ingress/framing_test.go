package ingress

import "testing"

// The scan sees a header block however the reads split it, and only when
// both framings are in the same block.
func TestFramingScan(t *testing.T) {
	for _, tt := range []struct {
		name, wire string
		conflict   bool
	}{
		{"both", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"both, odd case, bare LF", "POST / HTTP/1.1\nTRANSFER-encoding: chunked\ncontent-LENGTH: 3\n\n", true},
		{"length only", "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", false},
		{"chunked only", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false},
		{"in two requests", "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
		{"a lookalike header", "POST / HTTP/1.1\r\nX-Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", false},
	} {
		for _, step := range []int{1, 7, len(tt.wire)} {
			c := &framingConn{}
			for i := 0; i < len(tt.wire); i += step {
				c.scan([]byte(tt.wire[i:min(i+step, len(tt.wire))]))
			}
			if got := c.conflict.Load(); got != tt.conflict {
				t.Errorf("%s, read %d bytes at a time: conflict %v, want %v", tt.name, step, got, tt.conflict)
			}
		}
	}
}

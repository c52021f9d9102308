package local

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/hookbridge/hookbridge/bridge/queue"
)

// The log is a sequence of segment files in the spool directory, named by
// a number that grows by one with each new segment, 20 decimal digits so
// that their names sort as their numbers do:
//
//	00000000000000000001.log
//
// A segment starts with an 8-byte magic and holds frames, each one write
// request of the store (an append, a removal, a retry, ...) applied whole
// or not at all:
//
//	frame   = u32 length of payload | u32 CRC-32C of payload | payload
//	payload = op*
//	op      = opPut    uvarint seq, byte state, u32 length, record
//	        | opDelete uvarint count, uvarint seq * count
//	        | opNext   uvarint next seq
//
// All integers of the frame header are little-endian. A record is encoded
// by package queue (Marshal); the latest put of a seq is its current
// version, and a delete ends it. Every segment begins with an opNext frame
// carrying the next seq to assign when it was created, so that a seq is
// never reused even after every earlier segment is gone.
const (
	segmentMagic  = "hbspool\x01"
	segmentSuffix = ".log"
	frameHeader   = 8

	opPut    byte = 1
	opDelete byte = 2
	opNext   byte = 3

	statePending byte = 0
	stateDead    byte = 1

	// maxFrame bounds what recovery believes a frame's length field: a
	// torn header must not make it read (or allocate) gigabytes.
	maxFrame = 1 << 30
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// segment is one file of the log.
type segment struct {
	id   uint64
	path string
	f    *os.File
	size int64 // bytes written and synced: where the next frame goes

	// live counts the records whose current version is in this segment,
	// liveBytes their encoded length: a segment none holds is reclaimed,
	// one mostly empty is compacted.
	live      int
	liveBytes int64
}

func segmentName(id uint64) string { return fmt.Sprintf("%020d%s", id, segmentSuffix) }

// listSegments returns the ids of the segment files in dir, in order.
// Other files (the lock, a migrated bbolt file) are not the log's.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segmentSuffix)
		if !ok || len(name) != 20 || !e.Type().IsRegular() {
			continue
		}
		id, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// createSegment creates segment id in dir with its magic and an opNext
// frame for next, fsyncs it and the directory, and returns it open for
// appending frames.
func createSegment(dir string, id, next uint64) (*segment, error) {
	path := filepath.Join(dir, segmentName(id))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create spool segment: %w", err)
	}
	b := segmentStart(next)
	_, err = f.WriteAt(b, 0)
	if err == nil {
		err = datasync(f)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("create spool segment %s: %w", path, err)
	}
	return &segment{id: id, path: path, f: f, size: int64(len(b))}, nil
}

// segmentStart is how every segment begins: the magic, then a frame
// holding the next seq to assign.
func segmentStart(next uint64) []byte {
	fb := frameBuilder{buf: []byte(segmentMagic)}
	fb.begin()
	fb.next(next)
	fb.end()
	return fb.buf
}

// sealFrame fills in the header of the frame that frame holds (header
// included) from its payload.
func sealFrame(frame []byte) {
	payload := frame[frameHeader:]
	binary.LittleEndian.PutUint32(frame[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(frame[4:8], crc32.Checksum(payload, crcTable))
}

// errTorn marks the end of a segment's readable frames: what follows is
// not a whole frame (a write cut short by a crash) or fails its checksum.
var errTorn = errors.New("torn frame")

// frameReader reads a segment's frames in order.
type frameReader struct {
	r       *bufio.Reader
	off     int64 // offset of the next frame
	size    int64 // the file's size
	payload []byte
}

// next returns the next frame's payload (valid until the following call)
// and its offset in the file; io.EOF at the clean end of the file, an
// error wrapping errTorn where the frames stop making sense.
func (fr *frameReader) next() (payload []byte, at int64, err error) {
	at = fr.off
	if at == fr.size {
		return nil, at, io.EOF
	}
	var h [frameHeader]byte
	if _, err := io.ReadFull(fr.r, h[:]); err != nil {
		return nil, at, fmt.Errorf("%w: %d bytes of a frame header", errTorn, fr.size-at)
	}
	n := int64(binary.LittleEndian.Uint32(h[0:4]))
	if n == 0 {
		// Never written (an empty frame is never written): zeros where
		// a crash extended the file without writing it.
		return nil, at, fmt.Errorf("%w: an empty frame", errTorn)
	}
	if n > maxFrame || at+frameHeader+n > fr.size {
		return nil, at, fmt.Errorf("%w: a frame of %d bytes with %d left in the file", errTorn, n, fr.size-at-frameHeader)
	}
	if int64(cap(fr.payload)) < n {
		fr.payload = make([]byte, n)
	}
	fr.payload = fr.payload[:n]
	if _, err := io.ReadFull(fr.r, fr.payload); err != nil {
		return nil, at, fmt.Errorf("read spool segment: %w", err)
	}
	if crc32.Checksum(fr.payload, crcTable) != binary.LittleEndian.Uint32(h[4:8]) {
		return nil, at, fmt.Errorf("%w: checksum mismatch in a frame of %d bytes", errTorn, n)
	}
	fr.off = at + frameHeader + n
	return fr.payload, at, nil
}

// op is one decoded operation of a frame.
type op struct {
	kind  byte
	seq   uint64   // opPut: the record's seq; opNext: the next seq
	state byte     // opPut
	val   []byte   // opPut: the encoded record, aliasing the payload
	valAt int      // opPut: offset of val in the payload
	seqs  []uint64 // opDelete
}

// parseOps decodes a frame's payload, calling f for each op. A payload
// that does not parse is reported as torn: its checksum matched, so only
// a foreign or newer writer makes one.
func parseOps(payload []byte, f func(op) error) error {
	b := payload
	for len(b) > 0 {
		var o op
		o.kind, b = b[0], b[1:]
		var n int
		switch o.kind {
		case opPut:
			if o.seq, n = binary.Uvarint(b); n <= 0 {
				return fmt.Errorf("%w: bad put seq", errTorn)
			}
			b = b[n:]
			if len(b) == 0 {
				return fmt.Errorf("%w: bad put state", errTorn)
			}
			o.state, b = b[0], b[1:]
			if o.state != statePending && o.state != stateDead {
				return fmt.Errorf("%w: unknown record state %d", errTorn, o.state)
			}
			if len(b) < 4 {
				return fmt.Errorf("%w: bad record length", errTorn)
			}
			l := binary.LittleEndian.Uint32(b)
			if uint64(l) > uint64(len(b)-4) {
				return fmt.Errorf("%w: bad record length", errTorn)
			}
			b = b[4:]
			o.valAt = len(payload) - len(b)
			o.val, b = b[:l:l], b[l:]
		case opDelete:
			count, n := binary.Uvarint(b)
			if n <= 0 || count > uint64(len(b)) {
				return fmt.Errorf("%w: bad delete count", errTorn)
			}
			b = b[n:]
			o.seqs = make([]uint64, count)
			for i := range o.seqs {
				if o.seqs[i], n = binary.Uvarint(b); n <= 0 {
					return fmt.Errorf("%w: bad delete seq", errTorn)
				}
				b = b[n:]
			}
		case opNext:
			if o.seq, n = binary.Uvarint(b); n <= 0 {
				return fmt.Errorf("%w: bad next seq", errTorn)
			}
			b = b[n:]
		default:
			return fmt.Errorf("%w: unknown operation %d", errTorn, o.kind)
		}
		if err := f(o); err != nil {
			return err
		}
	}
	return nil
}

// frameBuilder writes frames into a buffer: begin, the ops, end.
type frameBuilder struct {
	buf   []byte
	start int // where the open frame begins, -1 when none is open
}

func (fb *frameBuilder) begin() {
	fb.start = len(fb.buf)
	fb.buf = append(fb.buf, make([]byte, frameHeader)...)
}

// end closes the open frame; an empty one is taken back.
func (fb *frameBuilder) end() {
	if len(fb.buf) == fb.start+frameHeader {
		fb.buf = fb.buf[:fb.start]
	} else {
		sealFrame(fb.buf[fb.start:])
	}
	fb.start = -1
}

// abort takes the open frame back.
func (fb *frameBuilder) abort() {
	fb.buf = fb.buf[:fb.start]
	fb.start = -1
}

// put adds a put op of an encoded record and returns where the record
// starts in the buffer.
func (fb *frameBuilder) put(seq uint64, state byte, val []byte) int {
	at := fb.putHeader(seq, state)
	fb.buf = append(fb.buf, val...)
	fb.putLength(at)
	return at
}

// putRecord adds a put op of r, encoding it in place, and returns where
// the record starts in the buffer and its length.
func (fb *frameBuilder) putRecord(seq uint64, state byte, r *queue.Record, size int64) (at, n int) {
	at = fb.putHeader(seq, state)
	fb.buf = queue.AppendMarshal(fb.buf, r, size)
	return at, fb.putLength(at)
}

func (fb *frameBuilder) putHeader(seq uint64, state byte) int {
	fb.buf = append(fb.buf, opPut)
	fb.buf = binary.AppendUvarint(fb.buf, seq)
	fb.buf = append(fb.buf, state, 0, 0, 0, 0)
	return len(fb.buf)
}

// putLength fills in the length of the record that starts at at.
func (fb *frameBuilder) putLength(at int) int {
	n := len(fb.buf) - at
	binary.LittleEndian.PutUint32(fb.buf[at-4:at], uint32(n))
	return n
}

func (fb *frameBuilder) delete(seqs []uint64) {
	if len(seqs) == 0 {
		return
	}
	fb.buf = append(fb.buf, opDelete)
	fb.buf = binary.AppendUvarint(fb.buf, uint64(len(seqs)))
	for _, s := range seqs {
		fb.buf = binary.AppendUvarint(fb.buf, s)
	}
}

func (fb *frameBuilder) next(seq uint64) {
	fb.buf = append(fb.buf, opNext)
	fb.buf = binary.AppendUvarint(fb.buf, seq)
}

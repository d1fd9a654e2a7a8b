package storage

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Records in chunks: the framing of snapshot format version 5.
//
// A snapshot is a sequence of records (meta, members, auth, policies,
// documents, users, end). Up to version 4 a record was one frame, a
// uvarint length and that many bytes, and the reader refused frames over
// maxFrame: a document with a long history, or a large keyed result,
// could make a snapshot that no node could read back. From version 5 a
// record is carried by one or more chunks:
//
//	chunk  = header payload
//	header = uvarint(len(payload) << 1 | more)
//
// more = 1 says the record continues in the next chunk; the last chunk of
// a record has more = 0. A payload is 1 to maxSnapChunk bytes (the writer cuts
// at snapChunkTarget, anywhere, even inside a value), so no value has a size
// limit of the format's own. The reader gathers a record's chunks into a
// buffer that grows only with the bytes that arrive: a damaged or hostile
// header can make it fail, never allocate the size it claims.
const (
	snapChunkTarget = 64 << 10
	// maxSnapChunk is the most a reader accepts in one chunk: a bound on what
	// one header can ask it to read before it is checked again.
	maxSnapChunk = 1 << 20
)

// recordWriter writes records as chunks. Values are appended to e; spill
// writes out every full chunk, so the writer holds at most one chunk and
// the value being appended, never a whole large record.
type recordWriter struct {
	w   *bufio.Writer
	e   encoder
	hdr [binary.MaxVarintLen64]byte
	err error
	out int // bytes of the current record already written out
}

// size is the length of the current record so far.
func (rw *recordWriter) size() int { return rw.out + len(rw.e.b) }

func (rw *recordWriter) chunk(p []byte, more bool) {
	if rw.err != nil {
		return
	}
	h := uint64(len(p)) << 1
	if more {
		h |= 1
	}
	if _, rw.err = rw.w.Write(rw.hdr[:binary.PutUvarint(rw.hdr[:], h)]); rw.err == nil {
		_, rw.err = rw.w.Write(p)
	}
}

// spill writes out the record's bytes in full chunks, keeping the last
// 1..snapChunkTarget bytes (the record may end there).
func (rw *recordWriter) spill() {
	if len(rw.e.b) <= snapChunkTarget {
		return
	}
	b := rw.e.b
	for len(b) > snapChunkTarget {
		rw.chunk(b[:snapChunkTarget], true)
		b = b[snapChunkTarget:]
		rw.out += snapChunkTarget
	}
	rw.e.b = rw.e.b[:copy(rw.e.b, b)]
}

// end writes the rest of the record as its last chunk. A record is never
// empty: it starts with its type.
func (rw *recordWriter) end() error {
	rw.spill()
	rw.chunk(rw.e.b, false)
	rw.e.b, rw.out = rw.e.b[:0], 0
	return rw.err
}

// recordReader reads the records of a snapshot of any version: chunked
// records from version 5 on, single frames before.
type recordReader struct {
	r       *bufio.Reader
	chunked bool
	buf     bytes.Buffer
}

// next returns the next record's bytes, valid until the following call.
func (rr *recordReader) next() ([]byte, error) {
	rr.buf.Reset()
	if !rr.chunked {
		n, err := binary.ReadUvarint(rr.r)
		if err != nil {
			return nil, fmt.Errorf("%w: frame length: %v", ErrCorrupt, noEOF(err))
		}
		if n == 0 || n > maxFrame {
			return nil, fmt.Errorf("%w: frame length %d", ErrCorrupt, n)
		}
		if err := rr.read(n); err != nil {
			return nil, fmt.Errorf("%w: truncated frame: %v", ErrCorrupt, err)
		}
		return rr.buf.Bytes(), nil
	}
	for {
		h, err := binary.ReadUvarint(rr.r)
		if err != nil {
			return nil, fmt.Errorf("%w: chunk header at record byte %d: %v", ErrCorrupt, rr.buf.Len(), noEOF(err))
		}
		n, more := h>>1, h&1 == 1
		if n == 0 || n > maxSnapChunk {
			return nil, fmt.Errorf("%w: chunk of %d bytes (a chunk holds 1 to %d)", ErrCorrupt, n, maxSnapChunk)
		}
		if err := rr.read(n); err != nil {
			return nil, fmt.Errorf("%w: truncated chunk of %d bytes: %v", ErrCorrupt, n, err)
		}
		if !more {
			return rr.buf.Bytes(), nil
		}
	}
}

// read appends n bytes to the buffer, which grows with the bytes that
// arrive, not with n.
func (rr *recordReader) read(n uint64) error {
	got, err := io.CopyN(&rr.buf, rr.r, int64(n))
	if err == nil {
		return nil
	}
	return fmt.Errorf("%d of %d bytes: %v", got, n, noEOF(err))
}

// noEOF words a clean end of input inside a record as what it is.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// The binary encoding shared by commands and snapshots: unsigned varints,
// length-prefixed strings, nothing else. Encoding appends to a byte slice;
// decoding goes through a reader with a sticky error so that a decoder of
// outside bytes reads straight through and checks once at the end, and can
// never panic or allocate more than the input could describe.

// ErrCorrupt is wrapped by every decoding failure.
var ErrCorrupt = errors.New("corrupt encoding")

type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) byte1(v byte)     { e.b = append(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) bytes(p []byte)   { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *encoder) boolean(v bool)   { e.byte1(boolByte(v)) }
func (e *encoder) fixed64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

type decoder struct {
	b   []byte
	err error
	// v1 is set while reading a version 1 snapshot: its users carry no
	// authentication state.
	v1 bool
	// alias: strings alias the input instead of copying it. Only for
	// input whose bytes never change while the strings live (an arena),
	// or strings that are dropped before the input is reused.
	alias bool
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("unexpected end")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) boolean() bool {
	switch d.byte1() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad boolean")
	return false
}

func (d *decoder) fixed64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("unexpected end")
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// raw returns n bytes aliasing the input; callers copy what they keep.
func (d *decoder) raw() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length %d beyond end", n)
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

// str copies, since decoded values outlive the input buffer, unless the
// decoder aliases.
func (d *decoder) str() string {
	p := d.raw()
	if d.alias {
		return unsafe.String(unsafe.SliceData(p), len(p))
	}
	return string(p)
}

// bytes copies, like str; an empty value decodes as nil.
func (d *decoder) bytes() []byte {
	p := d.raw()
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

// hash reads a fixed 32-byte value.
func (d *decoder) hash(h *[32]byte) {
	if d.err != nil {
		return
	}
	if len(d.b) < len(h) {
		d.fail("hash beyond end")
		return
	}
	copy(h[:], d.b)
	d.b = d.b[len(h):]
}

// count reads a collection length and rejects one that the remaining input
// cannot hold (each element takes at least minSize bytes), so a hostile
// length cannot make the decoder allocate.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if minSize < 1 {
		minSize = 1
	}
	if n > uint64(len(d.b)/minSize) {
		d.fail("count %d beyond end", n)
		return 0
	}
	return int(n)
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}

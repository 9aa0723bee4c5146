// Package wire decodes fixed-layout binary structures (TPM structures are
// big-endian, TCG and IMA logs little-endian) from untrusted bytes. Every
// length is checked against what remains before it is used, so a hostile
// size field can never make a parser allocate or read beyond its input.
// The first error sticks; later reads return zero values.
package wire

import (
	"encoding/binary"
	"fmt"
)

// Reader reads from B starting at Off.
type Reader struct {
	B     []byte
	Off   int
	Err   error
	Order binary.ByteOrder
	// Malformed is the sentinel every failure wraps.
	Malformed error
}

// New returns a Reader over b.
func New(b []byte, order binary.ByteOrder, malformed error) *Reader {
	return &Reader{B: b, Order: order, Malformed: malformed}
}

// Fail records a failure (if none yet) describing what was being read.
func (r *Reader) Fail(what string) {
	if r.Err == nil {
		r.Err = fmt.Errorf("%w: %s at offset %d (%d bytes left)", r.Malformed, what, r.Off, len(r.B)-r.Off)
	}
}

// Left returns the number of unread bytes.
func (r *Reader) Left() int { return len(r.B) - r.Off }

// Bytes returns the next n bytes (aliasing B, capacity-limited).
func (r *Reader) Bytes(n int, what string) []byte {
	if r.Err != nil {
		return nil
	}
	if n < 0 || n > r.Left() {
		r.Fail(fmt.Sprintf("%s: %d bytes wanted", what, n))
		return nil
	}
	v := r.B[r.Off : r.Off+n : r.Off+n]
	r.Off += n
	return v
}

// U8 reads a byte.
func (r *Reader) U8(what string) uint8 {
	if b := r.Bytes(1, what); b != nil {
		return b[0]
	}
	return 0
}

// U16 reads a 16-bit integer.
func (r *Reader) U16(what string) uint16 {
	if b := r.Bytes(2, what); b != nil {
		return r.Order.Uint16(b)
	}
	return 0
}

// U32 reads a 32-bit integer.
func (r *Reader) U32(what string) uint32 {
	if b := r.Bytes(4, what); b != nil {
		return r.Order.Uint32(b)
	}
	return 0
}

// U64 reads a 64-bit integer.
func (r *Reader) U64(what string) uint64 {
	if b := r.Bytes(8, what); b != nil {
		return r.Order.Uint64(b)
	}
	return 0
}

// Sized reads a u16 length, rejects it above max, then that many bytes
// (a TPM2B_* in TPM structures).
func (r *Reader) Sized(max int, what string) []byte {
	n := int(r.U16(what + " size"))
	if r.Err == nil && n > max {
		r.Fail(fmt.Sprintf("%s size %d exceeds %d", what, n, max))
		return nil
	}
	return r.Bytes(n, what)
}

// Done fails if bytes remain: structures are parsed strictly.
func (r *Reader) Done(what string) error {
	if r.Err == nil && r.Left() != 0 {
		r.Fail(fmt.Sprintf("%d trailing bytes after %s", r.Left(), what))
	}
	return r.Err
}

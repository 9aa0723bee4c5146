package quote

import (
	"encoding/binary"
	"fmt"
)

// reader decodes big-endian TPM 2.0 structures (TPM 2.0 Part 1 §18.6) from
// untrusted bytes. Every length is checked against what remains before it is
// used, so a hostile size field can never make RIV allocate or read beyond
// the input. The first error sticks; later reads return zero values.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at offset %d (%d bytes left)", ErrMalformed, what, r.off, len(r.b)-r.off)
	}
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) bytes(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.left() {
		r.fail(what)
		return nil
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

func (r *reader) u8(what string) uint8 {
	if b := r.bytes(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16(what string) uint16 {
	if b := r.bytes(2, what); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if b := r.bytes(4, what); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if b := r.bytes(8, what); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// tpm2b reads a TPM2B_* (u16 size, then that many bytes), rejecting sizes
// above max (the structure's own bound in Part 2).
func (r *reader) tpm2b(max int, what string) []byte {
	n := int(r.u16(what + " size"))
	if r.err == nil && n > max {
		r.fail(fmt.Sprintf("%s size %d exceeds %d", what, n, max))
		return nil
	}
	return r.bytes(n, what)
}

// done fails if bytes remain: TPM structures are parsed strictly.
func (r *reader) done(what string) error {
	if r.err == nil && r.left() != 0 {
		r.fail(fmt.Sprintf("%d trailing bytes after %s", r.left(), what))
	}
	return r.err
}

// stripTPM2B removes a leading TPM2B size when it equals the length of the
// rest and the rest starts like the structure (looksLike). Tools disagree on
// whether files hold TPM2B_ATTEST or TPMS_ATTEST, so both are accepted.
func stripTPM2B(b []byte, looksLike func([]byte) bool) []byte {
	if len(b) >= 2 && int(binary.BigEndian.Uint16(b)) == len(b)-2 && looksLike(b[2:]) && !looksLike(b) {
		return b[2:]
	}
	return b
}

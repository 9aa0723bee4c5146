package alg

import (
	"encoding/binary"
	"hash"
	"math/bits"
)

// sm3 implements the SM3 hash (GB/T 32905-2016, ISO/IEC 10118-3:2018), the
// TPM_ALG_SM3_256 PCR bank. Go's standard library has no SM3, and TPMs sold
// in China allocate this bank, so RIV carries its own small implementation.
type sm3 struct {
	v   [8]uint32
	buf [64]byte
	n   int    // bytes in buf
	len uint64 // total bytes written
}

var sm3IV = [8]uint32{0x7380166f, 0x4914b2b9, 0x172442d7, 0xda8a0600, 0xa96f30bc, 0x163138aa, 0xe38dee4d, 0xb0fb0e4e}

func newSM3() hash.Hash { d := &sm3{}; d.Reset(); return d }

func (d *sm3) Reset()         { d.v = sm3IV; d.n = 0; d.len = 0 }
func (d *sm3) Size() int      { return 32 }
func (d *sm3) BlockSize() int { return 64 }

func (d *sm3) Write(p []byte) (int, error) {
	total := len(p)
	d.len += uint64(total)
	if d.n > 0 {
		c := copy(d.buf[d.n:], p)
		d.n += c
		p = p[c:]
		if d.n == 64 {
			d.block(d.buf[:])
			d.n = 0
		}
	}
	for len(p) >= 64 {
		d.block(p[:64])
		p = p[64:]
	}
	if len(p) > 0 {
		d.n = copy(d.buf[:], p)
	}
	return total, nil
}

func (d *sm3) Sum(in []byte) []byte {
	c := *d
	var pad [72]byte
	pad[0] = 0x80
	padLen := 56 - int(c.len%64)
	if padLen <= 0 {
		padLen += 64
	}
	binary.BigEndian.PutUint64(pad[padLen:], c.len*8)
	c.Write(pad[:padLen+8])
	var out [32]byte
	for i, x := range c.v {
		binary.BigEndian.PutUint32(out[i*4:], x)
	}
	return append(in, out[:]...)
}

func p0(x uint32) uint32 { return x ^ bits.RotateLeft32(x, 9) ^ bits.RotateLeft32(x, 17) }
func p1(x uint32) uint32 { return x ^ bits.RotateLeft32(x, 15) ^ bits.RotateLeft32(x, 23) }

func (d *sm3) block(b []byte) {
	var w [68]uint32
	for i := 0; i < 16; i++ {
		w[i] = binary.BigEndian.Uint32(b[i*4:])
	}
	for j := 16; j < 68; j++ {
		w[j] = p1(w[j-16]^w[j-9]^bits.RotateLeft32(w[j-3], 15)) ^ bits.RotateLeft32(w[j-13], 7) ^ w[j-6]
	}
	a, bb, c, dd, e, f, g, h := d.v[0], d.v[1], d.v[2], d.v[3], d.v[4], d.v[5], d.v[6], d.v[7]
	for j := 0; j < 64; j++ {
		t := uint32(0x79cc4519)
		if j >= 16 {
			t = 0x7a879d8a
		}
		a12 := bits.RotateLeft32(a, 12)
		ss1 := bits.RotateLeft32(a12+e+bits.RotateLeft32(t, j%32), 7)
		ss2 := ss1 ^ a12
		var ff, gg uint32
		if j < 16 {
			ff = a ^ bb ^ c
			gg = e ^ f ^ g
		} else {
			ff = (a & bb) | (a & c) | (bb & c)
			gg = (e & f) | (^e & g)
		}
		tt1 := ff + dd + ss2 + (w[j] ^ w[j+4])
		tt2 := gg + h + ss1 + w[j]
		dd, c, bb, a = c, bits.RotateLeft32(bb, 9), a, tt1
		h, g, f, e = g, bits.RotateLeft32(f, 19), e, p0(tt2)
	}
	d.v[0] ^= a
	d.v[1] ^= bb
	d.v[2] ^= c
	d.v[3] ^= dd
	d.v[4] ^= e
	d.v[5] ^= f
	d.v[6] ^= g
	d.v[7] ^= h
}

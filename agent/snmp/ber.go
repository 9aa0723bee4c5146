package snmp

import (
	"errors"
	"fmt"
)

// The subset of BER (X.690) SNMP uses: single-byte tags, definite
// lengths, INTEGER, OCTET STRING, NULL, OBJECT IDENTIFIER, SEQUENCE and
// the SNMP application types. Decoding works on the message in place and
// rejects anything outside that subset; every length is checked against
// what is left.

const (
	tagInteger   = 0x02
	tagOctets    = 0x04
	tagNull      = 0x05
	tagOID       = 0x06
	tagSequence  = 0x30
	tagCounter32 = 0x41
	tagGauge32   = 0x42
	tagTimeTicks = 0x43
	tagCounter64 = 0x46

	tagNoSuchObject   = 0x80
	tagNoSuchInstance = 0x81
	tagEndOfMibView   = 0x82

	pduGet      = 0xa0
	pduGetNext  = 0xa1
	pduResponse = 0xa2
	pduSet      = 0xa3
	pduGetBulk  = 0xa5
	pduReport   = 0xa8
)

var errBER = errors.New("malformed BER")

// decoder reads TLVs from b.
type decoder struct{ b []byte }

func (d *decoder) empty() bool { return len(d.b) == 0 }

// tlv reads one element: its tag and contents.
func (d *decoder) tlv() (byte, []byte, error) {
	if len(d.b) < 2 {
		return 0, nil, fmt.Errorf("%w: truncated", errBER)
	}
	tag := d.b[0]
	if tag&0x1f == 0x1f {
		return 0, nil, fmt.Errorf("%w: multi-byte tag", errBER)
	}
	n := int(d.b[1])
	rest := d.b[2:]
	if n&0x80 != 0 {
		k := n & 0x7f
		if k == 0 || k > 3 || len(rest) < k {
			return 0, nil, fmt.Errorf("%w: bad length", errBER)
		}
		n = 0
		for _, c := range rest[:k] {
			n = n<<8 | int(c)
		}
		rest = rest[k:]
	}
	if n > len(rest) {
		return 0, nil, fmt.Errorf("%w: length %d exceeds the %d bytes left", errBER, n, len(rest))
	}
	d.b = rest[n:]
	return tag, rest[:n], nil
}

// expect reads an element with the given tag.
func (d *decoder) expect(tag byte, what string) ([]byte, error) {
	t, v, err := d.tlv()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if t != tag {
		return nil, fmt.Errorf("%s: tag 0x%02x, want 0x%02x", what, t, tag)
	}
	return v, nil
}

func (d *decoder) integer(what string) (int64, error) {
	v, err := d.expect(tagInteger, what)
	if err != nil {
		return 0, err
	}
	return parseInt(v, what)
}

func parseInt(v []byte, what string) (int64, error) {
	if len(v) == 0 || len(v) > 8 {
		return 0, fmt.Errorf("%s: INTEGER of %d bytes", what, len(v))
	}
	n := int64(int8(v[0]))
	for _, c := range v[1:] {
		n = n<<8 | int64(c)
	}
	return n, nil
}

// parseUint reads the contents of an Unsigned32/Gauge32 (encoded as an
// INTEGER is, RFC 2578 §7.1.7): 0..2^32-1.
func parseUint(v []byte) (uint32, error) {
	n, err := parseInt(v, "Unsigned32")
	if err == nil && (n < 0 || n > 1<<32-1) {
		err = fmt.Errorf("Unsigned32 %d out of range", n)
	}
	return uint32(n), err
}

// uint32Of reads an INTEGER that must be 0..2^31-1 (RFC 3412 ranges).
func (d *decoder) nonNegative(what string) (int64, error) {
	n, err := d.integer(what)
	if err == nil && (n < 0 || n > 1<<31-1) {
		err = fmt.Errorf("%s: %d out of range", what, n)
	}
	return n, err
}

type oid []uint32

const maxOIDLen = 128

func parseOID(v []byte) (oid, error) {
	if len(v) == 0 {
		return nil, fmt.Errorf("%w: empty OID", errBER)
	}
	var out oid
	var cur uint64
	for i, c := range v {
		if cur == 0 && c == 0x80 {
			return nil, fmt.Errorf("%w: OID subidentifier with leading zero", errBER)
		}
		cur = cur<<7 | uint64(c&0x7f)
		if cur > 1<<32-1 {
			return nil, fmt.Errorf("%w: OID subidentifier too large", errBER)
		}
		if c&0x80 != 0 {
			if i == len(v)-1 {
				return nil, fmt.Errorf("%w: OID ends inside a subidentifier", errBER)
			}
			continue
		}
		if out == nil {
			switch {
			case cur < 40:
				out = oid{0, uint32(cur)}
			case cur < 80:
				out = oid{1, uint32(cur - 40)}
			default:
				out = oid{2, uint32(cur - 80)}
			}
		} else {
			out = append(out, uint32(cur))
		}
		if len(out) > maxOIDLen {
			return nil, fmt.Errorf("%w: OID longer than %d", errBER, maxOIDLen)
		}
		cur = 0
	}
	return out, nil
}

func (o oid) String() string {
	s := ""
	for i, n := range o {
		if i > 0 {
			s += "."
		}
		s += fmt.Sprint(n)
	}
	return s
}

func (o oid) cmp(p oid) int {
	for i := 0; i < len(o) && i < len(p); i++ {
		if o[i] != p[i] {
			if o[i] < p[i] {
				return -1
			}
			return 1
		}
	}
	return len(o) - len(p)
}

func (o oid) hasPrefix(p oid) bool { return len(o) >= len(p) && o[:len(p)].cmp(p) == 0 }

// Encoding: elements are appended to a byte slice.

func appendLen(b []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n < 0x100:
		return append(b, 0x81, byte(n))
	case n < 0x10000:
		return append(b, 0x82, byte(n>>8), byte(n))
	default:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
}

func appendTLV(b []byte, tag byte, v []byte) []byte {
	return append(appendLen(append(b, tag), len(v)), v...)
}

func intBytes(n int64) []byte {
	var v []byte
	for i := 7; i > 0; i-- {
		c, next := byte(n>>(8*i)), byte(n>>(8*(i-1)))
		// Drop leading bytes that only repeat the sign.
		if len(v) == 0 && ((c == 0 && next&0x80 == 0) || (c == 0xff && next&0x80 != 0)) {
			continue
		}
		v = append(v, c)
	}
	return append(v, byte(n))
}

func appendInt(b []byte, tag byte, n int64) []byte { return appendTLV(b, tag, intBytes(n)) }

// appendUint encodes an unsigned application value (Gauge32, Counter64).
func appendUint(b []byte, tag byte, n uint64) []byte {
	v := []byte{}
	for i := 7; i >= 0; i-- {
		c := byte(n >> (8 * i))
		if len(v) == 0 && c == 0 && i > 0 {
			continue
		}
		v = append(v, c)
	}
	if v[0]&0x80 != 0 {
		v = append([]byte{0}, v...)
	}
	return appendTLV(b, tag, v)
}

func (o oid) bytes() []byte {
	if len(o) < 2 {
		return []byte{0}
	}
	var v []byte
	sub := func(n uint64) {
		var tmp [10]byte
		i := len(tmp) - 1
		tmp[i] = byte(n & 0x7f)
		for n >>= 7; n > 0; n >>= 7 {
			i--
			tmp[i] = byte(n&0x7f) | 0x80
		}
		v = append(v, tmp[i:]...)
	}
	sub(uint64(o[0])*40 + uint64(o[1]))
	for _, n := range o[2:] {
		sub(uint64(n))
	}
	return v
}

// seq wraps parts in a SEQUENCE (or another constructed tag).
func seq(tag byte, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := appendLen([]byte{tag}, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

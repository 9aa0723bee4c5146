package quote

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/binary"
	"fmt"
	"github.com/openriv/riv/internal/wire"
	"math/big"

	"github.com/openriv/riv/pkg/alg"
)

// Object attributes, TPMA_OBJECT (Part 2 §8.3).
const (
	AttrFixedTPM             uint32 = 1 << 1
	AttrSTClear              uint32 = 1 << 2
	AttrFixedParent          uint32 = 1 << 4
	AttrSensitiveDataOrigin  uint32 = 1 << 5
	AttrUserWithAuth         uint32 = 1 << 6
	AttrAdminWithPolicy      uint32 = 1 << 7
	AttrNoDA                 uint32 = 1 << 10
	AttrEncryptedDuplication uint32 = 1 << 11
	AttrRestricted           uint32 = 1 << 16
	AttrDecrypt              uint32 = 1 << 17
	AttrSign                 uint32 = 1 << 18
)

// ECC curves, TPM_ECC_CURVE (Part 2 §6.4).
const (
	CurveP256 uint16 = 0x0003
	CurveP384 uint16 = 0x0004
	CurveP521 uint16 = 0x0005
)

// Public is a parsed TPMT_PUBLIC (Part 2 §12.2.4).
type Public struct {
	Type       alg.ID // RSA, ECC, KeyedHash, SymCipher
	NameAlg    alg.ID
	Attributes uint32
	AuthPolicy []byte

	// Scheme and SchemeHash are the key's signing scheme (Null if the key
	// takes the scheme from the command).
	Scheme     alg.ID
	SchemeHash alg.ID
	Symmetric  alg.ID // for storage keys; Null for signing keys
	RSABits    uint16
	Curve      uint16

	// Key is the *rsa.PublicKey or *ecdsa.PublicKey; nil for other types.
	Key crypto.PublicKey

	Raw []byte // the TPMT_PUBLIC bytes the Name is computed over
}

func looksLikePublic(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	switch alg.ID(binary.BigEndian.Uint16(b)) {
	case alg.RSA, alg.ECC, alg.KeyedHash, alg.SymCipher:
		return alg.ID(binary.BigEndian.Uint16(b[2:])).IsHash()
	}
	return false
}

// ParsePublic parses a TPMT_PUBLIC or a TPM2B_PUBLIC.
func ParsePublic(b []byte) (*Public, error) {
	b = stripTPM2B(b, looksLikePublic)
	r := newReader(b)
	p := &Public{Raw: b}
	p.Type = alg.ID(r.U16("type"))
	p.NameAlg = alg.ID(r.U16("nameAlg"))
	p.Attributes = r.U32("objectAttributes")
	p.AuthPolicy = r.Sized(maxDigest, "authPolicy")
	if r.Err != nil {
		return nil, r.Err
	}
	if !p.NameAlg.IsHash() {
		return nil, fmt.Errorf("%w: nameAlg %v", ErrUnsupportedAlg, p.NameAlg)
	}
	switch p.Type {
	case alg.RSA:
		p.Symmetric = readSymDef(r)
		p.Scheme, p.SchemeHash = readScheme(r)
		p.RSABits = r.U16("keyBits")
		exp := r.U32("exponent")
		n := r.Sized(maxRSABytes, "RSA modulus")
		if r.Err != nil {
			break
		}
		if exp == 0 {
			exp = 65537 // Part 2 §12.2.3.5: zero means the default exponent
		}
		if len(n) == 0 || int(p.RSABits) != len(n)*8 {
			return nil, fmt.Errorf("%w: RSA modulus of %d bytes for keyBits %d", ErrMalformed, len(n), p.RSABits)
		}
		p.Key = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp)}
	case alg.ECC:
		p.Symmetric = readSymDef(r)
		p.Scheme, p.SchemeHash = readScheme(r)
		p.Curve = r.U16("curveID")
		if kdf := alg.ID(r.U16("kdf")); kdf != alg.Null {
			r.U16("kdf hash")
		}
		x := r.Sized(maxECCBytes, "ECC x")
		y := r.Sized(maxECCBytes, "ECC y")
		if r.Err != nil {
			break
		}
		var c elliptic.Curve
		switch p.Curve {
		case CurveP256:
			c = elliptic.P256()
		case CurveP384:
			c = elliptic.P384()
		case CurveP521:
			c = elliptic.P521()
		default:
			return nil, fmt.Errorf("%w: ECC curve 0x%04x", ErrUnsupportedAlg, p.Curve)
		}
		k, err := eccKey(c, x, y)
		if err != nil {
			return nil, err
		}
		p.Key = k
	case alg.KeyedHash:
		p.Scheme = alg.ID(r.U16("keyedHash scheme"))
		switch p.Scheme {
		case alg.HMAC:
			p.SchemeHash = alg.ID(r.U16("HMAC hash"))
		case alg.XOR:
			p.SchemeHash = alg.ID(r.U16("XOR hash"))
			r.U16("XOR kdf")
		case alg.Null:
		default:
			r.Fail(fmt.Sprintf("keyedHash scheme %v", p.Scheme))
		}
		r.Sized(maxDigest, "keyedHash unique")
	case alg.SymCipher:
		p.Symmetric = readSymDef(r)
		r.Sized(maxDigest, "symCipher unique")
	default:
		return nil, fmt.Errorf("%w: public type %v", ErrMalformed, p.Type)
	}
	if err := r.Done("TPMT_PUBLIC"); err != nil {
		return nil, err
	}
	return p, nil
}

func eccKey(c elliptic.Curve, x, y []byte) (*ecdsa.PublicKey, error) {
	size := (c.Params().BitSize + 7) / 8
	if len(x) > size || len(y) > size {
		return nil, fmt.Errorf("%w: ECC point coordinates longer than the curve", ErrMalformed)
	}
	// Build the uncompressed SEC 1 point and let crypto/ecdh-backed parsing
	// reject points off the curve.
	pt := make([]byte, 1+2*size)
	pt[0] = 4
	copy(pt[1+size-len(x):1+size], x)
	copy(pt[1+2*size-len(y):], y)
	xi, yi := elliptic.Unmarshal(c, pt) //nolint:staticcheck // validates the point
	if xi == nil {
		return nil, fmt.Errorf("%w: ECC point is not on the curve", ErrMalformed)
	}
	return &ecdsa.PublicKey{Curve: c, X: xi, Y: yi}, nil
}

// readSymDef reads TPMT_SYM_DEF_OBJECT (Part 2 §11.1.7).
func readSymDef(r *wire.Reader) alg.ID {
	a := alg.ID(r.U16("symmetric"))
	if a != alg.Null && r.Err == nil {
		r.U16("symmetric keyBits")
		r.U16("symmetric mode")
	}
	return a
}

// readScheme reads TPMT_RSA_SCHEME / TPMT_ECC_SCHEME (Part 2 §11.2.4.5,
// §11.2.5.6): a scheme, then a hash unless the scheme is Null or RSAES; ECDAA
// adds a count.
func readScheme(r *wire.Reader) (alg.ID, alg.ID) {
	s := alg.ID(r.U16("scheme"))
	switch s {
	case alg.Null, alg.RSAES:
		return s, alg.Null
	case alg.ECDAA:
		h := alg.ID(r.U16("scheme hash"))
		r.U16("ECDAA count")
		return s, h
	}
	return s, alg.ID(r.U16("scheme hash"))
}

// Name returns the TPM Name of the object: nameAlg || H_nameAlg(TPMT_PUBLIC)
// (Part 1 §16).
func (p *Public) Name() []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(p.NameAlg)), p.NameAlg.Sum(p.Raw)...)
}

// Has reports whether all attribute bits in mask are set.
func (p *Public) Has(mask uint32) bool { return p.Attributes&mask == mask }

package quote

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"math/big"

	"github.com/openriv/riv/pkg/alg"
)

// Signature is a parsed TPMT_SIGNATURE (Part 2 §11.3.4).
type Signature struct {
	Alg  alg.ID // RSASSA, RSAPSS, ECDSA, HMAC, ...
	Hash alg.ID // the scheme's hash
	RSA  []byte // RSASSA/RSAPSS signature
	R, S *big.Int
	HMAC []byte // HMAC digest
}

const maxRSABytes = 512 // TPM2B_PUBLIC_KEY_RSA (RSA-4096)
const maxECCBytes = 66  // TPM2B_ECC_PARAMETER (P-521)

func knownSigAlg(a alg.ID) bool {
	switch a {
	case alg.RSASSA, alg.RSAPSS, alg.ECDSA, alg.ECDAA, alg.SM2, alg.ECSchnorr, alg.HMAC, alg.Null:
		return true
	}
	return false
}

func looksLikeSig(b []byte) bool {
	return len(b) >= 2 && knownSigAlg(alg.ID(binary.BigEndian.Uint16(b)))
}

// ParseSignature parses a TPMT_SIGNATURE; a leading u16 size equal to the
// rest (as some tools write it) is accepted and stripped.
func ParseSignature(b []byte) (*Signature, error) {
	b = stripTPM2B(b, looksLikeSig)
	r := newReader(b)
	s := &Signature{Alg: alg.ID(r.U16("sigAlg"))}
	switch s.Alg {
	case alg.RSASSA, alg.RSAPSS:
		s.Hash = alg.ID(r.U16("hash"))
		s.RSA = r.Sized(maxRSABytes, "RSA signature")
	case alg.ECDSA, alg.ECDAA, alg.SM2, alg.ECSchnorr:
		s.Hash = alg.ID(r.U16("hash"))
		rb := r.Sized(maxECCBytes, "signatureR")
		sb := r.Sized(maxECCBytes, "signatureS")
		s.R, s.S = new(big.Int).SetBytes(rb), new(big.Int).SetBytes(sb)
	case alg.HMAC:
		s.Hash = alg.ID(r.U16("hash"))
		if r.Err == nil && !s.Hash.IsHash() {
			return nil, fmt.Errorf("%w: HMAC hash %v", ErrUnsupportedAlg, s.Hash)
		}
		s.HMAC = r.Bytes(s.Hash.Size(), "HMAC digest")
	case alg.Null:
	default:
		if r.Err == nil {
			return nil, fmt.Errorf("%w: signature algorithm %v", ErrMalformed, s.Alg)
		}
	}
	if err := r.Done("TPMT_SIGNATURE"); err != nil {
		return nil, err
	}
	return s, nil
}

// Marshal encodes s as a TPMT_SIGNATURE (no TPM2B size). ECDSA R and S are
// padded to size bytes when size > 0.
func (s *Signature) Marshal(eccSize int) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(s.Alg))
	switch s.Alg {
	case alg.RSASSA, alg.RSAPSS:
		b = binary.BigEndian.AppendUint16(b, uint16(s.Hash))
		b = append(binary.BigEndian.AppendUint16(b, uint16(len(s.RSA))), s.RSA...)
	case alg.ECDSA, alg.ECDAA, alg.SM2, alg.ECSchnorr:
		b = binary.BigEndian.AppendUint16(b, uint16(s.Hash))
		for _, v := range []*big.Int{s.R, s.S} {
			n := eccSize
			if n == 0 {
				n = (v.BitLen() + 7) / 8
			}
			buf := make([]byte, n)
			v.FillBytes(buf)
			b = append(binary.BigEndian.AppendUint16(b, uint16(n)), buf...)
		}
	case alg.HMAC:
		b = binary.BigEndian.AppendUint16(b, uint16(s.Hash))
		b = append(b, s.HMAC...)
	}
	return b
}

// VerifySignature checks sig over msg with pub (an *rsa.PublicKey or
// *ecdsa.PublicKey). The digest uses the scheme's own hash, as the TPM does.
func VerifySignature(pub crypto.PublicKey, msg []byte, sig *Signature) error {
	h, ok := sig.Hash.CryptoHash()
	if !ok {
		return fmt.Errorf("%w: signature hash %v", ErrUnsupportedAlg, sig.Hash)
	}
	var buf [64]byte
	return verifyDigest(pub, h, digestInto(&buf, h, msg), sig)
}

func verifyDigest(pub crypto.PublicKey, h crypto.Hash, digest []byte, sig *Signature) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch sig.Alg {
		case alg.RSASSA:
			if err := rsa.VerifyPKCS1v15(k, h, digest, sig.RSA); err != nil {
				return fmt.Errorf("%w: RSASSA-%v: %v", ErrSignature, sig.Hash, err)
			}
			return nil
		case alg.RSAPSS:
			// TPMs use a salt as long as the digest; older firmware used the
			// maximum. Auto accepts both, still binding the hash.
			if err := rsa.VerifyPSS(k, h, digest, sig.RSA, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: h}); err != nil {
				return fmt.Errorf("%w: RSAPSS-%v: %v", ErrSignature, sig.Hash, err)
			}
			return nil
		}
	case *ecdsa.PublicKey:
		if sig.Alg == alg.ECDSA {
			if sig.R.Sign() <= 0 || sig.S.Sign() <= 0 || !ecdsa.Verify(k, digest, sig.R, sig.S) {
				return fmt.Errorf("%w: ECDSA-%v", ErrSignature, sig.Hash)
			}
			return nil
		}
	default:
		return fmt.Errorf("%w: key type %T", ErrUnsupportedAlg, pub)
	}
	return fmt.Errorf("%w: %v signature with %T key", ErrKeyMismatch, sig.Alg, pub)
}

// VerifyHMAC checks an HMAC TPMT_SIGNATURE over msg with key (the TPM signs
// the digest of the attestation, not the attestation itself: Part 3 §18.1).
func VerifyHMAC(key, msg []byte, sig *Signature) error {
	if sig.Alg != alg.HMAC {
		return fmt.Errorf("%w: %v is not HMAC", ErrKeyMismatch, sig.Alg)
	}
	mac := hmac.New(func() hash.Hash { h, _ := sig.Hash.New(); return h }, key)
	mac.Write(sig.Hash.Sum(msg))
	if subtle.ConstantTimeCompare(mac.Sum(nil), sig.HMAC) != 1 {
		return fmt.Errorf("%w: HMAC-%v", ErrSignature, sig.Hash)
	}
	return nil
}

// digestInto hashes msg into buf without allocating (the hash.Hash route
// allocates twice, a measurable share of an RSA verify).
func digestInto(buf *[64]byte, h crypto.Hash, msg []byte) []byte {
	switch h {
	case crypto.SHA1:
		d := sha1.Sum(msg)
		return buf[:copy(buf[:], d[:])]
	case crypto.SHA256:
		d := sha256.Sum256(msg)
		return buf[:copy(buf[:], d[:])]
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return buf[:copy(buf[:], d[:])]
	default:
		d := sha512.Sum512(msg)
		return buf[:copy(buf[:], d[:])]
	}
}

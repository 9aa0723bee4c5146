package quote

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/openriv/riv/pkg/alg"
)

// TestSchemes signs a synthetic quote with every scheme and hash the
// verifier supports, with and without a TPM2B size on the files, and
// checks that the PCR digest uses the signing scheme's hash.
func TestSchemes(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ek384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, scheme := range []alg.ID{alg.RSASSA, alg.RSAPSS, alg.ECDSA} {
		for _, h := range []alg.ID{alg.SHA1, alg.SHA256, alg.SHA384, alg.SHA512} {
			t.Run(scheme.String()+"-"+h.String(), func(t *testing.T) {
				attest, nonce, vals := benchQuote(nil, h)
				ch, _ := h.CryptoHash()
				digest := h.Sum(attest)
				var pub crypto.PublicKey
				s := &Signature{Alg: scheme, Hash: h}
				switch scheme {
				case alg.RSASSA:
					s.RSA, _ = rsa.SignPKCS1v15(rand.Reader, rk, ch, digest)
					pub = &rk.PublicKey
				case alg.RSAPSS:
					s.RSA, _ = rsa.SignPSS(rand.Reader, rk, ch, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
					pub = &rk.PublicKey
				case alg.ECDSA:
					k := ek
					if h == alg.SHA384 {
						k = ek384
					}
					s.R, s.S, _ = ecdsa.Sign(rand.Reader, k, digest)
					pub = &k.PublicKey
				}
				sig := s.Marshal(0)
				wrapped := func(b []byte) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...) }
				for _, in := range []struct{ a, s []byte }{{attest, sig}, {wrapped(attest), wrapped(sig)}} {
					if _, err := Verify(pub, in.a, in.s, Options{Nonce: nonce, PCRs: vals}); err != nil {
						t.Errorf("Verify() = %v", err)
					}
				}
				// The wrong key type is a scheme mismatch, not a crash.
				var wrong crypto.PublicKey = &ek.PublicKey
				if scheme == alg.ECDSA {
					wrong = &rk.PublicKey
				}
				if _, err := Verify(wrong, attest, sig, Options{Nonce: nonce}); !errors.Is(err, ErrKeyMismatch) {
					t.Errorf("Verify(wrong key type) = %v, want ErrKeyMismatch", err)
				}
			})
		}
	}
}

// TestPCRDigestUsesSchemeHash: a quote signed with SHA-384 must carry a
// SHA-384 PCR digest even when the PCRs are from the SHA-256 bank.
func TestPCRDigestUsesSchemeHash(t *testing.T) {
	attest, nonce, vals := benchQuote(nil, alg.SHA256) // digest made with SHA-256
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	r, s, _ := ecdsa.Sign(rand.Reader, k, alg.SHA384.Sum(attest))
	sig := (&Signature{Alg: alg.ECDSA, Hash: alg.SHA384, R: r, S: s}).Marshal(48)
	if _, err := Verify(&k.PublicKey, attest, sig, Options{Nonce: nonce, PCRs: vals}); !errors.Is(err, ErrPCRDigestMismatch) {
		t.Errorf("Verify(sha256 digest, sha384 scheme) = %v, want ErrPCRDigestMismatch", err)
	}
}

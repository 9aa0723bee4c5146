package quote

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"testing"
	"time"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// benchQuote builds a TPMS_ATTEST quoting sha256 PCRs 0-9 and signs it in
// software the way a TPM would, so the benchmark needs no TPM.
func benchQuote(_ testing.TB, h alg.ID) ([]byte, []byte, pcr.Values) {
	vals := pcr.Values{}
	sel := []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}}
	for i := 0; i < 10; i++ {
		vals.Set(alg.SHA256, i, alg.SHA256.Sum([]byte{byte(i)}))
	}
	d, _ := PCRDigest(h, sel, vals)
	nonce := make([]byte, 32)
	a := binary.BigEndian.AppendUint32(nil, Magic)
	a = binary.BigEndian.AppendUint16(a, TypeQuote)
	a = append(binary.BigEndian.AppendUint16(a, 34), append([]byte{0, 0x0b}, make([]byte, 32)...)...)
	a = append(binary.BigEndian.AppendUint16(a, 32), nonce...)
	a = binary.BigEndian.AppendUint64(a, 123456)
	a = binary.BigEndian.AppendUint32(a, 1)
	a = binary.BigEndian.AppendUint32(a, 0)
	a = append(a, 1)
	a = binary.BigEndian.AppendUint64(a, 0x2019)
	a = AppendSelection(a, sel)
	a = append(binary.BigEndian.AppendUint16(a, uint16(len(d))), d...)
	return a, nonce, vals
}

type benchKey struct {
	name string
	hash alg.ID
	pub  crypto.PublicKey
	sign func(digest []byte) *Signature
	bare func(msg []byte, s *Signature) bool
}

func benchKeys(b *testing.B) []benchKey {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecSign := func(k *ecdsa.PrivateKey, h alg.ID) func([]byte) *Signature {
		return func(d []byte) *Signature {
			r, s, _ := ecdsa.Sign(rand.Reader, k, d)
			return &Signature{Alg: alg.ECDSA, Hash: h, R: r, S: s}
		}
	}
	return []benchKey{
		{"P-256", alg.SHA256, &p256.PublicKey, ecSign(p256, alg.SHA256), func(m []byte, s *Signature) bool {
			d := sha256.Sum256(m)
			return ecdsa.Verify(&p256.PublicKey, d[:], s.R, s.S)
		}},
		{"P-384", alg.SHA384, &p384.PublicKey, ecSign(p384, alg.SHA384), func(m []byte, s *Signature) bool {
			d := sha512.Sum384(m)
			return ecdsa.Verify(&p384.PublicKey, d[:], s.R, s.S)
		}},
		{"RSA-2048", alg.SHA256, &rk.PublicKey, func(d []byte) *Signature {
			s, _ := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA256, d)
			return &Signature{Alg: alg.RSASSA, Hash: alg.SHA256, RSA: s}
		}, func(m []byte, s *Signature) bool {
			d := sha256.Sum256(m)
			return rsa.VerifyPKCS1v15(&rk.PublicKey, crypto.SHA256, d[:], s.RSA) == nil
		}},
	}
}

// BenchmarkQuoteVerify measures full quote verification (parse both
// structures, signature, nonce, PCR digest) against the bare signature
// check over the same bytes: the target is at most 1.1x.
func BenchmarkQuoteVerify(b *testing.B) {
	for _, k := range benchKeys(b) {
		attest, nonce, vals := benchQuote(b, k.hash)
		s := k.sign(k.hash.Sum(attest))
		sig := s.Marshal(0)
		if _, err := Verify(k.pub, attest, sig, Options{Nonce: nonce, PCRs: vals}); err != nil {
			b.Fatal(err)
		}
		b.Run(k.name+"/bare-signature", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !k.bare(attest, s) {
					b.Fatal("bad signature")
				}
			}
		})
		b.Run(k.name+"/quote-verify", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Verify(k.pub, attest, sig, Options{Nonce: nonce, PCRs: vals}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkQuoteOverhead is everything Verify does besides the signature:
// parsing both structures, the nonce check and the PCR digest.
func BenchmarkQuoteOverhead(b *testing.B) {
	attest, nonce, vals := benchQuote(b, alg.SHA256)
	sig := (&Signature{Alg: alg.RSASSA, Hash: alg.SHA256, RSA: make([]byte, 256)}).Marshal(0)
	b.ReportAllocs()
	for b.Loop() {
		a, err := ParseAttest(attest)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ParseSignature(sig); err != nil {
			b.Fatal(err)
		}
		if string(a.ExtraData) != string(nonce) {
			b.Fatal("nonce")
		}
		if _, err := PCRDigest(alg.SHA256, a.Quote.Selection, vals); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQuoteVerifyRatio interleaves the bare signature check and the
// full quote verification call by call, so machine noise hits both alike,
// and reports full/bare as "x-bare" (target: at most 1.1).
func BenchmarkQuoteVerifyRatio(b *testing.B) {
	for _, k := range benchKeys(b) {
		attest, nonce, vals := benchQuote(b, k.hash)
		s := k.sign(k.hash.Sum(attest))
		sig := s.Marshal(0)
		b.Run(k.name, func(b *testing.B) {
			var bare, full time.Duration
			for b.Loop() {
				t0 := time.Now()
				if !k.bare(attest, s) {
					b.Fatal("bad signature")
				}
				t1 := time.Now()
				if _, err := Verify(k.pub, attest, sig, Options{Nonce: nonce, PCRs: vals}); err != nil {
					b.Fatal(err)
				}
				full += time.Since(t1)
				bare += t1.Sub(t0)
			}
			b.ReportMetric(float64(full)/float64(bare), "x-bare")
		})
	}
}

package quote

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/openriv/riv/internal/testref"
)

func FuzzParseAttest(f *testing.F) {
	for _, v := range referenceQuotes(f) {
		f.Add(v.attest)
	}
	f.Add(testref.Read(f, "quotes/attestz-enrollz-hmac-challenge/challengeResp-iak_certify_info.bin"))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAttest(b)
		if err != nil {
			return
		}
		// Verification of a parsed structure with any key must not panic.
		VerifyParsed(&key.PublicKey, a, &Signature{Alg: 0x0018, Hash: 0x000B, R: key.X, S: key.Y}, Options{PCRs: nil})
	})
}

func FuzzParseSignature(f *testing.F) {
	for _, v := range referenceQuotes(f) {
		f.Add(v.sig)
	}
	f.Add(testref.Read(f, "quotes/attestz-enrollz-hmac-challenge/challengeResp-iak_certify_info_signature.bin"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSignature(b)
		if err != nil {
			return
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		VerifySignature(&key.PublicKey, []byte("m"), s)
		VerifyHMAC([]byte("k"), []byte("m"), s)
		s.Marshal(0)
	})
}

func FuzzParsePublic(f *testing.F) {
	for _, p := range []string{"quotes/hirs-tpm2-objects/ak.pub", "quotes/hirs-tpm2-objects/ek.pub", "quotes/attestz-enrollz-hmac-challenge/iak-TPMT_PUBLIC.bin", "quotes/attestz-enrollz-hmac-challenge/challengeResp-iak_pub.bin"} {
		f.Add(testref.Read(f, p))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePublic(b)
		if err != nil {
			return
		}
		p.Name()
	})
}

package rim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/openriv/riv/internal/testref"
)

func FuzzDecodeTag(f *testing.F) {
	tag, _ := NewTag(imageSpec(id2, "2.0", id1))
	b, _ := tag.Encode()
	f.Add(b)
	f.Add(testref.Read(f, "rim/coswid/hirs/coswid_rim_1.coswid"))
	f.Add(testref.Read(f, "rim/coswid/hirs/LVFS_sbom.coswid"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tg, err := DecodeTag(b)
		if err != nil {
			return
		}
		tg.Files()
		tg.LinkedTags("supersedes")
		if _, err := tg.Encode(); err != nil {
			t.Fatalf("decoded tag does not encode: %v", err)
		}
	})
}

func FuzzVerifyCOSE(f *testing.F) {
	for _, p := range []string{"rim/cose/hirs/sign-pass-01.cose", "rim/cose/hirs/sign-pass-03.cose", "rim/cose/hirs/sign_pass_rsa_3072_sha384.cose", "rim/corim/veraison/signed-good-corim.cbor"} {
		f.Add(testref.Read(f, p))
	}
	roots, signer := vendorPKI(f, "RIV Test Networks", elliptic.P256(), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	tag, _ := NewTag(imageSpec(id1, "1.0"))
	pl, _ := tag.Encode()
	signed, _ := SignCOSE(pl, ContentTypeCoSWID, signer, nil)
	f.Add(signed)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Fuzz(func(t *testing.T, b []byte) {
		Verify(b, VerifyOptions{Roots: roots})
		VerifyCOSE(b, VerifyOptions{Key: &key.PublicKey})
		DecodeCoRIM(b)
	})
}

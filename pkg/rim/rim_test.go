package rim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	cose "github.com/veraison/go-cose"

	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
)

// vendorPKI makes a vendor root and a RIM-signing leaf valid from
// notBefore to notAfter, on curve c.
func vendorPKI(t testing.TB, org string, c elliptic.Curve, notBefore, notAfter time.Time) (*x509.CertPool, Signer) {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	root := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: org + " Root CA", Organization: []string{org}},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	rootCert, _ := x509.ParseCertificate(rootDER)
	leafKey, _ := ecdsa.GenerateKey(c, rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: org + " RIM Signer", Organization: []string{org}},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	if org == "RIV Test Networks" {
		leaf.DNSNames = []string{"rims.example.net"}
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, rootCert, &leafKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	leafCert, _ := x509.ParseCertificate(leafDER)
	pool := x509.NewCertPool()
	pool.AddCert(rootCert)
	return pool, Signer{Key: leafKey, Chain: []*x509.Certificate{leafCert, rootCert}}
}

func imageSpec(id, version string, supersedes ...string) TagSpec {
	return TagSpec{
		TagID: id, Name: "rtr-os", Version: version, Vendor: "RIV Test Networks", VendorRegID: "https://rims.example.net",
		Product: "rtr-1000", Colloquial: version, Revision: "1", Edition: "standard",
		Files:      []File{{Path: "/boot/vmlinuz-" + version, Content: []byte("kernel " + version)}, {Path: "/usr/bin/bgpd", Content: []byte("bgpd " + version)}},
		Supersedes: supersedes,
	}
}

const (
	id1 = "8f6d2b74-9a6f-4c1e-9d1f-0a1b2c3d4e01"
	id2 = "8f6d2b74-9a6f-4c1e-9d1f-0a1b2c3d4e02"
)

func TestSignVerifyCoSWID(t *testing.T) {
	now := time.Now()
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		t.Run(c.Params().Name, func(t *testing.T) {
			roots, signer := vendorPKI(t, "RIV Test Networks", c, now.Add(-time.Hour), now.Add(time.Hour))
			tag, err := NewTag(imageSpec(id2, "2.0", id1))
			if err != nil {
				t.Fatal(err)
			}
			tag.RIM = &ReferenceMeasurement{BindingSpecName: "IETF RFC 9683 RIV", BindingSpecVersion: "1.0", PlatformManufacturerID: 32473,
				PlatformManufacturerName: "RIV Test Networks", PlatformModelName: "rtr-1000", RIMLinkHash: alg.SHA256.Sum([]byte("base"))}
			payload, err := tag.Encode()
			if err != nil {
				t.Fatal(err)
			}
			raw, err := SignCOSE(payload, ContentTypeCoSWID, signer, nil)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Verify(raw, VerifyOptions{Roots: roots})
			if err != nil {
				t.Fatalf("Verify() = %v", err)
			}
			if r.Kind != KindCoSWID || r.Tag.SoftwareVersion != "2.0" || r.Tag.RIM == nil || r.Tag.RIM.PlatformModelName != "rtr-1000" {
				t.Errorf("verified %+v", r)
			}
			if len(r.Supersedes) != 1 || r.Supersedes[0] != id1 {
				t.Errorf("supersedes = %v", r.Supersedes)
			}
			files := r.Tag.Files()
			if len(files) != 4 || files[0].Alg != alg.SHA256 || files[1].Alg != alg.SHA384 {
				t.Errorf("files = %+v", files)
			}
			// One flipped payload byte breaks the signature.
			bad := bytes.Clone(raw)
			i := bytes.Index(bad, []byte("rtr-os"))
			bad[i] ^= 1
			if _, err := Verify(bad, VerifyOptions{Roots: roots}); !errors.Is(err, ErrSignature) {
				t.Errorf("Verify(tampered) = %v, want ErrSignature", err)
			}
			// Another vendor's anchors do not vouch for it.
			other, _ := vendorPKI(t, "Other", c, now.Add(-time.Hour), now.Add(time.Hour))
			if _, err := Verify(raw, VerifyOptions{Roots: other}); !errors.Is(err, ErrChain) {
				t.Errorf("Verify(other anchors) = %v, want ErrChain", err)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	now := time.Now()
	tag, _ := NewTag(imageSpec(id1, "1.0"))
	payload, _ := tag.Encode()

	// An expired vendor signing certificate.
	roots, expired := vendorPKI(t, "RIV Test Networks", elliptic.P256(), now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	raw, _ := SignCOSE(payload, ContentTypeCoSWID, expired, nil)
	if _, err := Verify(raw, VerifyOptions{Roots: roots}); !errors.Is(err, ErrChain) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Verify(expired signer) = %v, want an expiry chain error", err)
	}
	// Signed by someone who is not the tag-creator.
	roots2, impostor := vendorPKI(t, "Mallory Inc", elliptic.P256(), now.Add(-time.Hour), now.Add(time.Hour))
	raw, _ = SignCOSE(payload, ContentTypeCoSWID, impostor, nil)
	if _, err := Verify(raw, VerifyOptions{Roots: roots2}); !errors.Is(err, ErrProfile) || !strings.Contains(err.Error(), "tag-creator") {
		t.Errorf("Verify(impostor) = %v, want ErrProfile naming the tag-creator", err)
	}
	// A patch tag without a patches link.
	roots3, signer := vendorPKI(t, "RIV Test Networks", elliptic.P256(), now.Add(-time.Hour), now.Add(time.Hour))
	p, _ := NewTag(imageSpec(id2, "1.0.1"))
	p.Patch = true
	pp, _ := p.Encode()
	raw, _ = SignCOSE(pp, ContentTypeCoSWID, signer, nil)
	if _, err := Verify(raw, VerifyOptions{Roots: roots3}); !errors.Is(err, ErrProfile) {
		t.Errorf("Verify(patch without link) = %v, want ErrProfile", err)
	}
	// Garbage.
	for _, b := range [][]byte{nil, {0x00}, bytes.Repeat([]byte{0x9f}, 100)} {
		if _, err := Verify(b, VerifyOptions{Roots: roots3}); !errors.Is(err, ErrMalformed) {
			t.Errorf("Verify(%x) = %v, want ErrMalformed", b, err)
		}
	}
}

func TestBaseRIMAndSupportRIM(t *testing.T) {
	// The support RIM is the reference event log; the base RIM lists it by
	// hash and says its payload is indirect (in the TCG log format).
	logRaw := testref.Read(t, "eventlogs/uefi/hirs/TpmLog.bin")
	indirect := PayloadIndirect
	spec := imageSpec(id1, "1.0")
	spec.Files = []File{{Path: "TpmLog.bin", Content: logRaw}}
	spec.RIM = &ReferenceMeasurement{PayloadType: &indirect, BindingSpecName: "PC Client RIM", BindingSpecVersion: "1.2",
		PlatformManufacturerID: 32473, PlatformManufacturerName: "RIV Test Networks", PlatformModelName: "rtr-1000", RIMLinkHash: []byte{}}
	base, err := NewTag(spec)
	if err != nil {
		t.Fatal(err)
	}
	// HIRS's swidtag names the same support RIM by its SHA-256.
	want, _ := hex.DecodeString("4479ca722623f8c47b703996ced3cbd981b06b1ae8a897db70137e0b7c546848")
	if err := base.SupportRIMMatches("TpmLog.bin", logRaw); err != nil {
		t.Errorf("SupportRIMMatches(TpmLog.bin) = %v", err)
	}
	if got := base.Files()[0].Hash; !bytes.Equal(got, want) {
		t.Errorf("support RIM hash %x, want %x (HIRS)", got, want)
	}
	if err := base.SupportRIMMatches("TpmLog.bin", testref.Read(t, "eventlogs/uefi/hirs/TPMLog_Altered.bin")); err == nil {
		t.Error("altered support RIM matched the base RIM")
	}
	// The support RIM then provides the PCR reference values.
	l, err := eventlog.ParseTCG(logRaw)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := l.Replay(eventlog.ReplayOptions{}); err != nil || len(v[alg.SHA256]) == 0 {
		t.Errorf("support RIM replay = %v, %v", v, err)
	}
}

func TestCoRIMPCRs(t *testing.T) {
	now := time.Now()
	roots, signer := vendorPKI(t, "RIV Test Networks", elliptic.P384(), now.Add(-time.Hour), now.Add(time.Hour))
	vals := pcr.Values{}
	for i := 0; i < 8; i++ {
		vals.Set(alg.SHA256, i, alg.SHA256.Sum([]byte{byte(i)}))
		vals.Set(alg.SHA384, i, alg.SHA384.Sum([]byte{byte(i)}))
	}
	u, err := NewPCRCoRIM(PCRSpec{ID: id1, Vendor: "RIV Test Networks", VendorRegID: "https://rims.example.net", Model: "rtr-1000", PCRs: vals})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := SignCoRIM(u, signer)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Verify(raw, VerifyOptions{Roots: roots})
	if err != nil {
		t.Fatalf("Verify(CoRIM) = %v", err)
	}
	if r.Kind != KindCoRIM || !r.PCRs.Equal(vals) {
		t.Errorf("CoRIM PCRs: %v", r.PCRs.Diff(vals))
	}
}

func TestReferenceSignedCoRIMs(t *testing.T) {
	key, err := ParsePublicKey(testref.Read(t, "rim/corim/veraison/signed-corim-verification-key.jwk.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"signed-good-corim.cbor", "signed-example-corim.cbor", "signed-corim-with-extensions.cbor"} {
		r, err := Verify(testref.Read(t, "rim/corim/veraison", f), VerifyOptions{Key: key})
		if err != nil {
			t.Errorf("Verify(%s) = %v", f, err)
			continue
		}
		if r.Kind != KindCoRIM {
			t.Errorf("%s: kind %v", f, r.Kind)
		}
	}
}

func TestReferenceCOSE(t *testing.T) {
	key, err := ParsePublicKey(testref.Read(t, "rim/cose/hirs/signed-01.json.key"))
	if err != nil {
		t.Fatal(err)
	}
	aad, _ := hex.DecodeString("11aa22bb33cc44dd55006699")
	content := testref.Read(t, "rim/cose/hirs/sign-pass-cose-content.bin")
	for _, c := range []struct {
		file string
		aad  []byte
	}{{"sign-pass-01.cose", nil}, {"sign-pass-02.cose", aad}, {"sign-pass-03.cose", nil}} {
		s, err := VerifyCOSE(testref.Read(t, "rim/cose/hirs", c.file), VerifyOptions{Key: key, ExternalAAD: c.aad})
		if err != nil {
			t.Errorf("VerifyCOSE(%s) = %v", c.file, err)
			continue
		}
		if !bytes.Equal(s.Payload, content) {
			t.Errorf("%s payload %q", c.file, s.Payload)
		}
	}
	if _, err := VerifyCOSE(testref.Read(t, "rim/cose/hirs/sign-pass-02.cose"), VerifyOptions{Key: key}); !errors.Is(err, ErrSignature) {
		t.Errorf("VerifyCOSE(02 without its AAD) = %v, want ErrSignature", err)
	}
	// HIRS's mislabelled sample: ES256 in the header, an RSA-3072 signature.
	rsaKey, err := ParsePublicKey(testref.Read(t, "rim/cose/hirs/certs/COMP_OEM1_rim_signer_rsa_3k_sha384.pem"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = VerifyCOSE(testref.Read(t, "rim/cose/hirs/sign_pass_rsa_3072_sha384.cose"), VerifyOptions{Key: rsaKey})
	if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "ES256") || !strings.Contains(err.Error(), "RSA") {
		t.Errorf("VerifyCOSE(mislabelled) = %v, want a clear ES256-vs-RSA rejection", err)
	}
}

func TestIndexSupersedes(t *testing.T) {
	old, _ := NewTag(imageSpec(id1, "1.0"))
	cur, _ := NewTag(imageSpec(id2, "2.0", id1))
	x := NewIndex()
	for _, tg := range []*Tag{old, cur} {
		if err := x.Add(tg); err != nil {
			t.Fatal(err)
		}
	}
	m := x.Lookup(alg.SHA256, alg.SHA256.Sum([]byte("kernel 1.0")))
	if len(m) != 1 || m[0].TagID != id1 || m[0].Path != "/boot/vmlinuz-1.0" {
		t.Fatalf("Lookup(kernel 1.0) = %+v", m)
	}
	// The same hash under another algorithm is another file.
	if m := x.Lookup(alg.SHA384, alg.SHA256.Sum([]byte("kernel 1.0"))); m != nil {
		t.Errorf("Lookup(SHA-384, the SHA-256 hash) = %+v, want none", m)
	}
	h := alg.SHA256.Sum([]byte("kernel 1.0"))
	if n := testing.AllocsPerRun(100, func() { x.Lookup(alg.SHA256, h) }); n != 0 {
		t.Errorf("Lookup allocates %v times; it runs for every measured file of every poll", n)
	}
	if got := x.SupersededBy(id1); len(got) != 1 || got[0] != id2 {
		t.Errorf("SupersededBy(1.0) = %v, want [%s]", got, id2)
	}
	if got := x.SupersededBy(id2); got != nil {
		t.Errorf("SupersededBy(2.0) = %v, want none", got)
	}
	if err := x.Add(old); err == nil {
		t.Error("adding a tag-id twice succeeded")
	}
}

func TestDecodeHIRSCoSWID(t *testing.T) {
	// HIRS's sample wraps the tag in 1398229316 around a byte string, but
	// its entity has no entity-name and its tag-version is a string: not
	// RFC 9393. It must be refused with a reason, not crash.
	_, err := DecodeTag(testref.Read(t, "rim/coswid/hirs/coswid_rim_1.coswid"))
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("DecodeTag(HIRS) = %v, want ErrMalformed", err)
	}
}

// TestToBeSignedExact checks the Sig_structure byte for byte against the
// COSE WG examples. (cose-pass-03-toBeSigned.bin belongs to a message with
// another protected header than sign-pass-03, so it is not compared.)
func TestToBeSignedExact(t *testing.T) {
	aad, _ := hex.DecodeString("11aa22bb33cc44dd55006699")
	for _, c := range []struct {
		msg, tbs string
		aad      []byte
	}{{"sign-pass-01.cose", "cose-pass-01-toBeSigned.bin", nil}, {"sign-pass-02.cose", "cose-pass-02-toBeSigned.bin", aad}} {
		msg := cose.NewSign1Message()
		raw := testref.Read(t, "rim/cose/hirs", c.msg)
		if err := msg.UnmarshalCBOR(raw); err != nil {
			var u cose.UntaggedSign1Message
			if err := u.UnmarshalCBOR(raw); err != nil {
				t.Fatal(err)
			}
			msg = (*cose.Sign1Message)(&u)
		}
		got, err := toBeSigned(msg, c.aad)
		if err != nil {
			t.Fatal(err)
		}
		if want := testref.Read(t, "rim/cose/hirs", c.tbs); !bytes.Equal(got, want) {
			t.Errorf("%s: toBeSigned %x, want %x", c.msg, got, want)
		}
	}
}

func TestIndexDigest(t *testing.T) {
	old, _ := NewTag(imageSpec(id1, "1.0"))
	cur, _ := NewTag(imageSpec(id2, "2.0", id1))
	build := func(tags ...*Tag) *Index {
		x := NewIndex()
		for _, tg := range tags {
			if err := x.Add(tg); err != nil {
				t.Fatal(err)
			}
		}
		return x
	}
	ab, ba, a := build(old, cur), build(cur, old), build(old)
	if ab.Digest() != ba.Digest() {
		t.Error("the digest depends on the order the tags were added in")
	}
	if ab.Digest() == a.Digest() || a.Digest() == NewIndex().Digest() {
		t.Error("indexes holding different tags have one digest")
	}
	c := a.Clone()
	if c.Digest() != a.Digest() {
		t.Error("a clone's digest differs")
	}
	c.AddPCRs(PCRReference{ID: "ref", PCRs: pcr.Values{alg.SHA256: {0: make([]byte, 32)}}})
	if c.Digest() == a.Digest() {
		t.Error("adding PCR references left the digest as it was")
	}
	d := a.Clone()
	d.AddPCRs(PCRReference{ID: "ref", PCRs: pcr.Values{alg.SHA256: {0: bytes.Repeat([]byte{1}, 32)}}})
	if c.Digest() == d.Digest() {
		t.Error("PCR references with other values have one digest")
	}
}

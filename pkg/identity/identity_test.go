package identity

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openriv/riv/pkg/tpm"
)

type pairFixture struct {
	ca       *CA
	roots    *x509.CertPool
	id, ak   *x509.Certificate
	evidence *Evidence
	tp       *tpm.TPM
	iak, idk *tpm.Key
}

// newPair provisions an IAK and IDevID in the simulator, certifies the
// IDevID with the IAK and has a manufacturer CA issue both certificates.
func newPair(t *testing.T, alg tpm.KeyAlg) *pairFixture {
	t.Helper()
	ctx := context.Background()
	tp, err := tpm.Open(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	iak, err := tp.CreateKey(ctx, tpm.KeySpec{Alg: alg, Restricted: true, Label: "IAK"})
	if err != nil {
		t.Fatal(err)
	}
	idk, err := tp.CreateKey(ctx, tpm.KeySpec{Alg: alg, Label: "IDevID"})
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 32)
	rand.Read(nonce)
	info, sig, err := tp.Certify(ctx, idk, iak, nonce)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca, err := NewCA("RIV Test Manufacturer CA", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dev := Device{Serial: "RIV-0001", Model: "riv-router-1", Organization: "RIV Test Networks"}
	id, err := ca.Issue(IDevID, idk.Public.Key, dev, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := ca.Issue(IAK, iak.Public.Key, dev, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &pairFixture{ca: ca, roots: roots, id: id, ak: ak, tp: tp, iak: iak, idk: idk,
		evidence: &Evidence{CertifyInfo: info, Signature: sig, AKPublic: iak.Public.Raw, IDPublic: idk.Public.Raw, Qualifying: nonce}}
}

func TestVerifyPair(t *testing.T) {
	for _, alg := range []tpm.KeyAlg{tpm.ECCP256, tpm.ECCP384, tpm.RSA2048} {
		t.Run(alg.String(), func(t *testing.T) {
			f := newPair(t, alg)
			r := VerifyPair(f.id, f.ak, VerifyOptions{Roots: f.roots, Evidence: f.evidence, Serial: "RIV-0001"})
			if !r.OK {
				t.Fatalf("VerifyPair() reasons: %v", r.Reasons)
			}
			san, err := ParseSAN(f.id)
			if err != nil || string(san.HardwareModule.HwSerialNum) != "RIV-0001" || !san.HardwareModule.HwType.Equal(OIDTPM20HwType) {
				t.Errorf("ParseSAN() = %+v, %v", san, err)
			}
		})
	}
}

func TestVerifyPairRejects(t *testing.T) {
	f := newPair(t, tpm.ECCP256)
	now := time.Now()
	other := Device{Serial: "RIV-0002", Model: "riv-router-1", Organization: "RIV Test Networks"}
	otherID, _ := f.ca.Issue(IDevID, f.idk.Public.Key, other, now, 0)
	// An IAK certificate whose subject names another model.
	renamed := Device{Serial: "RIV-0001", Model: "evil-router", Organization: "RIV Test Networks"}
	renamedAK, _ := f.ca.Issue(IAK, f.iak.Public.Key, renamed, now, 0)
	rogue, _ := NewCA("Rogue CA", now, time.Hour)
	rogueID, _ := rogue.Issue(IDevID, f.idk.Public.Key, Device{Serial: "RIV-0001", Model: "riv-router-1", Organization: "RIV Test Networks"}, now, 0)
	expiredAK, _ := f.ca.Issue(IAK, f.iak.Public.Key, Device{Serial: "RIV-0001", Model: "riv-router-1", Organization: "RIV Test Networks"}, now.Add(-48*time.Hour), time.Hour)
	// An IDevID certificate issued (wrongly) with the IAK profile.
	asAK, _ := f.ca.Issue(IAK, f.idk.Public.Key, Device{Serial: "RIV-0001", Model: "riv-router-1", Organization: "RIV Test Networks"}, now, 0)

	// Evidence over another key, and evidence from an unrestricted "AK".
	ctx := context.Background()
	stranger, _ := f.tp.CreateKey(ctx, tpm.KeySpec{Alg: tpm.ECCP256, Label: "stranger"})
	info, sig, _ := f.tp.Certify(ctx, stranger, f.iak, f.evidence.Qualifying)
	wrongName := *f.evidence
	wrongName.CertifyInfo, wrongName.Signature = info, sig
	staleNonce := *f.evidence
	staleNonce.Qualifying = []byte("another nonce")
	unrestricted := *f.evidence
	unrestricted.AKPublic = f.idk.Public.Raw

	tests := []struct {
		name   string
		id, ak *x509.Certificate
		ev     *Evidence
		want   string
	}{
		{"swapped IDevID from another device", otherID, f.ak, nil, "subject"},
		{"IAK subject does not match", f.id, renamedAK, nil, "subject"},
		{"IDevID from a rogue CA", rogueID, f.ak, nil, "does not chain"},
		{"expired IAK", f.id, expiredAK, nil, "expired"},
		{"IDevID with the IAK profile", asAK, f.ak, nil, "policies lack"},
		{"certify over another key", f.id, f.ak, &wrongName, "certifies name"},
		{"stale certify nonce", f.id, f.ak, &staleNonce, "qualifying data"},
		{"AK not restricted", f.id, f.ak, &unrestricted, "restricted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := VerifyPair(tt.id, tt.ak, VerifyOptions{Roots: f.roots, Evidence: tt.ev})
			if r.OK || !strings.Contains(strings.Join(r.Reasons, "; "), tt.want) {
				t.Errorf("VerifyPair() = OK %v, reasons %v; want a reason with %q", r.OK, r.Reasons, tt.want)
			}
		})
	}
}

func TestParseSANMalformed(t *testing.T) {
	f := newPair(t, tpm.ECCP256)
	c := *f.id
	c.Extensions = nil
	for _, e := range f.id.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			e.Value = e.Value[:len(e.Value)-3]
		}
		c.Extensions = append(c.Extensions, e)
	}
	if _, err := ParseSAN(&c); err == nil {
		t.Error("ParseSAN(truncated) succeeded")
	}
}

func FuzzParseSAN(f *testing.F) {
	ca, _ := NewCA("fuzz", time.Now(), time.Hour)
	c, _ := ca.Issue(IDevID, ca.Cert.PublicKey, Device{Serial: "S1", Model: "m"}, time.Now(), 0)
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			f.Add(e.Value)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cert := &x509.Certificate{}
		cert.Extensions = append(cert.Extensions, pkixExt(b))
		ParseSAN(cert)
	})
}

func TestCertsOnlyCMS(t *testing.T) {
	f := newPair(t, tpm.ECCP256)
	b, err := CertsOnlyCMS(f.ak)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCertsOnlyCMS(b)
	if err != nil || len(got) != 1 || !got[0].Equal(f.ak) {
		t.Fatalf("ParseCertsOnlyCMS = %v, %v", got, err)
	}
	// openssl reads it as a CMS SignedData holding the certificate.
	if p, err := exec.LookPath("openssl"); err == nil {
		path := filepath.Join(t.TempDir(), "c.cms")
		os.WriteFile(path, b, 0o600)
		out, err := exec.Command(p, "cms", "-cmsout", "-print", "-inform", "DER", "-in", path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "signedData") || !strings.Contains(string(out), "RTR") && !strings.Contains(string(out), "RIV-0001") {
			t.Errorf("openssl cms: %v\n%s", err, out)
		}
	}
	if _, err := ParseCertsOnlyCMS([]byte{0x30, 0x03, 0x06, 0x01, 0x00}); err == nil {
		t.Error("garbage parsed")
	}
}

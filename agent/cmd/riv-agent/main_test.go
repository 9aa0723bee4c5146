package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/tpm/tpmtest"
)

// TestProvisionCommand runs `riv-agent provision` twice against a
// manufactured swtpm: the first run enrolls, the second changes nothing.
func TestProvisionCommand(t *testing.T) {
	sw := tpmtest.StartManufacturedSwtpm(t)
	dir := t.TempDir()
	ca, err := identity.NewCA("RIV Test Manufacturer", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := x509.MarshalPKCS8PrivateKey(ca.Signer)
	caCert, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	os.WriteFile(caCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o600)
	os.WriteFile(caKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
	args := []string{"--tpm", sw.Spec(), "--dir", filepath.Join(dir, "device"), "--serial", "RTR-7", "--model", "rtr-1000",
		"--ca-cert", caCert, "--ca-key", caKey, "--tpm-ca", sw.CARoot, "--tpm-ca", sw.CAIntermediate, "--alg", "ecc-p384"}
	var out bytes.Buffer
	if err := app.Exec(append([]string{"provision"}, args...), &out, io.Discard); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if !strings.Contains(out.String(), "created=true") {
		t.Errorf("first run: %s", out.String())
	}
	out.Reset()
	if err := app.Exec(append([]string{"provision"}, args...), &out, io.Discard); err != nil {
		t.Fatalf("provision again: %v", err)
	}
	if !strings.Contains(out.String(), "created=false") {
		t.Errorf("second run: %s", out.String())
	}
	for _, f := range []string{"idevid.pem", "iak.pem"} {
		if _, err := os.Stat(filepath.Join(dir, "device", f)); err != nil {
			t.Error(err)
		}
	}
	if err := app.Exec([]string{"provision", "--serial", "x"}, &out, io.Discard); err == nil {
		t.Error("provision without a CA succeeded")
	}
}

package e2e

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/openriv/riv/agent/sim/device"
	client "github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// TestCheckquoteWithExposedIAK fetches a quote and the IAK certificate over
// NETCONF with the collector's client and has tpm2-tools verify the quote.
func TestCheckquoteWithExposedIAK(t *testing.T) {
	cq := testref.NeedTool(t, "tpm2_checkquote")
	d, err := device.Start(context.Background(), device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.DialSSH(ctx, d.SSHAddr, d.User, d.SSHClientKey)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sup, err := c.Support(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var iak *x509.Certificate
	for _, ce := range sup.Certificates {
		if ce.Type == "initial-attestation-certificate" {
			iak = ce.Cert
		}
	}
	if iak == nil {
		t.Fatal("no IAK certificate exposed")
	}
	nonce := make([]byte, 32)
	rand.Read(nonce)
	qs, err := c.Challenge(ctx, nonce, []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spki, _ := x509.MarshalPKIXPublicKey(iak.PublicKey)
	os.WriteFile(filepath.Join(dir, "iak.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o600)
	os.WriteFile(filepath.Join(dir, "quote"), qs[0].Attest, 0o600)
	os.WriteFile(filepath.Join(dir, "sig"), qs[0].Sig, 0o600)
	out, err := exec.Command(cq, "-u", filepath.Join(dir, "iak.pem"), "-m", filepath.Join(dir, "quote"), "-s", filepath.Join(dir, "sig"),
		"-g", "sha256", "-q", hex.EncodeToString(nonce)).CombinedOutput()
	if err != nil {
		t.Errorf("tpm2_checkquote: %v\n%s", err, out)
	}
}

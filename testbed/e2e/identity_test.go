package e2e

import (
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/agent/sim/attack"
	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/agent/sim/vendor"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/rim"
)

// TestIdentityAttacks: a device presenting another device's IDevID
// certificate, or an IAK certificate whose subject does not match, is an
// untrustworthy instance, whatever its quote says.
func TestIdentityAttacks(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name   string
		certs  func(ca *identity.CA, id, ak *x509.Certificate) (*x509.Certificate, *x509.Certificate)
		reason string
	}{
		{"swapped IDevID", func(ca *identity.CA, id, ak *x509.Certificate) (*x509.Certificate, *x509.Certificate) {
			other, err := attack.SwapIDevID(ca, id, "RTR-9999")
			if err != nil {
				t.Fatal(err)
			}
			return other, ak
		}, "subject"},
		{"IAK subject mismatch", func(ca *identity.CA, id, ak *x509.Certificate) (*x509.Certificate, *x509.Certificate) {
			bad, err := attack.MismatchedIAK(ca, ak)
			if err != nil {
				t.Fatal(err)
			}
			return id, bad
		}, "subject"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := startWithOpts(t, e, device.Options{Image: router.DefaultImage("2.0"), Certs: c.certs})
			defer d.Close()
			r := e.appraiseSSH(t, d)
			if r.Status != ear.TrustTierContraindicated || r.Vector.InstanceIdentity != ear.UntrustworthyInstanceClaim ||
				!strings.Contains(strings.Join(r.Reasons, "\n"), c.reason) {
				t.Errorf("status %v, instance-identity %v, reasons:\n%s", r.Status, r.Vector.InstanceIdentity, strings.Join(r.Reasons, "\n"))
			}
		})
	}
}

// TestExpiredVendorSigner: the collector refuses a RIM directory signed
// with an expired vendor certificate instead of appraising against it.
func TestExpiredVendorSigner(t *testing.T) {
	now := time.Now()
	v, err := vendor.New("RIV Test Networks", "https://rims.example.net", elliptic.P256(), now.Add(-72*time.Hour), now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tag, _ := rim.NewTag(rim.TagSpec{TagID: v.TagID("image", "rtr-1000", "2.0"), Name: "rtr-1000-image", Version: "2.0", Vendor: v.Name, VendorRegID: v.RegID,
		Files: []rim.File{{Path: "/vmlinuz-2.0", Content: router.DefaultImage("2.0").Kernel}}})
	payload, _ := tag.Encode()
	signed, err := rim.SignCOSE(payload, rim.ContentTypeCoSWID, v.Signer, nil)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "image.cose"), signed, 0o600)
	_, _, err = verifier.LoadRIMs(dir, v.Roots())
	if !errors.Is(err, rim.ErrChain) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("LoadRIMs(expired signer) = %v, want an expired-certificate refusal", err)
	}
}

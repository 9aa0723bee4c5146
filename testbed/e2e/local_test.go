package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/identity"
)

// TestLocalIdentity is item A8: the owner enrolled an LDevID and LAK; the
// device identifies itself with the LDevID on SSH and TLS and lists the
// LAK. A verifier with the owner's anchors appraises the LDevID/LAK pair
// (identity.VerifyOptions.Local) and affirms, quoting with the LAK; one
// without them, or with another owner's, does not trust the device.
func TestLocalIdentity(t *testing.T) {
	e := newEnv(t)
	owner, err := identity.NewCA("RIV Test Owner", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d := startWithOpts(t, e, device.Options{Image: router.DefaultImage("2.0"), Local: true, OwnerCA: owner})
	defer d.Close()
	other, _ := identity.NewCA("Another Owner", time.Now(), 24*time.Hour)
	pool := func(ca *identity.CA) *x509.CertPool {
		p := x509.NewCertPool()
		p.AddCert(ca.Cert)
		return p
	}
	for _, c := range []struct {
		name   string
		owners *x509.CertPool
		status ear.TrustTier
		reason string
	}{
		{"owner anchors", pool(owner), ear.TrustTierAffirming, ""},
		{"no owner anchors", nil, ear.TrustTierContraindicated, "instance-identity"},
		{"another owner's anchors", pool(other), ear.TrustTierContraindicated, "instance-identity"},
	} {
		for _, via := range []string{"ssh", "tls"} {
			t.Run(c.name+"/"+via, func(t *testing.T) {
				key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				v := verifier.New(verifier.Policy{Anchors: e.v.Policy.Anchors, OwnerAnchors: c.owners, RIMs: e.index, Banks: []alg.ID{alg.SHA256}}, key)
				tg := verifier.Target{Name: d.Serial, SSHAddr: d.SSHAddr, SSHUser: d.User, SSHKey: d.SSHClientKey}
				if via == "tls" {
					tg = verifier.Target{Name: d.Serial, TLSAddr: d.TLSAddr, TLS: &tls.Config{Certificates: []tls.Certificate{d.ClientCert}}}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				r, err := v.AppraiseTarget(ctx, tg)
				if via == "tls" && c.status != ear.TrustTierAffirming {
					// The TLS server certificate (the LDevID) chains to no
					// trusted anchor: the handshake is refused, and that is
					// a verdict on the device's identity, not a device that
					// could not be reached.
					if err != nil || r.Status != ear.TrustTierContraindicated || !strings.Contains(strings.Join(r.Reasons, "\n"), "not an IDevID from a trusted manufacturer") {
						t.Errorf("AppraiseTarget() = %v, %v; want a contraindicated identity", r, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("AppraiseTarget() = %v", err)
				}
				reasons := strings.Join(r.Reasons, "\n")
				if r.Status != c.status || !strings.Contains(reasons, c.reason) {
					t.Errorf("status %v, reasons:\n%s\nwant %v with %q", r.Status, reasons, c.status, c.reason)
				}
				if c.status == ear.TrustTierAffirming && r.Serial != d.Serial {
					t.Errorf("serial %q, want %q", r.Serial, d.Serial)
				}
			})
		}
	}
}

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

	"github.com/google/go-cmp/cmp"
	"github.com/veraison/ear"

	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/sim/router"
	snmpc "github.com/openriv/riv/collector/client/snmp"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/identity"
)

// targets are the ways to reach d: NETCONF over SSH, NETCONF over TLS and
// RESTCONF, each with the device's own client credentials.
func targets(d *device.Device) map[string]verifier.Target {
	cfg := func() *tls.Config { return &tls.Config{Certificates: []tls.Certificate{d.ClientCert}} }
	return map[string]verifier.Target{
		"ssh":      {Name: d.Serial, SSHAddr: d.SSHAddr, SSHUser: d.User, SSHKey: d.SSHClientKey},
		"tls":      {Name: d.Serial, TLSAddr: d.TLSAddr, TLS: cfg()},
		"restconf": {Name: d.Serial, RESTCONF: "https://" + d.RESTCONFAddr, TLS: cfg()},
		"snmp": {Name: d.Serial, SNMP: d.SNMPAddr, SNMPUser: snmpc.Credentials{User: d.SNMPUser.Name, AuthProtocol: "SHA-256", AuthKey: string(d.SNMPUser.AuthPassword),
			PrivProtocol: "AES", PrivKey: string(d.SNMPUser.PrivPassword)}},
	}
}

// TestTransportsAgree: the same device gets the same verdict, the same
// reasons and the same trust vector over every transport, and the second
// poll of each (incremental logs, over a kept session) the same again.
func TestTransportsAgree(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, c := range deviceCases() {
		t.Run(c.name, func(t *testing.T) {
			d := start(t, e, c.img)
			defer d.Close()
			if c.after != nil {
				c.after(t, d)
			}
			type verdict struct {
				Status  ear.TrustTier
				Reasons []string
				Vector  ear.TrustVector
			}
			got := map[string][]verdict{}
			vs := map[string]*verifier.Verifier{}
			poll := func(via string, tg verifier.Target) {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				r, err := vs[via].AppraiseTarget(cctx, tg)
				if err != nil {
					t.Fatalf("%s: %v", via, err)
				}
				if len(r.EAR) == 0 {
					t.Errorf("%s: no EAR", via)
				}
				got[via] = append(got[via], verdict{r.Status, r.Reasons, r.Vector})
			}
			tgs := targets(d)
			for via, tg := range tgs {
				key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				vs[via] = verifier.New(e.v.Policy, key)
				vs[via].Reuse = true
				defer vs[via].Close()
				poll(via, tg)
				poll(via, tg)
			}
			// The log grows by a file of the image (measured again, as
			// after an upgrade in place): a third, incremental, poll
			// over each kept session finds the same.
			f := c.img.Packages[0].Files[0]
			if err := d.MeasureFile(ctx, f.Path, f.Content); err != nil {
				t.Fatal(err)
			}
			for via, tg := range tgs {
				poll(via, tg)
			}
			if first := got["ssh"][0]; first.Status != c.status || !strings.Contains(strings.Join(first.Reasons, "\n"), c.reason) {
				t.Errorf("over SSH: %v %v, want %v with %q", first.Status, first.Reasons, c.status, c.reason)
			}
			for _, via := range []string{"ssh", "tls", "restconf", "snmp"} {
				for i, g := range got[via] {
					// The third poll may name the file measured again
					// (a rollback's finding lists the entry).
					want := got["ssh"][min(i, 1)]
					if i == 2 {
						want = got["ssh"][2]
					}
					if d := cmp.Diff(want, g); d != "" {
						t.Errorf("%s poll %d differs from SSH's (-ssh +%s):\n%s", via, i+1, via, d)
					}
				}
			}
		})
	}
}

// TestRESTCONFIdentity: a RESTCONF server whose certificate is no IDevID
// of a trusted manufacturer is a verdict (instance identity), not an
// unreachable device; and a device that refuses the collector's client
// certificate is unreachable.
func TestRESTCONFIdentity(t *testing.T) {
	e := newEnv(t)
	d := start(t, e, router.DefaultImage("2.0"))
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other, err := identity.NewCA("Another Manufacturer", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(other.Cert)
	pol := e.v.Policy
	pol.Anchors = pool
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	r, err := verifier.New(pol, key).AppraiseTarget(ctx, targets(d)["restconf"])
	if err != nil {
		t.Fatalf("an untrusted server certificate: %v, want a verdict", err)
	}
	if r.Status != ear.TrustTierContraindicated || r.Vector.InstanceIdentity != ear.UntrustworthyInstanceClaim || !strings.Contains(strings.Join(r.Reasons, " "), "IDevID") {
		t.Errorf("an untrusted server certificate: %v %v %v", r.Status, r.Vector.InstanceIdentity, r.Reasons)
	}
	// No client certificate: the agent ends the handshake (TLS 1.3: the
	// collector sees an alert or a reset on its first request), and the
	// device is unreachable, not a verdict.
	tg := targets(d)["restconf"]
	tg.TLS = &tls.Config{}
	if r, err := verifier.New(e.v.Policy, key).AppraiseTarget(ctx, tg); err == nil {
		t.Errorf("without a client certificate: a verdict %v %v", r.Status, r.Reasons)
	}
}

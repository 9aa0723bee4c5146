package verifier_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/collector/evidence"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/testbed/fleetsim"
)

// session is a device's session that counts its support fetches and,
// with forge set, presents forge's certificates in place of those of
// the same name.
type session struct {
	evidence.Session
	supports *int
	forge    map[string]*x509.Certificate
}

func (s session) Support(ctx context.Context) (*evidence.Support, error) {
	*s.supports++
	sup, err := s.Session.Support(ctx)
	if err != nil {
		return nil, err
	}
	for i, c := range sup.Certificates {
		if f := s.forge[c.Name]; f != nil {
			sup.Certificates[i].Cert = f
		}
	}
	return sup, nil
}

// TestKeptSupportVerified: between polls the verifier keeps only the
// keys and digests of a device's certificates; when a verdict on them is
// no longer cached, it fetches the certificates again and verifies them,
// to the same verdict for a genuine device, and to an untrustworthy one
// for a device that now presents certificates of the same keys that do
// not chain to the anchors (the kept digests are never taken for a
// verified certificate).
func TestKeptSupportVerified(t *testing.T) {
	d, pol := fleet(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v := verifier.New(pol, key)

	// The same device and keys, certified by a CA the verifier does not
	// trust.
	rogue, err := identity.NewCA("Rogue", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dev := identity.Device{Serial: d.IDevID.Subject.SerialNumber, Model: d.IDevID.Subject.CommonName, Organization: d.IDevID.Subject.Organization[0]}
	forge := map[string]*x509.Certificate{}
	for name, c := range map[string]struct {
		role identity.Role
		cert *x509.Certificate
	}{"idevid": {identity.IDevID, d.IDevID}, "iak": {identity.IAK, d.IAK}} {
		if forge[name], err = rogue.Issue(c.role, c.cert.PublicKey, dev, time.Now(), 0); err != nil {
			t.Fatal(err)
		}
	}

	supports := 0
	poll := func(forge map[string]*x509.Certificate) *verifier.Result {
		t.Helper()
		return appraise(t, v, d, session{supports: &supports, forge: forge})
	}
	verdict := func(r *verifier.Result) any {
		return struct {
			Status  ear.TrustTier
			Vector  ear.TrustVector
			Reasons []string
			Serial  string
		}{r.Status, r.Vector, r.Reasons, r.Serial}
	}

	// The first poll's state starts over (a first appraisal is a
	// re-attestation): the second fetches the support again.
	poll(nil)
	poll(nil)
	n := supports
	kept := poll(nil)
	if kept.Status != ear.TrustTierAffirming || supports != n {
		t.Fatalf("third poll: status %v, %d support fetches; want affirming, %d (the support kept): %q", kept.Status, supports, n, kept.Reasons)
	}

	v.ForgetVerdicts()
	again := poll(nil)
	if supports != n+1 {
		t.Errorf("poll after the verdicts were forgotten: %d support fetches, want %d (the certificates fetched to be verified)", supports, n+1)
	}
	if diff := cmp.Diff(verdict(kept), verdict(again)); diff != "" {
		t.Errorf("verdict after the certificates were verified again (-kept +again):\n%s", diff)
	}
	if r := poll(nil); supports != n+1 || r.Status != ear.TrustTierAffirming {
		t.Errorf("next poll: status %v, %d support fetches; want affirming, %d (the new verdict cached)", r.Status, supports, n+1)
	}

	v.ForgetVerdicts()
	forged := poll(forge)
	if supports != n+2 {
		t.Errorf("forged poll: %d support fetches, want %d", supports, n+2)
	}
	if forged.Vector.InstanceIdentity != ear.UntrustworthyInstanceClaim || forged.Status != ear.TrustTierContraindicated {
		t.Errorf("forged certificates: instance-identity %v, status %v; want untrustworthy, contraindicated (reasons %q)", forged.Vector.InstanceIdentity, forged.Status, forged.Reasons)
	}
	if reasons := strings.Join(forged.Reasons, "\n"); !strings.Contains(reasons, "does not chain to the trust anchors") {
		t.Errorf("forged certificates: reasons %q, want the chain failure", reasons)
	}
}

// TestKeptSupportOwnerAnchors: with owner anchors, whether the identity
// is the owner's is a verdict cached as the others are, either way: a
// manufacturer identity's kept certificates do not have to be fetched
// again on every poll to find that they are not the owner's.
func TestKeptSupportOwnerAnchors(t *testing.T) {
	d, pol := fleet(t)
	owner, err := identity.NewCA("Owner", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pol.OwnerAnchors = x509.NewCertPool()
	pol.OwnerAnchors.AddCert(owner.Cert)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v := verifier.New(pol, key)
	supports := 0
	appraise(t, v, d, session{supports: &supports})
	appraise(t, v, d, session{supports: &supports})
	n := supports
	for _, forget := range []bool{false, false, true, false} {
		if forget {
			v.ForgetVerdicts()
			n++
		}
		r := appraise(t, v, d, session{supports: &supports})
		if r.Status != ear.TrustTierAffirming || supports != n {
			t.Errorf("poll (verdicts forgotten: %v): status %v, %d support fetches; want affirming, %d (reasons %q)", forget, r.Status, supports, n, r.Reasons)
		}
	}
}

// fleet is one simulated device and a policy that trusts its
// manufacturer and vendor.
func fleet(t *testing.T) (*fleetsim.Device, verifier.Policy) {
	t.Helper()
	f, err := fleetsim.New(fleetsim.Options{Files: 4})
	if err != nil {
		t.Fatal(err)
	}
	d, err := f.Device(context.Background(), "SIM-00001")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := f.Index(filepath.Join(t.TempDir(), "rims"))
	if err != nil {
		t.Fatal(err)
	}
	return d, verifier.Policy{Anchors: f.Anchors(), RIMs: idx, Banks: []alg.ID{alg.SHA256}}
}

// appraise polls d once over a loopback NETCONF session, through s.
func appraise(t *testing.T, v *verifier.Verifier, d *fleetsim.Device, s session) *verifier.Result {
	t.Helper()
	ctx := context.Background()
	c, err := netconf.Open(ctx, d.Loopback())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.Session = c
	r, err := v.Appraise(ctx, d.Serial, s, d.IdentityKey())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

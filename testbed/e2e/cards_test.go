package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/collector/evidence"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/identity"
)

// Line cards a compromised agent could lie about. The device here has one
// TPM; the lying session makes it claim more, and answers their
// challenges with the one TPM it has — what a compromised NOS could do.

// cardLiar wraps a session: lie rewrites what the device says it has,
// and scoped maps the verifier's scope for a made-up card onto a real
// TPM's.
type cardLiar struct {
	*netconf.Client
	lie    func(*netconf.Support)
	scoped func(netconf.Scope) netconf.Scope
}

func (l *cardLiar) Support(ctx context.Context) (*netconf.Support, error) {
	s, err := l.Client.Support(ctx)
	if err == nil {
		l.lie(s)
	}
	return s, err
}

func (l *cardLiar) Scoped(sc evidence.Scope) evidence.Session {
	return l.Client.Scoped(l.scoped(sc))
}

func appraiseLiar(t *testing.T, v *verifier.Verifier, d *device.Device, liar *cardLiar) *verifier.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := netconf.DialSSH(ctx, d.SSHAddr, d.User, d.SSHClientKey)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	liar.Client = c
	r, err := v.Appraise(ctx, d.Serial, liar, c.HostKey)
	if err != nil {
		t.Fatalf("Appraise() = %v", err)
	}
	return r
}

func TestForgedLineCards(t *testing.T) {
	e := newEnv(t)
	d := start(t, e, nil)
	defer d.Close()
	// Each case lies with the device's own certificates: every one
	// verifies, so only the consistency checks can catch it.
	iakOf := func(s *netconf.Support) netconf.Certificate {
		for _, c := range s.Certificates {
			if c.Type == "initial-attestation-certificate" {
				return c
			}
		}
		t.Fatal("no IAK listed")
		return netconf.Certificate{}
	}
	// The device has one TPM (no mtpm): every scope, the made-up card's
	// too, is answered by it, unscoped.
	toMain := func(netconf.Scope) netconf.Scope { return netconf.Scope{} }
	for _, tc := range []struct {
		name   string
		lie    func(*netconf.Support)
		reason string
	}{
		{"a card that presents the control TPM's attestation key", func(s *netconf.Support) {
			c := iakOf(s)
			c.Name, c.TPM = "lc1-iak", "lc1"
			s.TPMs = append(s.TPMs, netconf.TPM{Name: "lc1", ComputeNode: "lc1"})
			s.Certificates = append(s.Certificates, c)
		}, `the TPMs ["tpm0" "lc1"] present the same attestation key`},
		{"a TPM named as the aggregate", func(s *netconf.Support) {
			s.TPMs = append(s.TPMs, netconf.TPM{Name: "device"})
		}, `a TPM is named "device"`},
		{"two TPMs with one name", func(s *netconf.Support) {
			s.TPMs = append(s.TPMs, netconf.TPM{Name: "lc1"}, netconf.TPM{Name: "lc1"})
		}, `a TPM is named "lc1", which is empty, reserved or not unique`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			anchors := x509.NewCertPool()
			anchors.AddCert(e.mfr.Cert)
			v := verifier.New(verifier.Policy{Anchors: anchors, RIMs: e.index, Banks: []alg.ID{alg.SHA256}}, key)
			r := appraiseLiar(t, v, d, &cardLiar{lie: tc.lie, scoped: toMain})
			if r.Status != ear.TrustTierContraindicated || !strings.Contains(strings.Join(r.Reasons, "\n"), tc.reason) {
				t.Fatalf("%v %v; want contraindicated, %q", r.Status, r.Reasons, tc.reason)
			}
		})
	}

	// A card that is there, then gone, with no reboot between: the
	// verifier remembers the cards it saw. (The card is made up, with an
	// IAK of its own issued for the device; its challenge goes to the real
	// TPM, so it is contraindicated on its own, which is beside the point:
	// the device-level claim is what is checked.)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	anchors := x509.NewCertPool()
	anchors.AddCert(e.mfr.Cert)
	v := verifier.New(verifier.Policy{Anchors: anchors, RIMs: e.index, Banks: []alg.ID{alg.SHA256}}, key)
	v.SupportRefresh = time.Nanosecond
	withCard := func(s *netconf.Support) {
		c := iakOf(s)
		c.Name, c.TPM, c.Cert = "lc1-iak", "lc1", otherIAK(t, e, d)
		s.TPMs = append(s.TPMs, netconf.TPM{Name: "lc1", ComputeNode: "lc1"})
		s.Certificates = append(s.Certificates, c)
	}
	if r := appraiseLiar(t, v, d, &cardLiar{lie: withCard, scoped: toMain}); len(r.TPMs) != 2 {
		t.Fatalf("with the card: %d TPMs %v", len(r.TPMs), r.Reasons)
	}
	r := appraiseLiar(t, v, d, &cardLiar{lie: func(*netconf.Support) { /* the card is gone */ }, scoped: toMain})
	if !strings.Contains(strings.Join(r.Reasons, "\n"), `the line card "lc1" of the last appraisal is gone`) {
		t.Errorf("a card gone without a reboot: %v %v", r.Status, r.Reasons)
	}
}

// TestRouterCardFails: a line card whose TPM stops answering (its swtpm
// killed) is contraindicated with the reason; the control card keeps its
// verdict and the appraisal still ends with a result.
func TestRouterCardFails(t *testing.T) {
	dir := startRouter(t, "--serial", "RTR-LCF", "--line-cards", "1")
	// The card's swtpm: the process whose command line names lc1.sock.
	ents, _ := os.ReadDir("/proc")
	killed := false
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if strings.Contains(string(cmd), "swtpm") && strings.Contains(string(cmd), filepath.Join(dir, "lc1.sock")) {
			syscall.Kill(pid, syscall.SIGKILL)
			killed = true
		}
	}
	if !killed {
		t.Fatal("no swtpm of lc1 found")
	}
	code, out, stderr := runBin(t, "rivctl", "attest", "--json", "--transport", "tls", filepath.Join(dir, "endpoints.json"))
	if code != 1 || !strings.Contains(out, `"name":"tpm0","status":"affirming"`) || !strings.Contains(out, `"name":"lc1","status":"contraindicated"`) ||
		!strings.Contains(out, "lc1: instance-identity: the TPM could not be appraised") {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
}

// otherIAK issues an IAK certificate for the device from its manufacturer
// for a key that is in no TPM of it.
func otherIAK(t *testing.T, e *env, d *device.Device) *x509.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c, err := e.mfr.Issue(identity.IAK, &k.PublicKey, identity.Device{Serial: d.Serial, Model: d.IAK.Subject.CommonName, Organization: "RIV Test Networks"}, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/veraison/ear"

	"github.com/openriv/riv/agent/sim/attack"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// TestRuntimeRollback is item A3: a router booted on image 2.0 runs, at
// run time, the nos-base binary of image 1.0, whose only RIM 2.0
// supersedes. It is reported like a boot-time rollback.
func TestRuntimeRollback(t *testing.T) {
	e := newEnv(t)
	d := start(t, e, router.DefaultImage("2.0"))
	defer d.Close()
	if r := e.appraiseSSH(t, d); r.Status != ear.TrustTierAffirming {
		t.Fatalf("before: %v %v", r.Status, r.Reasons)
	}
	old := router.DefaultImage("1.0")
	var f router.File
	for _, p := range old.Packages {
		if p.Name == "nos-base" {
			f = p.Files[0]
		}
	}
	if err := d.MeasureFile(context.Background(), f.Path, f.Content); err != nil {
		t.Fatal(err)
	}
	r := e.appraiseSSH(t, d)
	reasons := strings.Join(r.Reasons, "\n")
	if r.Status != ear.TrustTierWarning || r.Vector.Executables != ear.UnsafeRuntimeClaim ||
		!strings.Contains(reasons, "rollback at run time: /usr/bin/nos-base (netequip_boot entry") || !strings.Contains(reasons, "is nos-base 1.0, superseded") {
		t.Errorf("status %v, executables %v, reasons:\n%s\nwant a warning naming the rolled-back nos-base 1.0", r.Status, r.Vector.Executables, reasons)
	}
}

// TestPCRReferencesAndSupportRIM is item A4: the kernel is the genuine
// one, but booted with another command line, which no CoSWID file hash
// covers. The signed PCR CoRIM (PCR 8) and the support RIM (the reference
// event log) both catch it, the latter naming the event in words.
func TestPCRReferencesAndSupportRIM(t *testing.T) {
	e := newEnv(t)
	if n := len(e.index.PCRReferences("rtr-1000")); n != 2 {
		t.Errorf("LoadRIMs loaded %d PCR CoRIMs for rtr-1000, want 2", n)
	}
	if n := len(e.index.Supports("rtr-1000")); n != 2 {
		t.Errorf("LoadRIMs loaded %d support RIMs for rtr-1000, want 2", n)
	}
	d := start(t, e, attack.KernelCmdline(router.DefaultImage("2.0"), "console=ttyS0 root=/dev/sda2 rw init=/bin/sh"))
	defer d.Close()
	r := e.appraiseSSH(t, d)
	reasons := strings.Join(r.Reasons, "\n")
	for _, want := range []string{
		"sha256 PCR 8 is ",
		"the signed PCR reference values pcrs-2.0.corim (model rtr-1000)",
		`PCR 8 event 21 (EV_IPL "kernel_cmdline: /vmlinuz-2.0 console=ttyS0 root=/dev/sda2 rw init=/bin/sh") measured`,
		"the support RIM rtr-1000.rimel of rtr-1000-platform 2.0",
	} {
		if !strings.Contains(reasons, want) {
			t.Errorf("reasons lack %q:\n%s", want, reasons)
		}
	}
	if r.Status != ear.TrustTierWarning || r.Vector.Configuration != ear.UnsafeConfigClaim {
		t.Errorf("status %v, configuration %v; want a configuration warning", r.Status, r.Vector.Configuration)
	}
}

// TestLoadRIMsRefusesShrinking: a base RIM whose support RIM is missing,
// or altered, and a CoRIM that does not verify, fail the load.
func TestLoadRIMsRefusesShrinking(t *testing.T) {
	e := newEnv(t)
	copyDir := func() string {
		dir := t.TempDir()
		copyState(t, e.rims, dir)
		return dir
	}
	missing := copyDir()
	os.Remove(filepath.Join(missing, "support-2.0.rimel"))
	altered := copyDir()
	b, _ := os.ReadFile(filepath.Join(altered, "support-2.0.rimel"))
	b[len(b)-1] ^= 1
	os.WriteFile(filepath.Join(altered, "support-2.0.rimel"), b, 0o600)
	badCoRIM := copyDir()
	c, _ := os.ReadFile(filepath.Join(badCoRIM, "pcrs-2.0.corim"))
	c[len(c)-1] ^= 1
	os.WriteFile(filepath.Join(badCoRIM, "pcrs-2.0.corim"), c, 0o600)
	for name, dir := range map[string]string{"missing support RIM": missing, "altered support RIM": altered, "altered CoRIM": badCoRIM} {
		if _, _, err := verifier.LoadRIMs(dir, e.vend.Roots()); err == nil {
			t.Errorf("%s: LoadRIMs succeeded", name)
		}
	}
	if _, n, err := verifier.LoadRIMs(e.rims, e.vend.Roots()); err != nil || n < 10 {
		t.Errorf("LoadRIMs(published) = %d, %v", n, err)
	}
}

// TestStartupConfig is item A5: the measured startup configuration is
// appraised under the AR4SI configuration claim, against the signed RIMs
// and the operator's allow-list.
func TestStartupConfig(t *testing.T) {
	e := newEnv(t)
	cfg := []byte("hostname rtr-1000\nusername backdoor privilege 15 secret x\n")
	d := start(t, e, attack.StartupConfig(router.DefaultImage("2.0"), cfg))
	defer d.Close()
	r := e.appraiseSSH(t, d)
	reasons := strings.Join(r.Reasons, "\n")
	if r.Status != ear.TrustTierWarning || r.Vector.Configuration != ear.UnsafeConfigClaim ||
		!strings.Contains(reasons, "configuration: /etc/riv/startup-config (netequip_boot entry") || !strings.Contains(reasons, "not on the configuration allow-list") {
		t.Errorf("status %v, configuration %v, reasons:\n%s\nwant a configuration warning naming the file", r.Status, r.Vector.Configuration, reasons)
	}
	// The operator approves that configuration by digest.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e.v = verifier.New(verifier.Policy{Anchors: e.v.Policy.Anchors, RIMs: e.index, Banks: []alg.ID{alg.SHA256},
		ConfigAllow: []verifier.AllowedConfig{{Path: "/etc/riv/startup-config", Alg: alg.SHA256, Digest: alg.SHA256.Sum(cfg)}}}, key)
	if r := e.appraiseSSH(t, d); r.Status != ear.TrustTierAffirming || r.Vector.Configuration != ear.ApprovedConfigClaim {
		t.Errorf("allow-listed configuration: %v %v %v", r.Status, r.Vector.Configuration, r.Reasons)
	}
}

// TestExecutablesApprovedAtBootAndRunTime is item A7: every measurement
// approved, at boot and at run time, is AR4SI executables 2; an unknown
// file at run time is not.
func TestExecutablesApprovedAtBootAndRunTime(t *testing.T) {
	e := newEnv(t)
	d := start(t, e, router.DefaultImage("2.0"))
	defer d.Close()
	if r := e.appraiseSSH(t, d); r.Vector.Executables != ear.ApprovedRuntimeClaim || r.Vector.FileSystem != ear.ApprovedFilesClaim {
		t.Errorf("clean router: executables %v, file-system %v, want 2 and 2", r.Vector.Executables, r.Vector.FileSystem)
	}
	if err := d.MeasureFile(context.Background(), "/opt/unknown", []byte("?")); err != nil {
		t.Fatal(err)
	}
	if r := e.appraiseSSH(t, d); r.Vector.Executables != ear.UnrecognizedRuntimeClaim {
		t.Errorf("after an unknown file: executables %v, want %v", r.Vector.Executables, ear.UnrecognizedRuntimeClaim)
	}
}

// TestMultiBankQuoteOrder is item A6: quoting two banks, the verifier
// computes the PCR digest in the order of the TPMS_ATTEST selection. A
// device whose TPM quoted the banks in another order than asked for (and
// reports unsigned values in yet another) is still verified, in both
// banks.
func TestMultiBankQuoteOrder(t *testing.T) {
	e := newEnv(t)
	d := start(t, e, router.DefaultImage("2.0"))
	defer d.Close()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v := verifier.New(verifier.Policy{Anchors: e.v.Policy.Anchors, RIMs: e.index, Banks: []alg.ID{alg.SHA256, alg.SHA384}, MultiBank: true}, key)
	for _, reverse := range []bool{false, true} {
		c := dial(t, d)
		var quotedSel []pcr.Selection
		m := &mitm{Client: c, challenge: func(ctx context.Context, nonce []byte, sel []pcr.Selection) ([]netconf.Quote, error) {
			if reverse {
				sel = slices.Clone(sel)
				slices.Reverse(sel)
			}
			quotedSel = sel
			return c.Challenge(ctx, nonce, sel)
		}}
		r, err := v.Appraise(context.Background(), d.Serial, m, c.HostKey)
		if err != nil {
			t.Fatal(err)
		}
		if len(quotedSel) != 2 || r.Status != ear.TrustTierAffirming {
			t.Errorf("reverse=%v: quoted %v, status %v %v", reverse, quotedSel, r.Status, r.Reasons)
		}
	}
}

// TestStrictPolicySet: the stricter policy set contraindicates what the
// default one only warns about — an unknown run-time file, a boot without
// Secure Boot — and names itself in the reason and the EAR.
func TestStrictPolicySet(t *testing.T) {
	for _, tc := range []struct {
		name    string
		img     func() *router.Image
		unknown bool
		want    map[bool]ear.TrustTier // by strict
		reason  string
	}{
		{"unknown file", func() *router.Image { return router.DefaultImage("2.0") }, true,
			map[bool]ear.TrustTier{false: ear.TrustTierWarning, true: ear.TrustTierContraindicated}, "/usr/local/bin/implant"},
		{"secure boot off", func() *router.Image { img := router.DefaultImage("2.0"); img.SecureBoot = false; return img }, false,
			map[bool]ear.TrustTier{false: ear.TrustTierWarning, true: ear.TrustTierContraindicated}, "Secure Boot is off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			d := start(t, e, tc.img())
			defer d.Close()
			if tc.unknown {
				if err := d.MeasureFile(context.Background(), "/usr/local/bin/implant", []byte("not from the vendor")); err != nil {
					t.Fatal(err)
				}
			}
			for _, strict := range []bool{false, true} {
				pol := e.v.Policy
				if strict {
					pol.Name, pol.RequireSecureBoot, pol.NoUnknownFiles = "riv-strict", true, true
				}
				v := verifier.New(pol, e.v.Key)
				r, _ := appraiseRecorded(t, v, d)
				reasons := strings.Join(r.Reasons, "\n")
				if r.Status != tc.want[strict] || !strings.Contains(reasons, tc.reason) {
					t.Errorf("strict %v: %v, want %v naming %q; reasons:\n%s", strict, r.Status, tc.want[strict], tc.reason, reasons)
				}
				if strict && !strings.Contains(reasons, "riv-strict") {
					t.Errorf("strict: the reasons do not name the policy set:\n%s", reasons)
				}
				if sub := earSubmod(t, r.EAR); sub["ear.appraisal-policy-id"] != pol.Name {
					t.Errorf("strict %v: EAR policy %v, want %s", strict, sub["ear.appraisal-policy-id"], pol.Name)
				}
			}
		})
	}
}

// earSubmod decodes the EAR's one submod (not verifying it: the tests of
// the signature are elsewhere).
func earSubmod(t *testing.T, tok []byte) map[string]any {
	t.Helper()
	parts := strings.Split(string(tok), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %s", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Submods map[string]map[string]any `json:"submods"`
	}
	if err := json.Unmarshal(b, &claims); err != nil || len(claims.Submods) != 1 {
		t.Fatalf("EAR claims %s: %v", b, err)
	}
	for _, s := range claims.Submods {
		return s
	}
	return nil
}

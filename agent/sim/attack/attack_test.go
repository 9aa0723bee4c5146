package attack

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/tpm"
)

var all = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}

// bootPCRs boots img on a reset simulator and returns the SHA-256 PCRs.
func bootPCRs(t *testing.T, tp *tpm.TPM, img *router.Image, after func(*router.Boot)) (pcr.Values, *router.Boot) {
	t.Helper()
	ctx := context.Background()
	if err := tp.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := router.BootImage(ctx, tp, img)
	if err != nil {
		t.Fatal(err)
	}
	if after != nil {
		after(b)
	}
	v, err := tp.ReadPCRs(ctx, []pcr.Selection{{Bank: alg.SHA256, PCRs: all}})
	if err != nil {
		t.Fatal(err)
	}
	return v, b
}

func changed(clean, bad pcr.Values) []int {
	var out []int
	for _, i := range all {
		if !bytes.Equal(clean.Get(alg.SHA256, i), bad.Get(alg.SHA256, i)) {
			out = append(out, i)
		}
	}
	return out
}

func TestAttacksChangeEvidence(t *testing.T) {
	ctx := context.Background()
	tp, err := tpm.Open(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	base := router.DefaultImage("2.0")
	clean, cleanBoot := bootPCRs(t, tp, base, nil)

	tests := []struct {
		name  string
		img   *router.Image
		after func(*router.Boot)
		want  []int // PCRs that must change
		log   string
	}{
		{"tampered kernel", TamperKernel(base), nil, []int{4, 10}, ""},
		{"firmware debug mode", DebugMode(base), nil, []int{1, 10}, "debug=on"},
		{"rollback to 1.0", Rollback("1.0")(base), nil, []int{0, 4, 8, 9, 10}, "vmlinuz-1.0"},
		{"unsigned runtime binary", base, func(b *router.Boot) {
			if err := RuntimeUnsignedBinary(ctx, tp, b, "/tmp/.x/miner", []byte("not from any vendor")); err != nil {
				t.Fatal(err)
			}
		}, []int{10}, "/tmp/.x/miner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, b := bootPCRs(t, tp, tt.img, tt.after)
			if diff := changed(clean, got); !equalInts(diff, tt.want) {
				t.Errorf("changed PCRs %v, want %v", diff, tt.want)
			}
			logs := string(b.UEFILog) + string(b.NetequipLog)
			if tt.log != "" && !strings.Contains(logs, tt.log) {
				t.Errorf("logs do not show %q", tt.log)
			}
			if bytes.Equal(b.UEFILog, cleanBoot.UEFILog) && bytes.Equal(b.NetequipLog, cleanBoot.NetequipLog) {
				t.Error("logs identical to the clean boot")
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestIdentityAttacks(t *testing.T) {
	ctx := context.Background()
	tp, err := tpm.Open(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	iak, _ := tp.CreateKey(ctx, tpm.KeySpec{Alg: tpm.ECCP256, Restricted: true, Label: "IAK"})
	idk, _ := tp.CreateKey(ctx, tpm.KeySpec{Alg: tpm.ECCP256, Label: "IDevID"})
	nonce := make([]byte, 32)
	rand.Read(nonce)
	info, sig, err := tp.Certify(ctx, idk, iak, nonce)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := identity.NewCA("Manufacturer", time.Now(), time.Hour)
	dev := identity.Device{Serial: "RTR-1", Model: "rtr-1000", Organization: "RIV Test Networks"}
	id, _ := ca.Issue(identity.IDevID, idk.Public.Key, dev, time.Now(), 0)
	ak, _ := ca.Issue(identity.IAK, iak.Public.Key, dev, time.Now(), 0)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	ev := &identity.Evidence{CertifyInfo: info, Signature: sig, AKPublic: iak.Public.Raw, IDPublic: idk.Public.Raw, Qualifying: nonce}
	if r := identity.VerifyPair(id, ak, identity.VerifyOptions{Roots: roots, Evidence: ev}); !r.OK {
		t.Fatalf("clean pair: %v", r.Reasons)
	}
	swapped, err := SwapIDevID(ca, id, "RTR-2")
	if err != nil {
		t.Fatal(err)
	}
	if r := identity.VerifyPair(swapped, ak, identity.VerifyOptions{Roots: roots, Evidence: ev}); r.OK {
		t.Error("swapped IDevID accepted")
	}
	bad, err := MismatchedIAK(ca, ak)
	if err != nil {
		t.Fatal(err)
	}
	if r := identity.VerifyPair(id, bad, identity.VerifyOptions{Roots: roots, Evidence: ev}); r.OK || !strings.Contains(strings.Join(r.Reasons, ";"), "subject") {
		t.Errorf("mismatched IAK: OK %v reasons %v", r.OK, r.Reasons)
	}
}

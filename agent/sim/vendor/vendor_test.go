package vendor

import (
	"context"
	"crypto/elliptic"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/openriv/riv/agent/sim/attack"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/rim"
	"github.com/openriv/riv/pkg/tpm"
)

func boot(t *testing.T, tp *tpm.TPM, img *router.Image) *router.Boot {
	t.Helper()
	ctx := context.Background()
	if err := tp.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := router.BootImage(ctx, tp, img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVendorRIMs(t *testing.T) {
	ctx := context.Background()
	tp, err := tpm.Open(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	now := time.Now()
	v, err := New("RIV Test Networks", "https://rims.example.net", elliptic.P384(), now.Add(-time.Hour), now.Add(365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	img1, img2 := router.DefaultImage("1.0"), router.DefaultImage("2.0")
	ref1 := boot(t, tp, img1)
	rims1, err := v.Sign(img1, ref1)
	if err != nil {
		t.Fatal(err)
	}
	ref2 := boot(t, tp, img2)
	tpmPCRs, _ := tp.ReadPCRs(ctx, []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}, {Bank: alg.SHA384, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}})
	rims2, err := v.Sign(img2, ref2, "1.0")
	if err != nil {
		t.Fatal(err)
	}

	idx := rim.NewIndex()
	opts := rim.VerifyOptions{Roots: v.Roots()}
	for _, set := range []*RIMs{rims1, rims2} {
		all := [][]byte{set.Image, set.Base}
		for _, p := range set.Packages {
			all = append(all, p)
		}
		for _, raw := range all {
			r, err := rim.Verify(raw, opts)
			if err != nil {
				t.Fatalf("Verify(vendor RIM) = %v", err)
			}
			if r.Signed.Alg.String() != "ES384" {
				t.Errorf("alg %v, want ES384", r.Signed.Alg)
			}
			if err := idx.Add(r.Tag); err != nil && !strings.Contains(err.Error(), "twice") {
				t.Fatal(err)
			}
		}
		// Base RIM ↔ support RIM.
		base, _ := rim.Verify(set.Base, opts)
		if err := base.Tag.SupportRIMMatches("rtr-1000.rimel", set.Support); err != nil {
			t.Error(err)
		}
	}
	// The CoRIM of 2.0 carries exactly the PCRs the TPM holds after a 2.0 boot.
	cr, err := rim.Verify(rims2.CoRIM, opts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cr.PCRs.Diff(tpmPCRs); diff != nil {
		t.Errorf("CoRIM vs TPM: %v", diff)
	}

	// Every package file the NOS measured is in a signed RIM; the runtime
	// binary of the attack is in none.
	if err := attack.RuntimeUnsignedBinary(ctx, tp, ref2, "/tmp/.x/miner", []byte("evil")); err != nil {
		t.Fatal(err)
	}
	unknown := 0
	for _, e := range ref2.Netequip.Events[1:] {
		if e.IMA.FileName == "/etc/riv/startup-config" {
			continue
		}
		if m := idx.Lookup(e.IMA.FileHashAlg, e.IMA.FileHash); len(m) == 0 {
			unknown++
			if e.IMA.FileName != "/tmp/.x/miner" {
				t.Errorf("%s not in any RIM", e.IMA.FileName)
			}
		}
	}
	if unknown != 1 {
		t.Errorf("%d unknown files, want 1 (the miner)", unknown)
	}

	// Rollback: a device booted with 1.0 runs a kernel whose RIM 2.0
	// supersedes.
	kernel := kernelDigest(t, ref1)
	m := idx.Lookup(alg.SHA256, kernel)
	if len(m) != 1 || m[0].Ver != "1.0" {
		t.Fatalf("Lookup(kernel 1.0) = %+v", m)
	}
	if sup := idx.SupersededBy(m[0].TagID); len(sup) != 1 || sup[0] != rims2.ImageID {
		t.Errorf("1.0 image superseded by %v, want [%s]", sup, rims2.ImageID)
	}
	if sup := idx.SupersededBy(rims2.ImageID); sup != nil {
		t.Errorf("2.0 image superseded by %v", sup)
	}
}

func kernelDigest(t *testing.T, b *router.Boot) []byte {
	var last []byte
	for _, e := range b.UEFI.Events {
		if e.PCR == 4 && eventlog.EventType(e.Type) == eventlog.EvEFIBootServicesApp {
			last = e.Digest(alg.SHA256)
		}
	}
	if last == nil {
		t.Fatal("no kernel event")
	}
	return last
}

// TestExpiredVendorSigner: RIMs signed with a vendor certificate that has
// expired are refused.
func TestExpiredVendorSigner(t *testing.T) {
	ctx := context.Background()
	tp, err := tpm.Open(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	now := time.Now()
	v, err := New("RIV Test Networks", "https://rims.example.net", elliptic.P256(), now.Add(-72*time.Hour), now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	img := router.DefaultImage("1.0")
	rims, err := v.Sign(img, boot(t, tp, img))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rim.Verify(rims.Image, rim.VerifyOptions{Roots: v.Roots()})
	if !errors.Is(err, rim.ErrChain) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Verify(expired signer) = %v, want an expired-certificate chain error", err)
	}
}

package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/agent/inventory"
	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/agent/sim/vendor"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/rim"
	"github.com/openriv/riv/pkg/tpm"
)

// In-band RIMs (RFC 9683 Step 0B): the verifier has no RIMs of its own,
// only the vendor's anchor; the device carries its vendor's signed RIMs in
// riv-software-inventory and the verifier fetches, verifies and uses them.
// Each RIM a device could lie with must be caught.

// publishFor has vend sign the RIMs of images at versions (as the vendor
// publishes them) into a fresh flat directory.
func publishFor(t *testing.T, vend *vendor.Vendor, versions ...string) string {
	t.Helper()
	tp, err := tpm.Open(context.Background(), "sim")
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	flat := t.TempDir()
	if err := vend.Publish(context.Background(), tp, flat, versions...); err != nil {
		t.Fatal(err)
	}
	return flat
}

// installed lays out the inventory a NOS with image version ver installs
// from a flat RIM directory, and loads it.
func installed(t *testing.T, flat, ver string) *inventory.Inventory {
	t.Helper()
	dir := t.TempDir()
	if err := inventory.InstallFlat(dir, flat, ver); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// inbandVerifier trusts the manufacturer and the vendor's RIM anchor and
// holds no RIMs.
func inbandVerifier(mfr *x509.Certificate, rimRoots *x509.CertPool) *verifier.Verifier {
	anchors := x509.NewCertPool()
	anchors.AddCert(mfr)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return verifier.New(verifier.Policy{Anchors: anchors, RIMs: rim.NewIndex(), RIMAnchors: rimRoots, Banks: []alg.ID{alg.SHA256}}, key)
}

func appraiseWith(t *testing.T, v *verifier.Verifier, d *device.Device) *verifier.Result {
	t.Helper()
	e := &env{v: v}
	return e.appraiseSSH(t, d)
}

func TestInbandRIMs(t *testing.T) {
	e := newEnv(t)
	flat := publishFor(t, e.vend, "1.0", "2.0")
	genuine := installed(t, flat, "2.0")

	// A genuine router carrying its RIMs: affirming with none local, and
	// the RIMs fetched once (the second poll asks for nothing).
	v := inbandVerifier(e.mfr.Cert, e.vend.Roots())
	d := device.StartT(t, device.Options{Serial: "RTR-IB1", ManufacturerCA: e.mfr, Inventory: func() *inventory.Inventory { return genuine }})
	r := appraiseWith(t, v, d)
	if r.Status != ear.TrustTierAffirming {
		t.Fatalf("genuine device with in-band RIMs: %v %v", r.Status, r.Reasons)
	}
	before := v.RIMIndex()
	if r := appraiseWith(t, v, d); r.Status != ear.TrustTierAffirming || v.RIMIndex() != before {
		t.Errorf("second poll: %v %v, index replaced %v", r.Status, r.Reasons, v.RIMIndex() != before)
	}
	// Without in-band RIMs and none local, the same device is not
	// affirming: the RIMs did the vouching.
	bare := inbandVerifier(e.mfr.Cert, nil)
	if r := appraiseWith(t, bare, d); r.Status == ear.TrustTierAffirming {
		t.Errorf("no RIMs at all: affirming")
	}
	d.Close()

	// A rollback: a device booting the superseded 1.0 image with the 1.0
	// RIMs, after the verifier has seen 2.0's (which supersede them): the
	// verdict a rollback gets with local RIMs (a warning, see
	// TestEndToEnd), not an affirmation.
	old := installed(t, flat, "1.0")
	d = device.StartT(t, device.Options{Serial: "RTR-IB2", ManufacturerCA: e.mfr, Image: router.DefaultImage("1.0"), Inventory: func() *inventory.Inventory { return old }})
	r = appraiseWith(t, v, d)
	if r.Status != ear.TrustTierWarning || !strings.Contains(strings.Join(r.Reasons, "\n"), "superseded by a newer signed RIM (rollback)") {
		t.Errorf("rollback to superseded RIMs: %v %v", r.Status, r.Reasons)
	}
	d.Close()

	for _, tc := range []struct {
		name   string
		inv    func(t *testing.T) *inventory.Inventory
		reason string
	}{
		{"signed by an unknown key", func(t *testing.T) *inventory.Inventory {
			rogue, err := vendor.New("RIV Test Networks", "https://rims.example.net", elliptic.P256(), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			return installed(t, publishFor(t, rogue, "2.0"), "2.0")
		}, "not signed by a trusted vendor"},
		{"for another product", func(t *testing.T) *inventory.Inventory {
			return installed(t, otherProduct(t, e.vend), "2.0")
		}, `is for the product "rtr-9000", not this device's "rtr-1000"`},
		{"bytes that are not the digest listed", func(t *testing.T) *inventory.Inventory {
			// The agent's inventory lists a digest; the content it serves
			// is another RIM's (a compromised NOS swapping RIMs).
			inv := installed(t, flat, "2.0")
			c := *inv.Components[0]
			c.RIMs = append([]inventory.RIM(nil), c.RIMs...)
			c.RIMs[0].Content = inv.Components[1].RIMs[0].Content
			forged := *inv
			forged.Components = append([]*inventory.Component{&c}, inv.Components[1:]...)
			return &forged
		}, "not the digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := tc.inv(t)
			v := inbandVerifier(e.mfr.Cert, e.vend.Roots())
			d := device.StartT(t, device.Options{Serial: "RTR-IB3", ManufacturerCA: e.mfr, Inventory: func() *inventory.Inventory { return inv }})
			defer d.Close()
			r := appraiseWith(t, v, d)
			if r.Status != ear.TrustTierContraindicated || !strings.Contains(strings.Join(r.Reasons, "\n"), tc.reason) {
				t.Fatalf("%v %v; want contraindicated, %q", r.Status, r.Reasons, tc.reason)
			}
			// Still so on the next poll, without fetching again.
			if r := appraiseWith(t, v, d); r.Status != ear.TrustTierContraindicated {
				t.Errorf("second poll: %v %v", r.Status, r.Reasons)
			}
		})
	}
}

// TestInbandNewPackage: a package installed after the device was first
// appraised brings its signed RIM with it; the poll that first sees its
// file running warns, and makes the next one fetch the inventory again,
// which then vouches for it.
func TestInbandNewPackage(t *testing.T) {
	e := newEnv(t)
	flat := publishFor(t, e.vend, "2.0")
	dir := t.TempDir()
	if err := inventory.InstallFlat(dir, flat, "2.0"); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var cur atomic.Pointer[inventory.Inventory]
	cur.Store(inv)
	v := inbandVerifier(e.mfr.Cert, e.vend.Roots())
	v.InventoryRecheck = time.Nanosecond
	d := device.StartT(t, device.Options{Serial: "RTR-PKG", ManufacturerCA: e.mfr, Inventory: cur.Load})
	for i := range 2 {
		if r := appraiseWith(t, v, d); r.Status != ear.TrustTierAffirming {
			t.Fatalf("poll %d: %v %v", i+1, r.Status, r.Reasons)
		}
	}
	// The NOS installs bgp-extras 1.0 (its signed CoSWID with it) and runs
	// its binary.
	binary := []byte("bgp-extras daemon")
	tag, err := rim.NewTag(rim.TagSpec{TagID: e.vend.TagID("package", "bgp-extras", "1.0"), Name: "bgp-extras", Version: "1.0",
		Vendor: e.vend.Name, VendorRegID: e.vend.RegID, Product: "rtr-1000", Files: []rim.File{{Path: "/usr/bin/bgp-extras", Content: binary}}})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := tag.Encode()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := rim.SignCOSE(payload, rim.ContentTypeCoSWID, e.vend.Signer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := inventory.Install(dir, "bgp-extras", map[string][]byte{"bgp-extras-1.0.cose": signed}); err != nil {
		t.Fatal(err)
	}
	if inv, err = inventory.Load(dir); err != nil {
		t.Fatal(err)
	}
	cur.Store(inv)
	if err := d.MeasureFile(context.Background(), "/usr/bin/bgp-extras", binary); err != nil {
		t.Fatal(err)
	}
	r := appraiseWith(t, v, d)
	if r.Status != ear.TrustTierWarning || !strings.Contains(strings.Join(r.Reasons, "\n"), "/usr/bin/bgp-extras") {
		t.Fatalf("the poll that first sees it: %v %v", r.Status, r.Reasons)
	}
	if r := appraiseWith(t, v, d); r.Status != ear.TrustTierAffirming {
		t.Errorf("the next poll, with the new inventory: %v %v", r.Status, r.Reasons)
	}
}

// otherProduct has vend sign the RIMs of image 2.0 of the rtr-9000, into
// a flat directory.
func otherProduct(t *testing.T, vend *vendor.Vendor) string {
	t.Helper()
	img := router.DefaultImage("2.0")
	img.Model = "rtr-9000"
	tp, err := tpm.Open(context.Background(), "sim")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := router.BootImage(context.Background(), tp, img)
	tp.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := vend.Sign(img, ref)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := s.Write(dir, "2.0"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestInbandProductPerModel: a RIM refused because it is for another
// product than the device's stays refused for that device, and is good
// for a device of the product it is for, appraised by the same verifier.
func TestInbandProductPerModel(t *testing.T) {
	e := newEnv(t)
	inv := installed(t, otherProduct(t, e.vend), "2.0")
	v := inbandVerifier(e.mfr.Cert, e.vend.Roots())
	if r := appraiseOnce(t, v, e, "RTR-1K", nil, inv); r.Status != ear.TrustTierContraindicated {
		t.Fatalf("rtr-1000 carrying rtr-9000 RIMs: %v %v", r.Status, r.Reasons)
	}
	img := router.DefaultImage("2.0")
	img.Model = "rtr-9000"
	if r := appraiseOnce(t, v, e, "RTR-9K", img, inv); r.Status != ear.TrustTierAffirming {
		t.Errorf("rtr-9000 carrying its own RIMs, after an rtr-1000 carried them: %v %v", r.Status, r.Reasons)
	}
}

// TestInbandLiarThenHonest: what one device lies about its RIMs stays its
// own: a device that serves a genuine RIM under another's digest, or
// labels genuine RIMs with a wrong media type, changes nothing for the
// honest device appraised after it by the same verifier.
func TestInbandLiarThenHonest(t *testing.T) {
	e := newEnv(t)
	genuine := installed(t, publishFor(t, e.vend, "2.0"), "2.0")
	v := inbandVerifier(e.mfr.Cert, e.vend.Roots())
	swapped := *genuine
	c0 := *genuine.Components[0]
	c0.RIMs = append([]inventory.RIM(nil), c0.RIMs...)
	c0.RIMs[0].Content = genuine.Components[1].RIMs[0].Content
	swapped.Components = append([]*inventory.Component{&c0}, genuine.Components[1:]...)
	if r := appraiseOnce(t, v, e, "RTR-LIAR", nil, &swapped); r.Status != ear.TrustTierContraindicated || !strings.Contains(strings.Join(r.Reasons, "\n"), "not the digest") {
		t.Fatalf("the liar: %v %v", r.Status, r.Reasons)
	}
	// Genuine RIMs, every one labelled text/plain: what a RIM is comes
	// from its bytes.
	relabelled := *genuine
	relabelled.Components = nil
	for _, c := range genuine.Components {
		cc := *c
		cc.RIMs = append([]inventory.RIM(nil), c.RIMs...)
		for i := range cc.RIMs {
			cc.RIMs[i].MediaType = "text/plain"
		}
		relabelled.Components = append(relabelled.Components, &cc)
	}
	if r := appraiseOnce(t, v, e, "RTR-LABEL", nil, &relabelled); r.Status != ear.TrustTierAffirming {
		t.Errorf("genuine RIMs with wrong media types: %v %v", r.Status, r.Reasons)
	}
	if r := appraiseOnce(t, v, e, "RTR-HONEST", nil, genuine); r.Status != ear.TrustTierAffirming {
		t.Errorf("the honest device after the liar: %v %v", r.Status, r.Reasons)
	}
}

// TestInbandTamperedSupportRIM: a support RIM (the vendor's reference
// event log, unsigned) changed on the device, listed under the digest of
// its new bytes: the signed base RIM names another hash, so it vouches
// for nothing, and the device is contraindicated.
func TestInbandTamperedSupportRIM(t *testing.T) {
	e := newEnv(t)
	flat := publishFor(t, e.vend, "2.0")
	support := filepath.Join(flat, "support-2.0.rimel")
	raw, err := os.ReadFile(support)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 1
	os.WriteFile(support, raw, 0o644)
	inv := installed(t, flat, "2.0")
	v := inbandVerifier(e.mfr.Cert, e.vend.Roots())
	d := device.StartT(t, device.Options{Serial: "RTR-SUP", ManufacturerCA: e.mfr, Inventory: func() *inventory.Inventory { return inv }})
	for i := range 2 {
		// Still so on the next poll, without fetching it again.
		r := appraiseWith(t, v, d)
		if r.Status != ear.TrustTierContraindicated || !strings.Contains(strings.Join(r.Reasons, "\n"), `the device's RIM "support-2.0.rimel" is not signed, and no signed base RIM lists it`) {
			t.Fatalf("poll %d: %v %v", i+1, r.Status, r.Reasons)
		}
	}
}

// TestInbandProductOrder is TestInbandProductPerModel the other way
// round: the device of the product the RIMs are for first, then a device
// of another model carrying them.
func TestInbandProductOrder(t *testing.T) {
	e := newEnv(t)
	inv := installed(t, otherProduct(t, e.vend), "2.0")
	v := inbandVerifier(e.mfr.Cert, e.vend.Roots())
	img := router.DefaultImage("2.0")
	img.Model = "rtr-9000"
	if r := appraiseOnce(t, v, e, "RTR-9K", img, inv); r.Status != ear.TrustTierAffirming {
		t.Fatalf("rtr-9000 with its own RIMs: %v %v", r.Status, r.Reasons)
	}
	r := appraiseOnce(t, v, e, "RTR-1K", nil, inv)
	reasons := strings.Join(r.Reasons, "\n")
	if r.Status != ear.TrustTierContraindicated || !strings.Contains(reasons, `is for the product "rtr-9000", not this device's "rtr-1000"`) {
		t.Fatalf("rtr-1000 carrying rtr-9000 RIMs after an rtr-9000: %v %v", r.Status, r.Reasons)
	}
	// Nothing of the rtr-9000's RIMs vouches for the rtr-1000's files.
	if !strings.Contains(reasons, "is in no signed RIM") {
		t.Errorf("the rtr-1000's components were vouched for by another product's RIMs: %v", r.Reasons)
	}
}

// TestInbandProductsSideBySide: devices of two products, appraised by one
// verifier in either order, each affirming on its own product's RIMs; a
// device carrying the other product's RIMs changes neither.
func TestInbandProductsSideBySide(t *testing.T) {
	e := newEnv(t)
	mine := installed(t, publishFor(t, e.vend, "2.0"), "2.0")
	theirs := installed(t, otherProduct(t, e.vend), "2.0")
	img9k := router.DefaultImage("2.0")
	img9k.Model = "rtr-9000"
	v := inbandVerifier(e.mfr.Cert, e.vend.Roots())
	for _, step := range []struct {
		serial string
		img    *router.Image
		inv    *inventory.Inventory
		want   ear.TrustTier
	}{
		{"RTR-A1K", nil, mine, ear.TrustTierAffirming},
		{"RTR-A9K", img9k, theirs, ear.TrustTierAffirming},
		{"RTR-LIAR", nil, theirs, ear.TrustTierContraindicated},
		{"RTR-B1K", nil, mine, ear.TrustTierAffirming},
		{"RTR-B9K", img9k, theirs, ear.TrustTierAffirming},
	} {
		if r := appraiseOnce(t, v, e, step.serial, step.img, step.inv); r.Status != step.want {
			t.Errorf("%s: %v, want %v: %v", step.serial, r.Status, step.want, r.Reasons)
		}
	}
}

// TestInbandBaseWithoutSupport: a device that lists the genuine base RIM
// without its support RIM (the reference event log) leaves the base
// without it; a device that carries both, appraised later, brings it.
func TestInbandBaseWithoutSupport(t *testing.T) {
	e := newEnv(t)
	flat := publishFor(t, e.vend, "2.0")
	// Without the PCR CoRIM, only the support RIM vouches for the events
	// of the firmware.
	os.Remove(filepath.Join(flat, "pcrs-2.0.corim"))
	full := installed(t, flat, "2.0")
	dir := t.TempDir()
	// The platform component with its base RIM only.
	files := map[string][]byte{}
	b, err := os.ReadFile(filepath.Join(flat, "base-2.0.cose"))
	if err != nil {
		t.Fatal(err)
	}
	files["base-2.0.cose"] = b
	if err := inventory.Install(dir, "platform", files); err != nil {
		t.Fatal(err)
	}
	partial, err := inventory.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	v := inbandVerifier(e.mfr.Cert, e.vend.Roots())
	if r := appraiseOnce(t, v, e, "RTR-PART", nil, partial); r.Status == ear.TrustTierAffirming {
		t.Errorf("the base RIM alone vouched for the boot: %v", r.Reasons)
	}
	if r := appraiseOnce(t, v, e, "RTR-FULL", nil, full); r.Status != ear.TrustTierAffirming {
		t.Errorf("the device with the base and its support: %v %v", r.Status, r.Reasons)
	}
}

// TestInbandVariants: copies of one genuine RIM that differ only in their
// unsigned COSE header (anyone can make as many as they like, and each
// verifies) add nothing: the verifier's index is not replaced for them,
// so no device's kept appraisal is thrown away.
func TestInbandVariants(t *testing.T) {
	e := newEnv(t)
	flat := publishFor(t, e.vend, "2.0")
	raw, err := os.ReadFile(filepath.Join(flat, "image-2.0.cose"))
	if err != nil {
		t.Fatal(err)
	}
	// A lying agent lists, with the image's RIM, variants of it that are
	// new at every poll (the agent's own loader refuses a second tag in
	// a component, so they are added here).
	var cur atomic.Pointer[inventory.Inventory]
	variants := func(poll int) {
		inv := installed(t, flat, "2.0")
		for _, c := range inv.Components {
			if !strings.HasSuffix(c.SoftwareName, "-image") {
				continue
			}
			for i := range 20 {
				msg, err := rim.DecodeCOSE(raw)
				if err != nil {
					t.Fatal(err)
				}
				msg.Headers.RawUnprotected = nil
				msg.Headers.Unprotected[int64(-70000-i)] = int64(poll)
				b, err := msg.MarshalCBOR()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := rim.Verify(b, rim.VerifyOptions{Roots: e.vend.Roots()}); err != nil {
					t.Fatalf("variant %d does not verify: %v", i, err)
				}
				c.RIMs = append(c.RIMs, inventory.RIM{FileName: fmt.Sprintf("image-2.0-v%d.cose", i), MediaType: "application/swid+cose", Digest: sha256.Sum256(b), Content: b})
			}
		}
		cur.Store(inv)
	}
	variants(0)
	v := inbandVerifier(e.mfr.Cert, e.vend.Roots())
	v.SupportRefresh = time.Nanosecond
	d := device.StartT(t, device.Options{Serial: "RTR-VAR", ManufacturerCA: e.mfr, Inventory: cur.Load})
	if r := appraiseWith(t, v, d); r.Status != ear.TrustTierAffirming {
		t.Fatalf("poll 1: %v %v", r.Status, r.Reasons)
	}
	idx := v.RIMIndex()
	for i := range 2 {
		variants(i + 1)
		if r := appraiseWith(t, v, d); r.Status != ear.TrustTierAffirming || v.RIMIndex() != idx {
			t.Fatalf("poll %d: %v %v, index replaced %v", i+2, r.Status, r.Reasons, v.RIMIndex() != idx)
		}
	}
}

// TestUploadedRIMs: RIMs an operator uploads (the collector's POST
// /rims) are verified before they are used, then vouch for a device that
// carries none; a tampered one is refused.
func TestUploadedRIMs(t *testing.T) {
	e := newEnv(t)
	flat := publishFor(t, e.vend, "2.0")
	v := inbandVerifier(e.mfr.Cert, e.vend.Roots())
	d := device.StartT(t, device.Options{Serial: "RTR-UP", ManufacturerCA: e.mfr})
	if r := appraiseWith(t, v, d); r.Status == ear.TrustTierAffirming {
		t.Fatalf("affirming with no RIMs: %v", r.Reasons)
	}
	ents, _ := os.ReadDir(flat)
	// Signed RIMs first, then the support RIM their base lists.
	var support []string
	for _, ent := range ents {
		b, _ := os.ReadFile(filepath.Join(flat, ent.Name()))
		if strings.HasSuffix(ent.Name(), ".rimel") {
			support = append(support, ent.Name())
			continue
		}
		if _, err := v.AddRIM(ent.Name(), b); err != nil {
			t.Fatalf("upload %s: %v", ent.Name(), err)
		}
		tampered := bytes.Clone(b)
		tampered[len(tampered)-1] ^= 1
		if _, err := v.AddRIM(ent.Name(), tampered); err == nil {
			t.Errorf("a tampered %s was accepted", ent.Name())
		}
	}
	for _, n := range support {
		b, _ := os.ReadFile(filepath.Join(flat, n))
		if added, err := v.AddRIM(n, b); err != nil || !added {
			t.Fatalf("upload %s: %v %v", n, added, err)
		}
		b[len(b)-1] ^= 1
		if _, err := v.AddRIM(n, b); err == nil {
			t.Errorf("a support RIM no base lists was accepted")
		}
	}
	if r := appraiseWith(t, v, d); r.Status != ear.TrustTierAffirming {
		t.Errorf("with the uploaded RIMs: %v %v", r.Status, r.Reasons)
	}
}

// appraiseOnce starts a device with the inventory inv (and image img, the
// default when nil), appraises it once with v and stops it: the devices
// of a test run one after the other on the in-process TPM.
func appraiseOnce(t *testing.T, v *verifier.Verifier, e *env, serial string, img *router.Image, inv *inventory.Inventory) *verifier.Result {
	t.Helper()
	d := device.StartT(t, device.Options{Serial: serial, ManufacturerCA: e.mfr, Image: img, Inventory: func() *inventory.Inventory { return inv }})
	defer d.Close()
	return appraiseWith(t, v, d)
}

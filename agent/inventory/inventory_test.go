package inventory_test

import (
	"context"
	"crypto/elliptic"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openriv/riv/agent/inventory"
	"github.com/openriv/riv/agent/sim/vendor"
	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/rim"
	"github.com/openriv/riv/pkg/tpm"
)

const (
	tagA = "3c1f4a52-7d0e-5b9a-8c41-0d2e6f7a8b01"
	tagB = "3c1f4a52-7d0e-5b9a-8c41-0d2e6f7a8b02"
)

func newVendor(t testing.TB) *vendor.Vendor {
	t.Helper()
	now := time.Now()
	v, err := vendor.New("RIV Test Networks", "https://rims.example.net", elliptic.P256(), now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// signedTag is a vendor-signed CoSWID of a package.
func signedTag(t testing.TB, v *vendor.Vendor, spec rim.TagSpec) []byte {
	t.Helper()
	if spec.Vendor == "" {
		spec.Vendor, spec.VendorRegID = v.Name, v.RegID
	}
	tag, err := rim.NewTag(spec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tag.Encode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := rim.SignCOSE(p, rim.ContentTypeCoSWID, v.Signer, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func frrSpec(id string) rim.TagSpec {
	return rim.TagSpec{TagID: id, Name: "frr", Version: "9.1", Supersedes: []string{tagB},
		Files: []rim.File{{Path: "/usr/bin/frr", Content: []byte("frr binary")}, {Path: "/usr/lib/frr/libfrr.so", Content: []byte("frr library")}}}
}

func write(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for n, b := range files {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoad reads a component with its tag, a real signed CoRIM
// (veraison/corim's test vector) and a real support RIM (HIRS's TPM log),
// and checks the summary against what the tag says.
func TestLoad(t *testing.T) {
	v := newVendor(t)
	dir := t.TempDir()
	tag := signedTag(t, v, frrSpec(tagA))
	corim := testref.Read(t, "rim/corim/veraison/signed-good-corim.cbor")
	support := testref.Read(t, "eventlogs/uefi/hirs/TpmLog.bin")
	write(t, dir, map[string][]byte{"frr/frr.cose": tag, "frr/pcrs.corim": corim, "frr/TpmLog.rimel": support,
		".staging/junk": []byte("skipped"), "frr/.swp": []byte("skipped")})
	inv, err := inventory.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Components) != 1 {
		t.Fatalf("Load = %d components, want 1", len(inv.Components))
	}
	c := inv.Component(tagA)
	if c == nil {
		t.Fatalf("Component(%s) = nil", tagA)
	}
	got := struct {
		Name, Tag, SW, Ver string
		Entities           []inventory.Entity
		Links              []inventory.Link
		Paths              []string
		RIMs               [][3]string
	}{c.Name, c.TagID, c.SoftwareName, c.SoftwareVersion, c.Entities, c.Links, nil, nil}
	for _, f := range c.Files {
		got.Paths = append(got.Paths, f.Path)
		if len(f.Hashes) != 2 || f.Hashes[0].Alg != alg.SHA256 || f.Hashes[1].Alg != alg.SHA384 || f.Size == 0 {
			t.Errorf("file %s: size %d, hashes %v", f.Path, f.Size, f.Hashes)
		}
	}
	for _, r := range c.RIMs {
		got.RIMs = append(got.RIMs, [3]string{r.FileName, r.MediaType, r.DigestHex()})
	}
	hex := func(b []byte) string { r := inventory.RIM{Digest: sha256.Sum256(b)}; return r.DigestHex() }
	want := struct {
		Name, Tag, SW, Ver string
		Entities           []inventory.Entity
		Links              []inventory.Link
		Paths              []string
		RIMs               [][3]string
	}{"frr", tagA, "frr", "9.1",
		[]inventory.Entity{{Name: "RIV Test Networks", RegID: "https://rims.example.net", Roles: []string{"tag-creator", "software-creator"}}},
		[]inventory.Link{{Href: "swid:" + tagB, Rel: "supersedes"}},
		[]string{"/usr/bin/frr", "/usr/lib/frr/libfrr.so"},
		[][3]string{{"frr.cose", inventory.MediaCoSWID, hex(tag)}, {"TpmLog.rimel", inventory.MediaSupport, hex(support)}, {"pcrs.corim", inventory.MediaCoRIM, hex(corim)}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load component (-want +got):\n%s", diff)
	}
	if r := c.RIM(hex(corim)); r == nil || string(r.Content) != string(corim) {
		t.Errorf("RIM(%s) does not give the CoRIM's bytes", hex(corim))
	}
	if _, err := rim.Verify(c.RIMs[0].Content, rim.VerifyOptions{Roots: v.Roots()}); err != nil {
		t.Errorf("the served tag does not verify: %v", err)
	}
}

// TestLoadRejects: what the NOS put there that is not an inventory is
// refused, with the file named.
func TestLoadRejects(t *testing.T) {
	v := newVendor(t)
	tag := signedTag(t, v, frrSpec(tagA))
	other := signedTag(t, v, frrSpec(tagB))
	corim := testref.Read(t, "rim/corim/veraison/signed-good-corim.cbor")
	support := testref.Read(t, "eventlogs/uefi/hirs/TpmLog.bin")
	tagAsCoRIM, _ := rim.SignCOSE([]byte{0xa0}, rim.ContentTypeCoRIM, v.Signer, nil)
	cases := []struct {
		name   string
		files  map[string][]byte
		lim    inventory.Limits
		path   string // the file the error names
		sentry error
	}{
		{"garbage tag", map[string][]byte{"a/a.cose": []byte("not COSE")}, inventory.Limits{}, "a/a.cose", rim.ErrMalformed},
		{"CoRIM named as a tag", map[string][]byte{"a/a.cose": corim}, inventory.Limits{}, "a/a.cose", rim.ErrMalformed},
		{"tag named as a CoRIM", map[string][]byte{"a/a.cose": tag, "a/b.corim": other}, inventory.Limits{}, "a/b.corim", rim.ErrMalformed},
		{"CoRIM content type, no CoRIM", map[string][]byte{"a/a.cose": tag, "a/b.corim": tagAsCoRIM}, inventory.Limits{}, "a/b.corim", rim.ErrMalformed},
		{"truncated support RIM", map[string][]byte{"a/a.cose": tag, "a/s.rimel": support[:100]}, inventory.Limits{}, "a/s.rimel", nil},
		{"unknown file type", map[string][]byte{"a/a.cose": tag, "a/README": []byte("hi")}, inventory.Limits{}, "a/README", inventory.ErrLayout},
		{"no tag", map[string][]byte{"a/b.corim": corim}, inventory.Limits{}, "a", inventory.ErrLayout},
		{"two tags", map[string][]byte{"a/a.cose": tag, "a/b.coswid": other}, inventory.Limits{}, "a/b.coswid", inventory.ErrLayout},
		{"same bytes twice", map[string][]byte{"a/a.cose": tag, "a/b.corim": corim, "a/c.corim": corim}, inventory.Limits{}, "a/c.corim", inventory.ErrLayout},
		{"tag-id twice", map[string][]byte{"a/a.cose": tag, "b/b.cose": signedTag(t, v, rim.TagSpec{TagID: tagA, Name: "other"})}, inventory.Limits{}, "b", inventory.ErrLayout},
		{"file at the top", map[string][]byte{"a/a.cose": tag, "stray.cose": other}, inventory.Limits{}, "stray.cose", inventory.ErrLayout},
		{"directory in a component", map[string][]byte{"a/a.cose": tag, "a/sub/x.cose": other}, inventory.Limits{}, "a/sub", inventory.ErrLayout},
		{"file too large", map[string][]byte{"a/a.cose": tag}, inventory.Limits{MaxFileSize: 64}, "a/a.cose", inventory.ErrTooLarge},
		{"too many components", map[string][]byte{"a/a.cose": tag, "b/b.cose": other}, inventory.Limits{MaxComponents: 1}, "", inventory.ErrTooLarge},
		{"too many files", map[string][]byte{"a/a.cose": tag, "a/b.corim": corim}, inventory.Limits{MaxFilesPerComponent: 1}, "a", inventory.ErrTooLarge},
		{"inventory too large", map[string][]byte{"a/a.cose": tag, "b/b.cose": other}, inventory.Limits{MaxTotalSize: int64(len(tag)) + 10}, "b/b.cose", inventory.ErrTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, c.files)
			_, err := c.lim.Load(dir)
			var fe *inventory.FileError
			if !errors.As(err, &fe) {
				t.Fatalf("Load = %v, want a FileError", err)
			}
			if want := filepath.Join(dir, c.path); fe.Path != want {
				t.Errorf("Load error names %s, want %s (%v)", fe.Path, want, err)
			}
			if c.sentry != nil && !errors.Is(err, c.sentry) {
				t.Errorf("Load = %v, want %v", err, c.sentry)
			}
			if !strings.Contains(err.Error(), fe.Path) {
				t.Errorf("error %q does not name %s", err, fe.Path)
			}
		})
	}
}

// TestInstallFlatPublished lays out an inventory from what the testbed's
// vendor publishes and checks each component and RIM: the platform
// carries its base RIM, the CoRIM and the support RIM, every signed RIM
// verifies against the vendor's CA as served, and the base RIM names the
// support RIM by the digest the inventory keys it with.
func TestInstallFlatPublished(t *testing.T) {
	ctx := context.Background()
	tp, err := tpm.Open(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	v := newVendor(t)
	flat, dir := t.TempDir(), t.TempDir()
	if err := v.Publish(ctx, tp, flat, "1.0", "2.0"); err != nil {
		t.Fatal(err)
	}
	if err := inventory.InstallFlat(dir, flat, "2.0"); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range inv.Components {
		names = append(names, c.Name)
	}
	if diff := cmp.Diff([]string{"config", "frr", "image", "nos-base", "openssh-server", "platform"}, sorted(names)); diff != "" {
		t.Errorf("components (-want +got):\n%s", diff)
	}
	for _, c := range inv.Components {
		want := 1
		if c.Name == "platform" {
			want = 3
		}
		if len(c.RIMs) != want {
			t.Errorf("%s has %d RIMs, want %d", c.Name, len(c.RIMs), want)
		}
		for _, r := range c.RIMs {
			flatBytes, err := os.ReadFile(filepath.Join(flat, r.FileName))
			if err != nil || string(flatBytes) != string(r.Content) {
				t.Errorf("%s/%s is not the published file (%v)", c.Name, r.FileName, err)
			}
			if r.MediaType == inventory.MediaSupport {
				continue
			}
			res, err := rim.Verify(r.Content, rim.VerifyOptions{Roots: v.Roots()})
			if err != nil {
				t.Errorf("%s/%s: Verify = %v", c.Name, r.FileName, err)
				continue
			}
			if res.Tag != nil && res.Tag.TagID.String() != c.TagID {
				t.Errorf("%s: served tag-id %s, the signed tag says %s", c.Name, c.TagID, res.Tag.TagID.String())
			}
		}
		if c.Name == "image" && (len(c.Links) != 1 || c.Links[0] != inventory.Link{Href: "swid:" + v.TagID("image", "rtr-1000", "1.0"), Rel: "supersedes"}) {
			t.Errorf("image links %v, want it to supersede 1.0", c.Links)
		}
	}
	p := inv.Component(v.TagID("base", "rtr-1000", "2.0"))
	if p == nil || p.Measurement == nil || p.Measurement.PlatformModelName != "rtr-1000" {
		t.Fatalf("platform component %+v", p)
	}
	var support *inventory.RIM
	for i := range p.RIMs {
		if p.RIMs[i].MediaType == inventory.MediaSupport {
			support = &p.RIMs[i]
		}
	}
	named := false
	for _, f := range p.Files {
		for _, h := range f.Hashes {
			named = named || h.Alg == alg.SHA256 && string(h.Value) == string(support.Digest[:])
		}
	}
	if !named {
		t.Errorf("the base RIM does not list the support RIM's digest %s", support.DigestHex())
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestInstallAndReload: Install replaces a component as a whole and never
// writes one Load would refuse; a Store's reload swaps in the new
// inventory, and a failed one keeps the old.
func TestInstallAndReload(t *testing.T) {
	v := newVendor(t)
	dir := t.TempDir()
	if err := inventory.Install(dir, "frr", map[string][]byte{"frr.cose": signedTag(t, v, frrSpec(tagA))}); err != nil {
		t.Fatal(err)
	}
	st, err := inventory.Open(dir, inventory.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	first := st.Current()
	if len(first.Components) != 1 {
		t.Fatalf("%d components", len(first.Components))
	}
	// A new release of the package replaces the old tag.
	if err := inventory.Install(dir, "frr", map[string][]byte{"frr-9.2.cose": signedTag(t, v, frrSpec(tagB))}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		comp  string
		files map[string][]byte
	}{{"frr", map[string][]byte{"x.cose": []byte("garbage")}}, {".hidden", nil}, {"a/b", nil}, {"ok", map[string][]byte{"../x.cose": nil}}} {
		if err := inventory.Install(dir, bad.comp, bad.files); err == nil {
			t.Errorf("Install(%q, %v) = nil, want an error", bad.comp, bad.files)
		}
	}
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	cur := st.Current()
	if cur == first || len(cur.Components) != 1 || cur.Components[0].TagID != tagB {
		t.Fatalf("after reload: %+v", cur.Components)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("Install left %d entries in the directory", len(ents))
	}
	os.WriteFile(filepath.Join(dir, "frr", "broken.corim"), []byte("x"), 0o644)
	if err := st.Reload(); err == nil || !strings.Contains(err.Error(), "broken.corim") {
		t.Errorf("Reload of a broken inventory = %v", err)
	}
	if st.Current() != cur {
		t.Error("a failed reload replaced the inventory")
	}
}

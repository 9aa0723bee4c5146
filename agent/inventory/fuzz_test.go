package inventory

import (
	"crypto/elliptic"
	"testing"
	"time"

	"github.com/openriv/riv/agent/sim/vendor"
	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/rim"
)

// FuzzParseComponent: whatever bytes the NOS left in a component's
// directory, under whichever RIM extension, are a component or an error,
// never a panic; and a component's summary is servable text.
func FuzzParseComponent(f *testing.F) {
	now := time.Now()
	v, err := vendor.New("RIV Test Networks", "https://rims.example.net", elliptic.P256(), now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	tag, _ := rim.NewTag(rim.TagSpec{TagID: "3c1f4a52-7d0e-5b9a-8c41-0d2e6f7a8b01", Name: "frr", Version: "9.1", Vendor: v.Name,
		VendorRegID: v.RegID, Supersedes: []string{"3c1f4a52-7d0e-5b9a-8c41-0d2e6f7a8b02"},
		Files: []rim.File{{Path: "/usr/bin/frr", Content: []byte("frr")}}})
	p, _ := tag.Encode()
	signed, _ := rim.SignCOSE(p, rim.ContentTypeCoSWID, v.Signer, nil)
	for _, s := range []struct {
		ext uint8
		b   []byte
	}{{0, signed}, {1, testref.Read(f, "rim/corim/veraison/signed-good-corim.cbor")}, {2, testref.Read(f, "eventlogs/uefi/hirs/TpmLog.bin")},
		{0, testref.Read(f, "rim/cose/hirs/sign-pass-01.cose")}} {
		f.Add(s.ext, s.b)
	}
	exts := []string{".cose", ".corim", ".rimel", ".coswid"}
	f.Fuzz(func(t *testing.T, ext uint8, b []byte) {
		name := "f" + exts[int(ext)%len(exts)]
		files := map[string][]byte{name: b}
		if name != "f.cose" {
			files["t.cose"] = signed
		}
		c, err := parseComponent("c", files)
		if err != nil {
			return
		}
		for _, s := range []string{c.TagID, c.SoftwareName, c.SoftwareVersion} {
			if !printable(s) {
				t.Fatalf("unservable text %q", s)
			}
		}
		for _, l := range c.Links {
			if l.Rel == "" || !printable(l.Rel) || !printable(l.Href) {
				t.Fatalf("unservable link %+v", l)
			}
		}
		for _, fl := range c.Files {
			if fl.Path == "" || !printable(fl.Path) {
				t.Fatalf("unservable path %q", fl.Path)
			}
		}
	})
}

// Package vendor is the testbed's software vendor, the Reference Value
// Provider: a vendor CA and RIM-signing certificate, and the signed RIMs
// of each router image — a CoSWID per image and per NOS package, a TCG PC
// Client base RIM with its support RIM (the reference UEFI event log), and
// a CoRIM of the PCR values that log produces.
package vendor

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/rim"
	"github.com/openriv/riv/pkg/tpm"
)

// Vendor signs RIMs.
type Vendor struct {
	Name, RegID string
	CA          *x509.Certificate
	caKey       crypto.Signer
	Signer      rim.Signer
}

// New makes a vendor with a P-384 root and a signing certificate on curve
// (P-256 signs ES256, P-384 ES384) valid from notBefore to notAfter.
func New(name, regID string, curve elliptic.Curve, notBefore, notAfter time.Time) (*Vendor, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ca := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: name + " RIM Root CA", Organization: []string{name}},
		NotBefore: time.Now().Add(-365 * 24 * time.Hour), NotAfter: time.Now().Add(20 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, _ := x509.ParseCertificate(der)
	v := &Vendor{Name: name, RegID: regID, CA: caCert, caKey: caKey}
	return v, v.NewSigner(curve, notBefore, notAfter)
}

// NewSigner issues a fresh RIM-signing certificate (key rotation, or an
// expired one for the attack scenario).
func (v *Vendor) NewSigner(curve elliptic.Curve, notBefore, notAfter time.Time) error {
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return err
	}
	leaf := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: v.Name + " RIM Signer", Organization: []string{v.Name}},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, v.CA, &key.PublicKey, v.caKey)
	if err != nil {
		return err
	}
	c, _ := x509.ParseCertificate(der)
	v.Signer = rim.Signer{Key: key, Chain: []*x509.Certificate{c, v.CA}}
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n.Add(n, big.NewInt(1))
}

// TagID derives a stable UUID (version 5 layout) for a vendor's tag, so the
// same image always gets the same tag-id and newer ones can supersede it.
func (v *Vendor) TagID(kind, name, version string) string {
	h := sha256.Sum256([]byte(v.RegID + "\x00" + kind + "\x00" + name + "\x00" + version))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// RIMs are the signed RIMs of one image.
type RIMs struct {
	Image    []byte            // CoSWID: firmware, boot loader, kernel, initrd
	Packages map[string][]byte // CoSWID per NOS package
	// Config is a CoSWID of the image's approved startup configuration:
	// in the testbed the vendor signs the golden configuration the
	// routers boot with (an operator would sign its own, or list it in
	// the collector's allow-list).
	Config  []byte
	Base    []byte // TCG PC Client base RIM (indirect; lists the support RIM)
	Support []byte // the support RIM: the reference UEFI event log
	CoRIM   []byte // PCR reference values
	ImageID string
}

// Sign produces the RIMs of img from a reference boot; supersedes names
// older image versions this one replaces.
func (v *Vendor) Sign(img *router.Image, ref *router.Boot, supersedes ...string) (*RIMs, error) {
	out := &RIMs{Packages: map[string][]byte{}, Support: ref.UEFILog}
	var sup []string
	for _, old := range supersedes {
		sup = append(sup, v.TagID("image", img.Model, old))
	}
	out.ImageID = v.TagID("image", img.Model, img.Version)
	sign := func(spec rim.TagSpec) ([]byte, error) {
		t, err := rim.NewTag(spec)
		if err != nil {
			return nil, err
		}
		p, err := t.Encode()
		if err != nil {
			return nil, err
		}
		return rim.SignCOSE(p, rim.ContentTypeCoSWID, v.Signer, nil)
	}
	base := rim.TagSpec{Vendor: v.Name, VendorRegID: v.RegID, Product: img.Model, Colloquial: img.Version, Revision: "1", Edition: "standard"}
	var err error
	s := base
	s.TagID, s.Name, s.Version, s.Supersedes = out.ImageID, img.Model+"-image", img.Version, sup
	s.Files = []rim.File{{Path: "firmware.bin", Content: img.Firmware}, {Path: "\\EFI\\riv\\bootx64.efi", Content: img.Bootloader},
		{Path: "/vmlinuz-" + img.Version, Content: img.Kernel}, {Path: "/initrd.img-" + img.Version, Content: img.Initrd}}
	if out.Image, err = sign(s); err != nil {
		return nil, fmt.Errorf("image RIM: %w", err)
	}
	for _, p := range img.Packages {
		s := base
		// The model is in the tag-id: each product's package tag is its
		// own (a tag-id names one tag).
		s.TagID, s.Name, s.Version = v.TagID("package", img.Model+"/"+p.Name, p.Version), p.Name, p.Version
		// A package versioned with the image replaces the older image's:
		// running its old binaries is a rollback.
		if p.Version == img.Version {
			for _, old := range supersedes {
				s.Supersedes = append(s.Supersedes, v.TagID("package", img.Model+"/"+p.Name, old))
			}
		}
		for _, f := range p.Files {
			s.Files = append(s.Files, rim.File{Path: f.Path, Content: f.Content})
		}
		if out.Packages[p.Name], err = sign(s); err != nil {
			return nil, fmt.Errorf("package %s RIM: %w", p.Name, err)
		}
	}
	c := base
	c.TagID, c.Name, c.Version = v.TagID("config", img.Model, img.Version), img.Model+"-startup-config", img.Version
	c.Files = []rim.File{{Path: StartupConfigPath, Content: img.StartupConfig}}
	if out.Config, err = sign(c); err != nil {
		return nil, fmt.Errorf("config RIM: %w", err)
	}
	indirect := rim.PayloadIndirect
	b := base
	b.TagID, b.Name, b.Version = v.TagID("base", img.Model, img.Version), img.Model+"-platform", img.Version
	b.Files = []rim.File{{Path: "rtr-1000.rimel", Content: ref.UEFILog}}
	b.RIM = &rim.ReferenceMeasurement{PayloadType: &indirect, BindingSpecName: "TCG PC Client RIM", BindingSpecVersion: "1.2",
		PlatformManufacturerID: 32473, PlatformManufacturerName: v.Name, PlatformModelName: img.Model, RIMLinkHash: []byte{}}
	if out.Base, err = sign(b); err != nil {
		return nil, fmt.Errorf("base RIM: %w", err)
	}
	l, err := eventlog.ParseTCG(ref.UEFILog)
	if err != nil {
		return nil, err
	}
	// Reference values in every bank the log has but SHA-1 (which no
	// appraisal trusts).
	var banks []alg.ID
	for _, b := range l.Banks {
		if b != alg.SHA1 {
			banks = append(banks, b)
		}
	}
	if len(banks) == 0 {
		return nil, fmt.Errorf("the reference log has SHA-1 digests only: CoRIM has no SHA-1 algorithm for PCR values, and no appraisal trusts SHA-1")
	}
	vals, err := l.Replay(eventlog.ReplayOptions{Banks: banks})
	if err != nil {
		return nil, err
	}
	u, err := rim.NewPCRCoRIM(rim.PCRSpec{ID: v.TagID("corim", img.Model, img.Version), Vendor: v.Name, VendorRegID: v.RegID, Model: img.Model, PCRs: vals})
	if err != nil {
		return nil, err
	}
	if out.CoRIM, err = rim.SignCoRIM(u, v.Signer); err != nil {
		return nil, err
	}
	return out, nil
}

// StartupConfigPath is where a RIV test router keeps its startup
// configuration.
const StartupConfigPath = "/etc/riv/startup-config"

// Publish signs the RIMs of the default images at versions (each newer one
// superseding every older one) from reference boots on tp, which it
// resets, and writes them into dir with the support RIMs beside them:
// what a vendor publishes for its routers.
func (v *Vendor) Publish(ctx context.Context, tp *tpm.TPM, dir string, versions ...string) error {
	for i, ver := range versions {
		img := router.DefaultImage(ver)
		if err := tp.Reset(ctx); err != nil {
			return err
		}
		ref, err := router.BootImage(ctx, tp, img)
		if err != nil {
			return err
		}
		s, err := v.Sign(img, ref, versions[:i]...)
		if err != nil {
			return err
		}
		if err := s.Write(dir, ver); err != nil {
			return err
		}
	}
	return nil
}

// Write writes the RIMs of image version ver into dir as Publish names
// them: image-V.cose, base-V.cose, pcrs-V.corim, support-V.rimel,
// config-V.cose and pkg-NAME-V.cose.
func (s *RIMs) Write(dir, ver string) error {
	files := map[string][]byte{"image-" + ver + ".cose": s.Image, "base-" + ver + ".cose": s.Base, "pcrs-" + ver + ".corim": s.CoRIM,
		"support-" + ver + ".rimel": s.Support, "config-" + ver + ".cose": s.Config}
	for name, p := range s.Packages {
		files["pkg-"+name+"-"+ver+".cose"] = p
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// WriteFiles writes the vendor anchor and signer (PEM) into dir:
// vendor-ca.pem, rim-signer.pem (chain), rim-signer.key.
func (v *Vendor) WriteFiles(dir string) error {
	var chain []byte
	for _, c := range v.Signer.Chain {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(v.Signer.Key)
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{
		"vendor-ca.pem":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: v.CA.Raw}),
		"rim-signer.pem": chain,
		"rim-signer.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Roots returns a pool holding the vendor CA.
func (v *Vendor) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(v.CA)
	return p
}

// Package router simulates a network device's measured boot: a "router
// image" (firmware, boot loader, kernel, initrd, NOS packages, startup
// configuration) is booted into a real TPM (the in-process simulator or
// swtpm). Every stage is extended into the TPM in every allocated bank and
// recorded in a crypto-agile TCG log (PCRs 0–9) and in a netequip_boot log
// (IMA ima-ng format, PCR 10), exactly as firmware and the NOS would.
package router

import (
	"crypto/sha256"
	"fmt"
	"sort"
)

// File is one file of a NOS package.
type File struct {
	Path    string
	Content []byte
}

// Package is a NOS software package.
type Package struct {
	Name, Version string
	Files         []File
}

// Image is everything a router boots.
type Image struct {
	Vendor, Model, Version string
	FirmwareVersion        string
	Firmware               []byte
	Bootloader             []byte
	Kernel                 []byte
	KernelCmdline          string
	Initrd                 []byte
	Packages               []Package
	StartupConfig          []byte
	// SecureBoot and the db certificate the boot loader was verified with.
	SecureBoot bool
	DBCert     []byte
	// DebugMode is a firmware setting that weakens the platform (e.g. a
	// JTAG/debug unlock); firmware measures it into PCR 1.
	DebugMode bool
	// RuntimeOff is a NOS that measures nothing at run time (IMA or its
	// measuring agent off): PCR 10 stays at its reset value and the
	// netequip_boot log is empty.
	RuntimeOff bool
}

// blob makes deterministic content for a component, so that two images of
// the same version measure identically and a new version differs.
func blob(kind, version string, size int) []byte {
	out := make([]byte, 0, size)
	seed := sha256.Sum256([]byte(kind + "\x00" + version))
	for len(out) < size {
		out = append(out, seed[:]...)
		seed = sha256.Sum256(seed[:])
	}
	return out[:size]
}

// DefaultImage returns the image of a RIV test router at version.
func DefaultImage(version string) *Image {
	img := &Image{
		Vendor: "RIV Test Networks", Model: "rtr-1000", Version: version,
		FirmwareVersion: "RIV-FW " + version,
		Firmware:        blob("firmware", version, 64<<10),
		Bootloader:      blob("bootloader", version, 32<<10),
		Kernel:          blob("kernel", version, 256<<10),
		KernelCmdline:   "console=ttyS0 root=/dev/sda2 ro ima_policy=tcb",
		Initrd:          blob("initrd", version, 128<<10),
		SecureBoot:      true,
		DBCert:          blob("db-cert", "vendor", 512),
		StartupConfig:   []byte("hostname rtr-1000\nrouter bgp 65000\n neighbor 192.0.2.1 remote-as 65001\n"),
	}
	for _, p := range []struct{ name, ver string }{{"nos-base", version}, {"frr", "9.1"}, {"openssh-server", "9.2"}} {
		pkg := Package{Name: p.name, Version: p.ver}
		for i, f := range []string{"/usr/bin/" + p.name, "/usr/lib/" + p.name + "/lib" + p.name + ".so"} {
			pkg.Files = append(pkg.Files, File{Path: f, Content: blob(fmt.Sprintf("%s/%d", p.name, i), p.ver, 4096)})
		}
		img.Packages = append(img.Packages, pkg)
	}
	sort.Slice(img.Packages, func(i, j int) bool { return img.Packages[i].Name < img.Packages[j].Name })
	return img
}

// Clone returns a deep-enough copy for attack scenarios to modify.
func (img *Image) Clone() *Image {
	c := *img
	c.Packages = append([]Package(nil), img.Packages...)
	for i := range c.Packages {
		c.Packages[i].Files = append([]File(nil), img.Packages[i].Files...)
	}
	return &c
}

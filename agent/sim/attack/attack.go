// Package attack holds the attacks RIV must catch, as building blocks for
// the testbed: each changes what a simulated router boots or runs, or the
// identity it presents, the way a real attacker would.
package attack

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/tpm"
)

// Image attacks change the image before boot.

// TamperKernel flips bytes of the kernel: a backdoored kernel booted by a
// genuine boot loader. PCR 4 changes.
func TamperKernel(img *router.Image) *router.Image {
	c := img.Clone()
	k := append([]byte(nil), c.Kernel...)
	copy(k[1024:], []byte("backdoor"))
	c.Kernel = k
	return c
}

// DebugMode turns on the firmware debug setting. PCR 1 changes.
func DebugMode(img *router.Image) *router.Image {
	c := img.Clone()
	c.DebugMode = true
	return c
}

// KernelCmdline boots the genuine kernel with another command line (say
// init=/bin/sh, or IMA turned off): no code changes, PCR 8 does.
func KernelCmdline(img *router.Image, cmdline string) *router.Image {
	c := img.Clone()
	c.KernelCmdline = cmdline
	return c
}

// StartupConfig boots with a startup configuration nobody approved (an
// ACL removed, a backdoor account added). The NOS measures it into PCR 10.
func StartupConfig(img *router.Image, config []byte) *router.Image {
	c := img.Clone()
	c.StartupConfig = config
	return c
}

// Rollback returns the older image an attacker downgrades to: validly
// signed once, but superseded by a newer RIM.
func Rollback(older string) func(*router.Image) *router.Image {
	return func(*router.Image) *router.Image { return router.DefaultImage(older) }
}

// RuntimeUnsignedBinary runs a binary that no vendor RIM lists after boot:
// the NOS measures it into PCR 10 and appends it to the netequip_boot log.
func RuntimeUnsignedBinary(ctx context.Context, tp *tpm.TPM, b *router.Boot, path string, content []byte) error {
	return b.MeasureFile(ctx, tp, path, content, nil)
}

// Identity attacks change the certificates a device presents.

// SwapIDevID returns an IDevID certificate the manufacturer CA issued to
// another device (serial), for the same key: a device impersonating
// another's identity.
func SwapIDevID(ca *identity.CA, id *x509.Certificate, otherSerial string) (*x509.Certificate, error) {
	dev := identity.Device{Serial: otherSerial, Model: id.Subject.CommonName, Organization: first(id.Subject.Organization)}
	return ca.Issue(identity.IDevID, id.PublicKey, dev, time.Now(), 0)
}

// MismatchedIAK returns an IAK certificate for the same key whose subject
// names another model, breaking the IDevID/IAK pairing rule.
func MismatchedIAK(ca *identity.CA, ak *x509.Certificate) (*x509.Certificate, error) {
	dev := identity.Device{Serial: ak.Subject.SerialNumber, Model: ak.Subject.CommonName + "-evil", Organization: first(ak.Subject.Organization)}
	return ca.Issue(identity.IAK, ak.PublicKey, dev, time.Now(), 0)
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// Names are the attacks a whole router can boot with (riv-agent dev
// --attack, riv-router --attack).
var Names = []string{"none", "tampered-kernel", "debug-mode", "rollback", "unknown-binary"}

// UnknownBinary is what the unknown-binary attack runs after boot: a miner
// the vendor never shipped.
const UnknownBinary = "/tmp/.cache/xmrig"

// UnknownBinaryContent is its content.
var UnknownBinaryContent = []byte("a miner the vendor never shipped")

// BootImage returns the image a router with attack boots instead of
// genuine (unknown-binary boots genuine and runs UnknownBinary after).
func BootImage(name string, genuine *router.Image) (*router.Image, error) {
	switch name {
	case "none", "unknown-binary":
		return genuine, nil
	case "tampered-kernel":
		return TamperKernel(genuine), nil
	case "debug-mode":
		return DebugMode(genuine), nil
	case "rollback":
		return router.DefaultImage("1.0"), nil
	}
	return nil, fmt.Errorf("unknown attack %q (want one of %v)", name, Names)
}

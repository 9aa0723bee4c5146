// Package attack holds the attacks RIV must catch, as building blocks for
// the testbed: each changes what a simulated router boots or runs, or the
// identity it presents, the way a real attacker would.
package attack

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/tpm"
	"github.com/openriv/riv/testbed/router"
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

// Rollback returns the older image an attacker downgrades to: validly
// signed once, but superseded by a newer RIM.
func Rollback(older string) func(*router.Image) *router.Image {
	return func(*router.Image) *router.Image { return router.DefaultImage(older) }
}

// RuntimeUnsignedBinary runs a binary that no vendor RIM lists after boot:
// the NOS measures it into PCR 10 and appends it to the netequip_boot log.
func RuntimeUnsignedBinary(ctx context.Context, tp *tpm.TPM, b *router.Boot, path string, content []byte) error {
	banks := append([]alg.ID{alg.SHA1}, b.Banks...)
	e := eventlog.IMAEntryFor(router.NetequipPCR, alg.SHA256, alg.SHA256.Sum(content), path, nil, uniq(banks))
	ds := map[alg.ID][]byte{}
	for _, bank := range b.Banks {
		ds[bank] = e.Digest(bank)
	}
	if err := tp.Extend(ctx, router.NetequipPCR, ds); err != nil {
		return fmt.Errorf("runtime binary: %w", err)
	}
	e.Seq = len(b.Netequip.Events)
	b.Netequip.Events = append(b.Netequip.Events, e)
	raw, err := eventlog.WriteIMA(b.Netequip.Events, alg.SHA1)
	if err != nil {
		return err
	}
	b.NetequipLog = raw
	return nil
}

func uniq(in []alg.ID) []alg.ID {
	seen := map[alg.ID]bool{}
	var out []alg.ID
	for _, a := range in {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
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

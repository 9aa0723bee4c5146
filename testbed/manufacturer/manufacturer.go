// Package manufacturer is the testbed's device manufacturer: a CA that
// issues IDevID and IAK certificates only after checking a device's
// enrollment evidence against its TPM's EK certificate (as swtpm_setup
// makes them) and activating a credential with that EK.
package manufacturer

import (
	"fmt"
	"os"
	"time"

	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/tpm"
)

// New returns a manufacturer (or, with local, an owner) authority with a
// fresh CA named name, trusting the TPM vendor certificates in the PEM
// files tpmCAs (roots and intermediates, as swtpm-localca writes them).
func New(name string, local bool, tpmCAs ...string) (*identity.Authority, error) {
	ca, err := identity.NewCA(name, time.Now(), 20*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	a := &identity.Authority{CA: ca, MakeCredential: tpm.MakeCredential, Local: local}
	for _, f := range tpmCAs {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("TPM CA: %w", err)
		}
		if _, err := a.AddTPMCAs(b); err != nil {
			return nil, fmt.Errorf("TPM CA %s: %w", f, err)
		}
	}
	return a, nil
}

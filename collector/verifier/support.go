package verifier

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"slices"
	"time"

	"github.com/openriv/riv/collector/evidence"
	"github.com/openriv/riv/pkg/alg"
)

// deviceSupport is what the verifier uses of a device's
// evidence.Support, and what it keeps of it between polls (kept). A
// device's IDevID and IAK, parsed, cost 8.4 KB of heap, two thirds of
// all the verifier kept of it (BenchmarkStatePerDevice), yet between
// polls only their keys and digests are read: the verdicts on them are
// cached by the digests of their DER (Verifier.verified). The parsed
// certificates serve only the poll that fetched them; a poll that finds
// a verdict no longer cached fetches them again to verify them
// (poll.identity, poll.certificates), never taking what was kept of a
// certificate for the certificate.
type deviceSupport struct {
	certs []deviceCert
	// The rest as in evidence.Support.
	TPMs         []evidence.TPM
	Banks        []alg.ID
	Inventory    []evidence.Component
	InventoryErr error
	LogTypes     []string
}

// deviceCert is one certificate the device lists.
type deviceCert struct {
	Name, Type, TPM string // as in evidence.Certificate
	pub             crypto.PublicKey
	raw             [32]byte // SHA-256 of the DER: the key of the verdicts cached on it
	spki            [32]byte // SHA-256 of the SubjectPublicKeyInfo: the key, as snapshots name it
	keyUsage        x509.KeyUsage
	notBefore       time.Time
	// rawKey is the SubjectPublicKeyInfo, on a device with several TPMs
	// only: its line cards' kept state and snapshots name each card's
	// attestation key by it (rememberCards).
	rawKey string
	// x509 is the certificate itself, in the poll that fetched it only
	// (nil in a kept support): what a verdict not cached is reached on.
	x509 *x509.Certificate
}

// newSupport is what the verifier uses of s. A listed certificate
// without its certificate (no transport makes one) is left out.
func newSupport(s *evidence.Support) *deviceSupport {
	out := &deviceSupport{TPMs: s.TPMs, Banks: s.Banks, Inventory: s.Inventory, InventoryErr: s.InventoryErr, LogTypes: s.LogTypes}
	for _, c := range s.Certificates {
		x := c.Cert
		if x == nil {
			continue
		}
		dc := deviceCert{Name: c.Name, Type: c.Type, TPM: c.TPM, pub: x.PublicKey,
			raw: sha256.Sum256(x.Raw), spki: sha256.Sum256(x.RawSubjectPublicKeyInfo),
			keyUsage: x.KeyUsage, notBefore: x.NotBefore, x509: x}
		if len(s.TPMs) > 1 {
			dc.rawKey = string(x.RawSubjectPublicKeyInfo)
		}
		out.certs = append(out.certs, dc)
	}
	return out
}

// kept is s without the parsed certificates, to keep between polls.
func (s *deviceSupport) kept() *deviceSupport {
	k := *s
	k.certs = slices.Clone(s.certs)
	for i := range k.certs {
		k.certs[i].x509 = nil
	}
	return &k
}

// find returns the certificate of s with the DER digest of c, or nil.
func (s *deviceSupport) find(c *deviceCert) *deviceCert {
	for i := range s.certs {
		if s.certs[i].raw == c.raw {
			return &s.certs[i]
		}
	}
	return nil
}

// Package evidence is what a verifier gets from a device, whatever the
// transport (NETCONF, RESTCONF, SNMP): the device's support structures,
// quotes, logs and RIMs, and the Session interface the clients implement
// and the verifier appraises through. Everything in it is untrusted until
// the verifier binds it to a quote or verifies it against its anchors.
package evidence

import (
	"context"
	"crypto/x509"
	"errors"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
)

// Scope names one TPM of a device with several (RFC 9684 mtpm): the
// certificate a challenge asks a quote by, and the TPM whose logs are
// retrieved.
type Scope struct {
	CertificateName, TPM string
}

// Certificate is a certificate the agent lists in rats-support-structures,
// resolved from ietf-keystore, with its name and RFC 9684 type ("" for a
// device-identity certificate, which has no type of its own).
type Certificate struct {
	Name string
	Type string
	Cert *x509.Certificate
	// TPM is the name of the TPM listing it.
	TPM string
}

// TPM is one TPM the device lists, on its compute node (mtpm).
type TPM struct {
	Name, ComputeNode string
}

// Support is what a device says it supports: its certificates, the PCR
// banks its TPM allocates (attester-supported-algos), and the event logs
// it keeps (the features of ietf-tpm-remote-attestation in its YANG
// library). All of it is untrusted until the quote binds it.
type Support struct {
	Certificates []Certificate
	// TPMs are the device's TPMs in the order it lists them.
	TPMs  []TPM
	Banks []alg.ID
	// Inventory lists the device's software components and the digests
	// of the signed RIMs it carries for them (riv-software-inventory),
	// without their content; nil when it serves no inventory.
	Inventory []Component
	// InventoryErr is why a device that implements the inventory did not
	// give it (an rpc-error); the appraisal goes on without it.
	InventoryErr error
	// LogTypes are "bios", "ima" and "netequip_boot" as the device
	// announces them; nil when it serves no YANG library (the verifier
	// then asks for bios and netequip_boot).
	LogTypes []string
}

// Component is one installed software component: its CoSWID tag-id and
// the RIMs the device carries for it.
type Component struct {
	TagID string
	RIMs  []RIMRef
}

// RIMRef names one RIM the device carries, by the SHA-256 of its bytes
// (hex) as the device reports it: untrusted until the bytes are fetched
// and hashed.
type RIMRef struct {
	Digest, MediaType, FileName string
	Size                        uint64 // as the device lists it
}

// RIMFile is a RIM fetched from the device.
type RIMFile struct {
	TagID string
	RIMRef
	Content []byte
}

// Quote is one tpm20-attestation-response.
type Quote struct {
	CertificateName string
	Attest, Sig     []byte
	UpTime          uint32
	Unsigned        pcr.Values
}

// LogRequest asks for one log, the entries after After (nil: all).
type LogRequest struct {
	Type  string // "bios", "netequip_boot", "ima"
	After *uint64
}

// LogResult is one requested log, or why it could not be had.
type LogResult struct {
	Log    *eventlog.Log
	UpTime uint32
	Err    error
}

// Session is what the verifier needs from a transport.
type Session interface {
	// Support is the device's certificates, TPMs, PCR banks, log types
	// and inventory.
	Support(ctx context.Context) (*Support, error)
	// Logs retrieves one log, the entries after after (nil: all).
	Logs(ctx context.Context, logType string, after *uint64) (*eventlog.Log, uint32, error)
	// Collect is the challenge, then Logs for each request, pipelined
	// where the transport can.
	Collect(ctx context.Context, nonce []byte, sel []pcr.Selection, logs []LogRequest) ([]Quote, []LogResult, error)
}

// Scoper is a session that can narrow its challenges and log retrievals
// to one TPM of a device with several (RFC 9684 mtpm).
type Scoper interface {
	Scoped(Scope) Session
}

// RIMSource is a session that can fetch the RIMs a device carries
// (riv-software-inventory) by the tag-ids of their components.
type RIMSource interface {
	RIMs(ctx context.Context, tagIDs []string) ([]RIMFile, error)
}

// Errors a transport maps its protocol's onto (errors.Is): the device
// refused the request (an rpc-error, an HTTP error status, an SNMP error
// status), and, among those, refused it for now because it is busy
// (resource-denied: a TPM quote queue or a client's rate).
var (
	ErrRefused = errors.New("the device refused the request")
	ErrBusy    = errors.New("the device is busy")
)

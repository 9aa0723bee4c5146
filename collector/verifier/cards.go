package verifier

import (
	"context"
	"fmt"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/client/netconf"
)

// Line cards (RFC 9684 mtpm): a device with several TPMs, each its own
// compute node. The TPM holding the transport identity is appraised as
// any device's; every other TPM is a line card, appraised the same way
// against its own attestation key, quote, logs and kept state, so that
// a tampered card is contraindicated with reasons naming it while the
// others keep their verdicts.

// scoper is a session that can narrow its challenges and log
// retrievals to one TPM of the device.
type scoper interface {
	Scoped(netconf.Scope) *netconf.Client
}

var _ scoper = (*netconf.Client)(nil)

// scope narrows the poll's session to one TPM; false when the session
// cannot.
func (p *poll) scope(sc netconf.Scope) bool {
	s, ok := p.s.(scoper)
	if !ok {
		return false
	}
	p.s = s.Scoped(sc)
	return true
}

// lineCards are the polls of the device's other TPMs, each with the
// attestation key of the identity's kind (IAK, or LAK for an owner
// identity) it lists. A TPM that lists none is a claim on the device.
func (p *poll) lineCards() []*poll {
	if len(p.sup.TPMs) < 2 {
		return nil
	}
	var out []*poll
	for _, t := range p.sup.TPMs {
		if t.Name == p.tpm {
			continue
		}
		c := &poll{v: p.v, r: &Result{Device: p.device, Serial: p.r.Serial, Time: time.Now()}, device: p.device + "/" + t.Name, s: p.s,
			sup: p.sup, model: p.model, rims: p.rims, tpm: t.Name, idCert: p.idCert, roots: p.roots, local: p.local, akType: p.akType}
		for _, cert := range p.sup.Certificates {
			if cert.TPM == t.Name && cert.Type == p.akType {
				c.ak, c.akRef = cert.Cert, cert.Name
				break
			}
		}
		out = append(out, c)
	}
	return out
}

// appraiseCard appraises one line card: its attestation key must chain
// to the same anchors as the device's identity and name the same device
// (the chassis' serial number), then its TPM is appraised as the
// device's is.
func (c *poll) appraiseCard(ctx context.Context) error {
	r, tv := c.r, &c.r.Vector
	if c.ak == nil {
		r.claim(&tv.InstanceIdentity, ear.UnrecognizedInstanceClaim, fmt.Sprintf("instance-identity: the TPM lists no %s", c.akType))
		return nil
	}
	if c.idCert == nil {
		r.claim(&tv.InstanceIdentity, ear.UntrustworthyInstanceClaim, "instance-identity: the device's identity is unknown, so no card can be bound to it")
		return nil
	}
	if !c.claimPair(c.v.verifyPair(c.idCert, c.ak, c.roots, c.local)) {
		return nil
	}
	if !c.scope(netconf.Scope{CertificateName: c.akRef, TPM: c.tpm}) {
		r.claim(&tv.InstanceIdentity, ear.VerifierMalfunctionClaim, "instance-identity: this transport cannot address the TPM")
		return nil
	}
	return c.appraiseTPM(ctx)
}

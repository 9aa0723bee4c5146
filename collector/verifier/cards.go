package verifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/evidence"
)

// Line cards (RFC 9684 mtpm): a device with several TPMs, each its own
// compute node. The TPM holding the transport identity is appraised as
// any device's; every other TPM is a line card, appraised the same way
// against its own attestation key, quote, logs and kept state, so that
// a tampered card is contraindicated with reasons naming it while the
// others keep their verdicts.

// scope narrows the poll's session to one TPM; false when the session
// cannot.
func (p *poll) scope(sc evidence.Scope) bool {
	s, ok := p.s.(evidence.Scoper)
	if !ok {
		return false
	}
	p.s = s.Scoped(sc)
	return true
}

// maxTPMs bounds the TPMs a device may list: each is a challenge.
const maxTPMs = 64

// lineCards are the polls of the device's other TPMs, each with the
// attestation key of the identity's kind (IAK, or LAK for an owner
// identity) it lists. What the device says of its TPMs is checked first,
// and a TPM that fails is left out with a claim on the device: a name
// that is empty, taken twice or the aggregate's, more TPMs than
// maxTPMs, and above all an attestation key that two TPMs present — one
// TPM's quotes would then stand for the other's.
func (p *poll) lineCards() []*poll {
	if len(p.sup.TPMs) < 2 {
		return nil
	}
	bad := func(reason string) { p.dev.claim(&p.dev.Vector.InstanceIdentity, ear.UnexpectedEvidenceClaim, reason) }
	names := map[string]int{}
	for _, t := range p.sup.TPMs {
		names[t.Name]++
	}
	if len(p.sup.TPMs) > maxTPMs {
		bad(fmt.Sprintf("instance-identity: the device lists %d TPMs, more than %d", len(p.sup.TPMs), maxTPMs))
	}
	// Who presents which attestation key.
	keyOf := map[string]string{} // TPM name -> its AK's key
	holders := map[string][]string{}
	for _, cert := range p.sup.certs {
		if cert.Type != p.akType {
			continue
		}
		k := cert.rawKey
		if _, seen := keyOf[cert.TPM]; seen {
			continue
		}
		keyOf[cert.TPM] = k
		holders[k] = append(holders[k], cert.TPM)
	}
	if p.tpm == deviceSubmod || names[p.tpm] > 1 {
		bad(fmt.Sprintf("instance-identity: the identity's TPM is named %q, which is reserved or not unique", p.tpm))
	}
	var out []*poll
	for i, t := range p.sup.TPMs {
		switch {
		case i >= maxTPMs:
			continue
		case t.Name == p.tpm:
			continue
		case t.Name == "" || t.Name == deviceSubmod || names[t.Name] > 1:
			bad(fmt.Sprintf("instance-identity: a TPM is named %q, which is empty, reserved or not unique", clip(t.Name)))
			continue
		}
		if h := holders[keyOf[t.Name]]; keyOf[t.Name] != "" && len(h) > 1 {
			bad(fmt.Sprintf("instance-identity: the TPMs %q present the same attestation key: one TPM's quotes would stand for another's", h))
			continue
		}
		c := &poll{v: p.v, r: &Result{Device: p.device, Serial: p.r.Serial, Time: time.Now()}, s: p.s, dev: &Result{},
			sup: p.sup, model: p.model, rims: p.rims, tpm: t.Name, idCert: p.idCert, roots: p.roots, local: p.local, akType: p.akType}
		for j := range p.sup.certs {
			if cert := &p.sup.certs[j]; cert.TPM == t.Name && cert.Type == p.akType {
				c.ak, c.akRef = cert, cert.Name
				break
			}
		}
		// The card's state goes with its key: a card replaced powered
		// off (another TPM, its own counters) starts afresh.
		c.device = cardKey(p.device, t.Name, keyOf[t.Name])
		out = append(out, c)
	}
	return out
}

// cardKey is where a line card's state is kept: beside the device's,
// under a key no device name can be (names do not hold NUL), for the card
// and its attestation key.
func cardKey(device, tpm, key string) string {
	h := sha256.Sum256([]byte(key))
	return device + "\x00" + tpm + "\x00" + hex.EncodeToString(h[:8])
}

// rememberCards compares the device's line cards with those of the last
// appraisal since its last reboot: a card that is gone, or whose
// attestation key changed, is a claim on the device (a card swapped for
// another while running, or a lie about what is in the chassis). A
// reboot starts the record afresh: cards are replaced powered off.
func (p *poll) rememberCards(cards []*poll) {
	now := map[string]string{}
	for _, c := range cards {
		if c.ak != nil {
			now[c.tpm] = c.ak.rawKey
		}
	}
	p.v.mu.Lock()
	defer p.v.mu.Unlock()
	st := p.v.state[p.device]
	if st == nil {
		return
	}
	for name, key := range st.cards {
		switch k, ok := now[name]; {
		case !ok:
			p.dev.claim(&p.dev.Vector.Hardware, ear.UnsafeHardwareClaim, fmt.Sprintf("hardware: the line card %q of the last appraisal is gone, and the device has not rebooted", name))
		case k != key:
			p.dev.claim(&p.dev.Vector.InstanceIdentity, ear.UntrustworthyInstanceClaim, fmt.Sprintf("instance-identity: the attestation key of the line card %q changed since the last appraisal, and the device has not rebooted", name))
		}
	}
	// Until the next reboot the first key of each card is the one it
	// must keep, and a card that went stays missed.
	if st.cards == nil && len(now) > 0 {
		st.cards = map[string]string{}
	}
	for name, key := range now {
		if _, ok := st.cards[name]; !ok {
			st.cards[name] = key
		}
	}
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
	ir, ok := c.v.verifyPair(c.idCert, c.ak, c.roots, c.local)
	if !ok {
		if err := c.certificates(ctx); err != nil {
			return err
		}
		ir, _ = c.v.verifyPair(c.idCert, c.ak, c.roots, c.local)
	}
	if !c.claimPair(ir) {
		return nil
	}
	if !c.scope(evidence.Scope{CertificateName: c.akRef, TPM: c.tpm}) {
		r.claim(&tv.InstanceIdentity, ear.VerifierMalfunctionClaim, "instance-identity: this transport cannot address the TPM")
		return nil
	}
	return c.appraiseTPM(ctx)
}

// certificates fetches the device's certificates again for a card whose
// pair has no verdict cached any more, in a poll that has only what was
// kept of them (the device's own pair had its verdict cached): the card
// is verified on the certificates with the DER digests of the kept
// identity and attestation key. A device that no longer lists them
// changed its certificates since they were kept: the card is not
// appraised, and the device's next poll fetches its certificates anew.
func (c *poll) certificates(ctx context.Context) error {
	es, err := c.s.Support(ctx)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	sup := newSupport(es)
	id, ak := sup.find(c.idCert), sup.find(c.ak)
	if id == nil || ak == nil {
		c.v.mu.Lock()
		if st := c.v.state[c.r.Device]; st != nil { // the device's, not the card's
			st.supTime = time.Time{}
		}
		c.v.mu.Unlock()
		return fmt.Errorf("certificates: the device no longer lists the certificates it was appraised by")
	}
	c.idCert, c.ak = id, ak
	return nil
}

// noModel stands for the model of a device whose certificates name none:
// only reference values that name no product apply to it.
const noModel = "\x00(no model)"

// rimModel is the model the RIM lookups of this poll are for.
func (p *poll) rimModel() string {
	if p.model == "" {
		return noModel
	}
	return p.model
}

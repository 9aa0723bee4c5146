package verifier

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/evidence"
	"github.com/openriv/riv/pkg/identity"
)

type cachedIdentity struct {
	res   *identity.Result
	until time.Time
}

// certRefresh is how long a device's certificate list is reused.
const certRefresh = time.Hour

// RFC 9684 certificate types of attestation keys.
const (
	typeIAK = "initial-attestation-certificate"
	typeLAK = "local-attestation-certificate"
)

// identity finds the device's identity certificate (the one whose key
// authenticated the transport) and the attestation key paired with it:
// the IAK for a manufacturer IDevID, the LAK for an owner LDevID. It sets
// p.ak when the pair is trustworthy enough to challenge; otherwise the
// claims say why.
func (p *poll) identity(ctx context.Context, peerKey crypto.PublicKey) error {
	v, r, tv := p.v, p.r, &p.r.Vector
	sup, err := v.support(ctx, p.device, p.s, peerKey)
	if err != nil {
		return fmt.Errorf("%s: certificates: %w", p.device, err)
	}
	p.sup = sup
	var idCert *x509.Certificate
	for _, c := range sup.Certificates {
		if c.Type != "" {
			continue
		}
		if peerKey != nil && samePub(c.Cert.PublicKey, peerKey) {
			idCert, p.tpm = c.Cert, c.TPM
			break
		}
		if peerKey == nil && idCert == nil && c.Cert.KeyUsage&x509.KeyUsageDigitalSignature != 0 {
			idCert, p.tpm = c.Cert, c.TPM
		}
	}
	// An owner-enrolled identity (LDevID) chains to the owner anchors;
	// its attestation key is then the LAK, appraised by the owner's rules.
	local := idCert != nil && v.Policy.OwnerAnchors != nil && v.verifiedChain([]*x509.Certificate{idCert}, v.Policy.OwnerAnchors, x509.ExtKeyUsageAny) == nil
	akType, roots := typeIAK, v.Policy.Anchors
	if local {
		akType, roots = typeLAK, v.Policy.OwnerAnchors
	}
	// The attestation key is the one in the identity's TPM: on a device
	// with line cards, the others are theirs (lineCards).
	var akCert *x509.Certificate
	for _, c := range sup.Certificates {
		if c.Type == akType && akCert == nil && (c.TPM == p.tpm || p.tpm == "") {
			akCert, p.akRef, p.tpm = c.Cert, c.Name, c.TPM
		}
	}
	p.idCert, p.roots, p.local, p.akType = idCert, roots, local, akType
	if akCert == nil {
		r.claim(&tv.InstanceIdentity, ear.UnrecognizedInstanceClaim, fmt.Sprintf("instance-identity: the device lists no %s", akType))
		return nil
	}
	if idCert == nil && peerKey != nil {
		r.claim(&tv.InstanceIdentity, ear.UntrustworthyInstanceClaim, "instance-identity: the transport was authenticated with a key that is in none of the device's identity certificates")
		return nil
	}
	ir := v.verifyPair(idCert, akCert, roots, local)
	r.Serial, p.model = ir.Serial, ir.Model
	if w := p.want; ir.OK && (w.Serial != "" && ir.Serial != w.Serial || w.Model != "" && ir.Model != w.Model) {
		// A genuine device, but not the one the inventory has at this
		// address: a swapped chassis, or traffic sent elsewhere.
		r.claim(&tv.InstanceIdentity, ear.UntrustworthyInstanceClaim, fmt.Sprintf("instance-identity: the device's identity names serial %q, model %q; the inventory expects serial %q, model %q (empty: any)", ir.Serial, ir.Model, w.Serial, w.Model))
		return nil
	}
	if p.claimPair(ir) {
		p.ak = akCert
	}
	return nil
}

// claimPair turns the verdict on an identity and attestation key pair
// into claims; true when the pair is trustworthy.
func (p *poll) claimPair(ir *identity.Result) bool {
	r, tv := p.r, &p.r.Vector
	if !ir.OK {
		for _, reason := range ir.Reasons {
			r.claim(&tv.InstanceIdentity, ear.UntrustworthyInstanceClaim, "instance-identity: "+reason)
		}
		return false
	}
	r.claim(&tv.InstanceIdentity, ear.TrustworthyInstanceClaim, "")
	r.claim(&tv.Hardware, ear.GenuineHardwareClaim, "")
	return true
}

// support returns the device's certificate list, banks and log types,
// from the cache while it is fresh and the transport key is still one of
// its identity certificates'.
func (v *Verifier) support(ctx context.Context, device string, s Session, peerKey crypto.PublicKey) (*evidence.Support, error) {
	v.mu.Lock()
	st := v.state[device]
	var sup *evidence.Support
	refresh := v.SupportRefresh
	if refresh == 0 {
		refresh = certRefresh
	}
	if st != nil && time.Since(st.supTime) < refresh {
		sup = st.sup
	}
	v.mu.Unlock()
	if sup != nil && peerKey != nil {
		for _, c := range sup.Certificates {
			if c.Type == "" && samePub(c.Cert.PublicKey, peerKey) {
				return sup, nil
			}
		}
	}
	sup, err := s.Support(ctx)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	if st := v.state[device]; st != nil && (st.sup == nil && st.keys == nil || st.sup != nil && sameCertificates(st.sup, sup) || st.keys != nil && showsKey(sup, st.keys)) {
		st.sup, st.supTime, st.keys = sup, time.Now(), nil
	} else {
		// Another device (none of its keys the same) behind the name:
		// nothing verified of the one before carries over — logs, PCR
		// values, clock.
		v.state[device] = &deviceState{sup: sup, supTime: time.Now()}
		// Its line cards' states go with it.
		for k := range v.state {
			if strings.HasPrefix(k, device+"\x00") {
				delete(v.state, k)
			}
		}
	}
	v.mu.Unlock()
	return sup, nil
}

// sameCertificates says whether two support answers show the same
// device: some key (IDevID, IAK, LDevID, LAK) in both. Certificates are
// reissued for the same TPM keys, and the owner enrols more; a device
// none of whose keys carry over is another TPM.
func sameCertificates(a, b *evidence.Support) bool {
	for _, ca := range a.Certificates {
		for _, cb := range b.Certificates {
			if ca.Cert != nil && cb.Cert != nil && samePub(ca.Cert.PublicKey, cb.Cert.PublicKey) {
				return true
			}
		}
	}
	return false
}

// showsKey says whether the device shows one of the identity keys of a
// restored state (the SHA-256 of their SubjectPublicKeyInfo).
func showsKey(sup *evidence.Support, keys [][32]byte) bool {
	for _, c := range sup.Certificates {
		if c.Cert != nil && slices.Contains(keys, sha256.Sum256(c.Cert.RawSubjectPublicKeyInfo)) {
			return true
		}
	}
	return false
}

// verifyPair checks the identity pair, from the cache when the same
// certificates were verified before and are still valid.
func (v *Verifier) verifyPair(id, ak *x509.Certificate, roots *x509.CertPool, local bool) *identity.Result {
	var k [64]byte
	if id != nil {
		h := sha256.Sum256(id.Raw)
		copy(k[:32], h[:])
	}
	h := sha256.Sum256(ak.Raw)
	copy(k[32:], h[:])
	if local {
		k[0] ^= 0xff // the same pair under the other rules is another entry
	}
	now := time.Now()
	v.mu.Lock()
	c, ok := v.verified[k]
	v.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.res
	}
	r := identity.VerifyPair(id, ak, identity.VerifyOptions{Roots: roots, Now: now, Local: local})
	until := ak.NotAfter
	if id != nil && id.NotAfter.Before(until) {
		until = id.NotAfter
	}
	v.mu.Lock()
	v.verified[k] = cachedIdentity{res: r, until: until}
	v.mu.Unlock()
	return r
}

// verifiedChain reports whether leaf (with intermediates) chains to roots
// for purpose, caching a success until the leaf expires.
func (v *Verifier) verifiedChain(certs []*x509.Certificate, roots *x509.CertPool, purpose x509.ExtKeyUsage) error {
	if roots == nil {
		return fmt.Errorf("no trust anchors")
	}
	var k [64]byte
	h := sha256.Sum256(certs[0].Raw)
	copy(k[:32], h[:])
	k[32] = byte(purpose) + 1
	if roots == v.Policy.OwnerAnchors {
		k[33] = 1
	}
	now := time.Now()
	v.mu.Lock()
	c, ok := v.verified[k]
	v.mu.Unlock()
	if ok && now.Before(c.until) && now.After(certs[0].NotBefore) {
		return nil
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{purpose}}); err != nil {
		return err
	}
	v.mu.Lock()
	v.verified[k] = cachedIdentity{until: certs[0].NotAfter}
	v.mu.Unlock()
	return nil
}

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
	sup, err := v.support(ctx, p.device, p.s, peerKey, false)
	if err != nil {
		return fmt.Errorf("%s: certificates: %w", p.device, err)
	}
	akCert, ir, ok := p.pick(sup, peerKey)
	if !ok {
		// The kept certificates have no verdict cached any more (it
		// expired, or the verifier forgot it): the device's certificates
		// themselves are verified, never what was kept of them.
		if sup, err = v.support(ctx, p.device, p.s, peerKey, true); err != nil {
			return fmt.Errorf("%s: certificates: %w", p.device, err)
		}
		if akCert, ir, ok = p.pick(sup, peerKey); !ok {
			return fmt.Errorf("%s: certificates: fetched, and still not verifiable", p.device)
		}
	}
	if akCert == nil {
		r.claim(&tv.InstanceIdentity, ear.UnrecognizedInstanceClaim, fmt.Sprintf("instance-identity: the device lists no %s", p.akType))
		return nil
	}
	if p.idCert == nil && peerKey != nil {
		r.claim(&tv.InstanceIdentity, ear.UntrustworthyInstanceClaim, "instance-identity: the transport was authenticated with a key that is in none of the device's identity certificates")
		return nil
	}
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

// pick finds the identity certificate and the attestation key in sup,
// setting the poll's fields, and the verdict on the pair (nil when there
// is no pair to verify). It makes no claims; false means a verdict is
// not cached and sup holds only what was kept of the certificates.
func (p *poll) pick(sup *deviceSupport, peerKey crypto.PublicKey) (*deviceCert, *identity.Result, bool) {
	v := p.v
	var idCert *deviceCert
	tpm := ""
	for i := range sup.certs {
		c := &sup.certs[i]
		if c.Type != "" {
			continue
		}
		if peerKey != nil && samePub(c.pub, peerKey) {
			idCert, tpm = c, c.TPM
			break
		}
		if peerKey == nil && idCert == nil && c.keyUsage&x509.KeyUsageDigitalSignature != 0 {
			idCert, tpm = c, c.TPM
		}
	}
	// An owner-enrolled identity (LDevID) chains to the owner anchors;
	// its attestation key is then the LAK, appraised by the owner's rules.
	local := false
	if idCert != nil && v.Policy.OwnerAnchors != nil {
		var known bool
		if local, known = v.ownerIssued(idCert); !known {
			return nil, nil, false
		}
	}
	akType, roots := typeIAK, v.Policy.Anchors
	if local {
		akType, roots = typeLAK, v.Policy.OwnerAnchors
	}
	// The attestation key is the one in the identity's TPM: on a device
	// with line cards, the others are theirs (lineCards).
	var akCert *deviceCert
	akRef := ""
	for i := range sup.certs {
		c := &sup.certs[i]
		if c.Type == akType && akCert == nil && (c.TPM == tpm || tpm == "") {
			akCert, akRef, tpm = c, c.Name, c.TPM
		}
	}
	p.sup, p.idCert, p.roots, p.local, p.akType, p.akRef, p.tpm = sup, idCert, roots, local, akType, akRef, tpm
	if akCert == nil || idCert == nil && peerKey != nil {
		return akCert, nil, true
	}
	ir, ok := v.verifyPair(idCert, akCert, roots, local)
	return akCert, ir, ok
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
// its identity certificates' (unless refetch). A support fetched has the
// parsed certificates; one from the cache has only what was kept of them.
func (v *Verifier) support(ctx context.Context, device string, s Session, peerKey crypto.PublicKey, refetch bool) (*deviceSupport, error) {
	v.mu.Lock()
	st := v.state[device]
	var sup *deviceSupport
	refresh := v.SupportRefresh
	if refresh == 0 {
		refresh = certRefresh
	}
	if st != nil && time.Since(st.supTime) < refresh && !refetch {
		sup = st.sup
	}
	v.mu.Unlock()
	if sup != nil && peerKey != nil {
		for i := range sup.certs {
			if c := &sup.certs[i]; c.Type == "" && samePub(c.pub, peerKey) {
				return sup, nil
			}
		}
	}
	es, err := s.Support(ctx)
	if err != nil {
		return nil, err
	}
	sup = newSupport(es)
	kept := sup.kept()
	v.mu.Lock()
	if st := v.state[device]; st != nil && (st.sup == nil && st.keys == nil || st.sup != nil && sameCertificates(st.sup, sup) || st.keys != nil && showsKey(sup, st.keys)) {
		st.sup, st.supTime, st.keys = kept, time.Now(), nil
	} else {
		// Another device (none of its keys the same) behind the name:
		// nothing verified of the one before carries over — logs, PCR
		// values, clock.
		v.state[device] = &deviceState{sup: kept, supTime: time.Now()}
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
func sameCertificates(a, b *deviceSupport) bool {
	for i := range a.certs {
		for j := range b.certs {
			if samePub(a.certs[i].pub, b.certs[j].pub) {
				return true
			}
		}
	}
	return false
}

// showsKey says whether the device shows one of the identity keys of a
// restored state (the SHA-256 of their SubjectPublicKeyInfo).
func showsKey(sup *deviceSupport, keys [][32]byte) bool {
	for i := range sup.certs {
		if slices.Contains(keys, sup.certs[i].spki) {
			return true
		}
	}
	return false
}

// verifyPair checks the identity pair, from the cache when the same
// certificates were verified before and are still valid. false means
// the verdict is not cached and id or ak is only what was kept of a
// certificate: there is nothing to verify it on.
func (v *Verifier) verifyPair(id, ak *deviceCert, roots *x509.CertPool, local bool) (*identity.Result, bool) {
	var k [64]byte
	if id != nil {
		copy(k[:32], id.raw[:])
	}
	copy(k[32:], ak.raw[:])
	if local {
		k[0] ^= 0xff // the same pair under the other rules is another entry
	}
	now := time.Now()
	v.mu.Lock()
	c, ok := v.verified[k]
	v.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.res, true
	}
	if ak.x509 == nil || id != nil && id.x509 == nil {
		return nil, false
	}
	var idx *x509.Certificate
	if id != nil {
		idx = id.x509
	}
	r := identity.VerifyPair(idx, ak.x509, identity.VerifyOptions{Roots: roots, Now: now, Local: local})
	until := ak.x509.NotAfter
	if idx != nil && idx.NotAfter.Before(until) {
		until = idx.NotAfter
	}
	if !r.OK {
		// A failure may not last (a certificate not valid yet, by a
		// clock that was behind): judged again after a while.
		until = minTime(until, now.Add(failedPairFor))
	}
	v.mu.Lock()
	v.verified[k] = cachedIdentity{res: r, until: until}
	v.mu.Unlock()
	return r, true
}

// failedPairFor is how long a pair that failed verification is not
// verified again.
const failedPairFor = 10 * time.Minute

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// notChained marks a cached verdict that a certificate does not chain to
// the anchors (verifiedChain caches a success with no result).
var notChained = &identity.Result{}

// ownerIssued reports whether the identity certificate chains to the
// owner anchors (an LDevID). Both answers are cached: every poll of a
// manufacturer identity asks, and a kept certificate can only be
// answered from the cache. A failure is cached only once the certificate
// is valid, as a success is, until it expires: a certificate not yet
// valid may chain later. known is false when the answer is not cached
// and c is only what was kept of the certificate.
func (v *Verifier) ownerIssued(c *deviceCert) (local, known bool) {
	k := chainKey(c.raw, x509.ExtKeyUsageAny, true)
	now := time.Now()
	v.mu.Lock()
	e, ok := v.verified[k]
	v.mu.Unlock()
	if ok && now.Before(e.until) && now.After(c.notBefore) {
		return e.res == nil, true
	}
	if c.x509 == nil {
		return false, false
	}
	if err := v.verifiedChain([]*x509.Certificate{c.x509}, v.Policy.OwnerAnchors, x509.ExtKeyUsageAny); err == nil {
		return true, true
	}
	if now.After(c.notBefore) {
		v.mu.Lock()
		v.verified[k] = cachedIdentity{res: notChained, until: c.x509.NotAfter}
		v.mu.Unlock()
	}
	return false, true
}

// chainKey is the cache key of the verdict that the certificate with DER
// digest raw chains for purpose to the manufacturer or the owner anchors.
func chainKey(raw [32]byte, purpose x509.ExtKeyUsage, owner bool) [64]byte {
	var k [64]byte
	copy(k[:32], raw[:])
	k[32] = byte(purpose) + 1
	if owner {
		k[33] = 1
	}
	return k
}

// verifiedChain reports whether leaf (with intermediates) chains to roots
// for purpose, caching a success until the leaf expires.
func (v *Verifier) verifiedChain(certs []*x509.Certificate, roots *x509.CertPool, purpose x509.ExtKeyUsage) error {
	if roots == nil {
		return fmt.Errorf("no trust anchors")
	}
	k := chainKey(sha256.Sum256(certs[0].Raw), purpose, roots == v.Policy.OwnerAnchors)
	now := time.Now()
	v.mu.Lock()
	c, ok := v.verified[k]
	v.mu.Unlock()
	if ok && c.res == nil && now.Before(c.until) && now.After(certs[0].NotBefore) {
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

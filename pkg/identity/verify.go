package identity

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/openriv/riv/pkg/quote"
)

// Result is the outcome of an identity check. OK is false when any reason
// was found; each reason is one sentence for the instance-identity claim.
type Result struct {
	OK      bool
	Reasons []string
	Serial  string // the device serial both certificates name
	Model   string // the device model (subject common name)
}

func (r *Result) fail(format string, a ...any) {
	r.OK = false
	r.Reasons = append(r.Reasons, fmt.Sprintf(format, a...))
}

// Evidence is the TPM2_Certify by which the attestation key vouches that
// the identity key lives in the same TPM.
type Evidence struct {
	CertifyInfo []byte // TPMS_ATTEST (type certify), as the TPM produced it
	Signature   []byte // TPMT_SIGNATURE by the attestation key
	AKPublic    []byte // TPMT_PUBLIC of the attestation key
	IDPublic    []byte // TPMT_PUBLIC of the identity key
	Qualifying  []byte // the qualifying data (nonce) the verifier supplied
}

// VerifyOptions configures VerifyPair.
type VerifyOptions struct {
	Roots         *x509.CertPool // manufacturer (IDevID/IAK) or owner (LDevID/LAK) anchors
	Intermediates *x509.CertPool
	Now           time.Time
	// Local selects the LDevID/LAK pair rules; default IDevID/IAK.
	Local bool
	// Serial, when set, is the serial the device must have.
	Serial string
	// Evidence, when set, is checked too; without it the binding of the two
	// keys rests on the CA alone.
	Evidence *Evidence
}

// VerifyPair checks an identity certificate and an attestation-key
// certificate as a pair: each chains to the anchors and follows its
// profile, both name the same device (subject, hardwareModuleName) and
// issuer, and, given evidence, the attestation key certified the identity
// key and both keys are TPM-resident as the profile requires.
func VerifyPair(id, ak *x509.Certificate, opts VerifyOptions) *Result {
	r := &Result{OK: true}
	idRole, akRole := IDevID, IAK
	if opts.Local {
		idRole, akRole = LDevID, LAK
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	var idSAN, akSAN *SAN
	for _, c := range []struct {
		role Role
		cert *x509.Certificate
		san  **SAN
	}{{idRole, id, &idSAN}, {akRole, ak, &akSAN}} {
		if c.cert == nil {
			r.fail("%v certificate missing", c.role)
			continue
		}
		_, err := c.cert.Verify(x509.VerifyOptions{Roots: opts.Roots, Intermediates: opts.Intermediates, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			r.fail("%v certificate does not chain to the trust anchors: %v", c.role, err)
		}
		s, problems := checkProfile(c.role, c.cert)
		*c.san = s
		for _, p := range problems {
			r.fail("%v certificate: %s", c.role, p)
		}
	}
	if !r.OK && (id == nil || ak == nil) {
		return r
	}
	// The pairing rule: same subject, same device, same issuer.
	if !bytes.Equal(id.RawSubject, ak.RawSubject) {
		r.fail("%v subject %q differs from %v subject %q", akRole, ak.Subject, idRole, id.Subject)
	}
	if !bytes.Equal(id.RawIssuer, ak.RawIssuer) {
		r.fail("%v issuer %q differs from %v issuer %q", akRole, ak.Issuer, idRole, id.Issuer)
	}
	if idSAN != nil && akSAN != nil && idSAN.HardwareModule != nil && akSAN.HardwareModule != nil &&
		!bytes.Equal(idSAN.HardwareModule.HwSerialNum, akSAN.HardwareModule.HwSerialNum) {
		r.fail("%v hardwareModuleName serial %q differs from %v serial %q", akRole, akSAN.HardwareModule.HwSerialNum, idRole, idSAN.HardwareModule.HwSerialNum)
	}
	r.Serial, r.Model = id.Subject.SerialNumber, id.Subject.CommonName
	if opts.Serial != "" && r.Serial != opts.Serial {
		r.fail("certificates name device %q, expected %q", r.Serial, opts.Serial)
	}
	if opts.Evidence != nil {
		checkEvidence(r, id, ak, opts.Evidence, idRole, akRole)
	}
	return r
}

// checkProfile applies the TCG certificate profile of role to c and
// returns its device names and the problems found.
func checkProfile(role Role, c *x509.Certificate) (*SAN, []string) {
	var p []string
	if c.Subject.SerialNumber == "" {
		p = append(p, "subject has no serialNumber")
	}
	if c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		p = append(p, "keyUsage lacks digitalSignature")
	}
	san, err := ParseSAN(c)
	switch {
	case err != nil:
		p = append(p, err.Error())
	case san.HardwareModule == nil:
		p = append(p, "subjectAltName has no hardwareModuleName")
	case !san.HardwareModule.HwType.Equal(OIDTPM20HwType):
		p = append(p, fmt.Sprintf("hardwareModuleName hwType %v, want %v", san.HardwareModule.HwType, OIDTPM20HwType))
	case string(san.HardwareModule.HwSerialNum) != c.Subject.SerialNumber:
		p = append(p, fmt.Sprintf("hardwareModuleName serial %q differs from subject serialNumber %q", san.HardwareModule.HwSerialNum, c.Subject.SerialNumber))
	}
	if san != nil && san.Permanent != nil && len(san.Permanent.Assigner) > 0 && !san.Permanent.Assigner.Equal(OIDEKPermanentIDAssigner) {
		p = append(p, fmt.Sprintf("permanentIdentifier assigner %v, want %v", san.Permanent.Assigner, OIDEKPermanentIDAssigner))
	}
	hasPolicy := func(oids ...[]int) bool {
		for _, have := range c.PolicyIdentifiers {
			for _, want := range oids {
				if have.Equal(want) {
					return true
				}
			}
		}
		return false
	}
	if role.IsAttestation() {
		if !hasPolicy(OIDPolicyTPMRestricted) {
			p = append(p, fmt.Sprintf("certificate policies lack %v (verified TPM restricted)", OIDPolicyTPMRestricted))
		}
		// The EKU is accepted but not required; if EKUs are listed, the
		// AIK purpose must be one of them.
		if len(c.UnknownExtKeyUsage) > 0 || len(c.ExtKeyUsage) > 0 {
			found := false
			for _, e := range c.UnknownExtKeyUsage {
				found = found || e.Equal(OIDKPAIKCertificate)
			}
			for _, e := range c.ExtKeyUsage {
				found = found || e == x509.ExtKeyUsageAny
			}
			if !found {
				p = append(p, fmt.Sprintf("extendedKeyUsage lacks %v", OIDKPAIKCertificate))
			}
		}
	} else if !hasPolicy(OIDPolicyTPMResidency, OIDPolicyTPMFixed) {
		p = append(p, fmt.Sprintf("certificate policies lack %v or %v", OIDPolicyTPMResidency, OIDPolicyTPMFixed))
	}
	return san, p
}

func samePublic(a, b crypto.PublicKey) bool {
	type eq interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(eq)
	return ok && e.Equal(b)
}

// checkEvidence verifies TPM2_Certify: signed by the attestation key, over
// the identity key's Name, with the verifier's qualifying data; both keys
// fixedTPM, fixedParent and sensitiveDataOrigin; the attestation key
// restricted and signing.
func checkEvidence(r *Result, id, ak *x509.Certificate, ev *Evidence, idRole, akRole Role) {
	akPub, err := quote.ParsePublic(ev.AKPublic)
	if err != nil {
		r.fail("%v TPMT_PUBLIC: %v", akRole, err)
		return
	}
	idPub, err := quote.ParsePublic(ev.IDPublic)
	if err != nil {
		r.fail("%v TPMT_PUBLIC: %v", idRole, err)
		return
	}
	if !samePublic(akPub.Key, ak.PublicKey) {
		r.fail("%v TPMT_PUBLIC is not the key of the %v certificate", akRole, akRole)
	}
	if !samePublic(idPub.Key, id.PublicKey) {
		r.fail("%v TPMT_PUBLIC is not the key of the %v certificate", idRole, idRole)
	}
	const resident = quote.AttrFixedTPM | quote.AttrFixedParent | quote.AttrSensitiveDataOrigin
	if !akPub.Has(resident) {
		r.fail("%v is not fixedTPM, fixedParent and sensitiveDataOrigin (attributes 0x%08x)", akRole, akPub.Attributes)
	}
	if !idPub.Has(resident) {
		r.fail("%v is not fixedTPM, fixedParent and sensitiveDataOrigin (attributes 0x%08x)", idRole, idPub.Attributes)
	}
	if !akPub.Has(quote.AttrRestricted | quote.AttrSign) {
		r.fail("%v is not a restricted signing key (attributes 0x%08x)", akRole, akPub.Attributes)
	}
	if !idPub.Has(quote.AttrSign) {
		r.fail("%v is not a signing key (attributes 0x%08x)", idRole, idPub.Attributes)
	}
	a, err := quote.ParseAttest(ev.CertifyInfo)
	if err != nil {
		r.fail("TPM2_Certify evidence: %v", err)
		return
	}
	if a.Certify == nil {
		r.fail("TPM2_Certify evidence has attestation type 0x%04x, not certify", a.Type)
		return
	}
	sig, err := quote.ParseSignature(ev.Signature)
	if err != nil {
		r.fail("TPM2_Certify signature: %v", err)
		return
	}
	if err := quote.VerifySignature(ak.PublicKey, a.Raw, sig); err != nil {
		r.fail("TPM2_Certify is not signed by the %v: %v", akRole, err)
	}
	if !bytes.Equal(a.Certify.Name, idPub.Name()) {
		r.fail("TPM2_Certify certifies name %x, not the %v (%x)", a.Certify.Name, idRole, idPub.Name())
	}
	if !bytes.Equal(a.ExtraData, ev.Qualifying) {
		r.fail("TPM2_Certify qualifying data %x, want %x", a.ExtraData, ev.Qualifying)
	}
}

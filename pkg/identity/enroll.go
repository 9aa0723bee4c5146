package identity

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/openriv/riv/pkg/quote"
)

// EnrollRequest is what a device sends its manufacturer (IDevID/IAK) or
// owner (LDevID/LAK) CA: the EK certificate and key, the two new keys, a
// CSR signed by the identity key, and TPM2_Certify evidence that the
// attestation key vouches for the identity key.
type EnrollRequest struct {
	Serial string `json:"serial"`
	Model  string `json:"model"`
	// EKCert is the TPM manufacturer's EK certificate (DER).
	EKCert []byte `json:"ek_cert"`
	// EKPublic is the EK's TPMT_PUBLIC, needed for MakeCredential.
	EKPublic []byte `json:"ek_public"`
	// AKPublic and IDPublic are the TPMT_PUBLICs of the new keys.
	AKPublic []byte `json:"ak_public"`
	IDPublic []byte `json:"id_public"`
	// CSR is a PKCS#10 request signed by the identity key.
	CSR []byte `json:"csr"`
	// CertifyInfo/CertifySig: TPM2_Certify of the identity key by the
	// attestation key, qualified with the CA's nonce.
	CertifyInfo []byte `json:"certify_info"`
	CertifySig  []byte `json:"certify_sig"`
}

// Challenge is the CA's credential-activation challenge: only the TPM that
// holds both the EK and the attestation key can unwrap Secret.
type Challenge struct {
	Blob   []byte `json:"blob"`
	Secret []byte `json:"secret"`
}

// MakeCredentialFunc wraps a secret for an object name under an EK
// (pkg/tpm.MakeCredential); injected so this package needs no TPM code.
type MakeCredentialFunc func(ekPublic, name, secret []byte) (blob, encSecret []byte, err error)

// Enrollment is one CA-side enrollment in progress.
type Enrollment struct {
	req    *EnrollRequest
	ek     *x509.Certificate
	akPub  *quote.Public
	idPub  *quote.Public
	secret []byte
	role   Role // IDevID or LDevID
}

// ErrEnrollment wraps every reason a CA refuses an enrollment.
var ErrEnrollment = errors.New("enrollment refused")

func refuse(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrEnrollment, fmt.Sprintf(format, a...))
}

var oidSANExt = asn1.ObjectIdentifier{2, 5, 29, 17}

// VerifyEKCert checks an EK certificate chains to the TPM vendors' roots.
// EK certificates carry a critical subjectAltName of TPM directory
// attributes (TCG EK Credential Profile §3.2.9) that crypto/x509 does not
// process; that one extension is accepted, any other unhandled critical one
// is not.
func VerifyEKCert(ek *x509.Certificate, roots, intermediates *x509.CertPool, now time.Time) error {
	c := *ek
	var left []asn1.ObjectIdentifier
	for _, o := range c.UnhandledCriticalExtensions {
		if !o.Equal(oidSANExt) {
			left = append(left, o)
		}
	}
	c.UnhandledCriticalExtensions = left
	_, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// BeginEnrollment checks a request against the TPM vendor anchors and the
// nonce the CA gave the device, and returns the credential challenge.
// local selects the LDevID/LAK roles (owner enrollment).
func BeginEnrollment(req *EnrollRequest, nonce []byte, tpmRoots, tpmIntermediates *x509.CertPool, makeCred MakeCredentialFunc, local bool, now time.Time) (*Enrollment, *Challenge, error) {
	if req.Serial == "" {
		return nil, nil, refuse("no device serial")
	}
	ek, err := x509.ParseCertificate(req.EKCert)
	if err != nil {
		return nil, nil, refuse("EK certificate: %v", err)
	}
	if err := VerifyEKCert(ek, tpmRoots, tpmIntermediates, now); err != nil {
		return nil, nil, refuse("EK certificate does not chain to a TPM vendor root: %v", err)
	}
	ekPub, err := quote.ParsePublic(req.EKPublic)
	if err != nil {
		return nil, nil, refuse("EK public: %v", err)
	}
	if !samePublic(ekPub.Key, ek.PublicKey) {
		return nil, nil, refuse("EK public key is not the one the EK certificate names")
	}
	akPub, err := quote.ParsePublic(req.AKPublic)
	if err != nil {
		return nil, nil, refuse("attestation key public: %v", err)
	}
	idPub, err := quote.ParsePublic(req.IDPublic)
	if err != nil {
		return nil, nil, refuse("identity key public: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, nil, refuse("CSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, refuse("CSR signature: %v", err)
	}
	if !samePublic(idPub.Key, csr.PublicKey) {
		return nil, nil, refuse("CSR key is not the identity key")
	}
	// The same checks the verifier makes later, on the CA's own nonce.
	r := &Result{OK: true}
	fakeID := &x509.Certificate{PublicKey: idPub.Key}
	fakeAK := &x509.Certificate{PublicKey: akPub.Key}
	idRole, akRole := IDevID, IAK
	if local {
		idRole, akRole = LDevID, LAK
	}
	checkEvidence(r, fakeID, fakeAK, &Evidence{CertifyInfo: req.CertifyInfo, Signature: req.CertifySig, AKPublic: req.AKPublic, IDPublic: req.IDPublic, Qualifying: nonce}, idRole, akRole)
	if !r.OK {
		return nil, nil, refuse("%v", r.Reasons)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, nil, err
	}
	blob, enc, err := makeCred(req.EKPublic, akPub.Name(), secret)
	if err != nil {
		return nil, nil, refuse("make credential: %v", err)
	}
	return &Enrollment{req: req, ek: ek, akPub: akPub, idPub: idPub, secret: secret, role: idRole}, &Challenge{Blob: blob, Secret: enc}, nil
}

// Finish checks the activated secret and issues the identity and
// attestation-key certificates.
func (e *Enrollment) Finish(ca *CA, activated []byte, now time.Time) (id, ak *x509.Certificate, err error) {
	if subtle.ConstantTimeCompare(activated, e.secret) != 1 {
		return nil, nil, refuse("credential activation failed: the attestation key is not in the TPM of that EK")
	}
	dev := Device{Serial: e.req.Serial, Model: e.req.Model, Organization: first(ca.Cert.Subject.Organization), EKPublic: e.ek.PublicKey}
	akRole := IAK
	if e.role == LDevID {
		akRole = LAK
	}
	if id, err = ca.Issue(e.role, e.idPub.Key, dev, now, 0); err != nil {
		return nil, nil, err
	}
	if ak, err = ca.Issue(akRole, e.akPub.Key, dev, now, 0); err != nil {
		return nil, nil, err
	}
	return id, ak, nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// Authority runs enrollments for one CA: it hands out nonces, checks
// requests against the TPM vendor anchors and issues certificates once the
// credential is activated. Safe for one enrollment at a time per nonce.
type Authority struct {
	CA               *CA
	TPMRoots         *x509.CertPool
	TPMIntermediates *x509.CertPool
	MakeCredential   MakeCredentialFunc
	// Local makes this an owner CA issuing LDevID/LAK.
	Local bool
	Now   func() time.Time

	nonce []byte
	enr   *Enrollment
}

func (a *Authority) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Nonce returns a fresh 32-byte nonce for the next request.
func (a *Authority) Nonce() ([]byte, error) {
	a.nonce = make([]byte, 32)
	_, err := rand.Read(a.nonce)
	return a.nonce, err
}

// Begin checks req and returns the credential challenge.
func (a *Authority) Begin(req *EnrollRequest) (*Challenge, error) {
	if a.nonce == nil {
		return nil, refuse("no nonce was issued")
	}
	nonce := a.nonce
	a.nonce = nil // single use
	e, ch, err := BeginEnrollment(req, nonce, a.TPMRoots, a.TPMIntermediates, a.MakeCredential, a.Local, a.now())
	if err != nil {
		return nil, err
	}
	a.enr = e
	return ch, nil
}

// Finish issues the certificates when activated is the secret.
func (a *Authority) Finish(activated []byte) (id, ak *x509.Certificate, err error) {
	if a.enr == nil {
		return nil, nil, refuse("no enrollment in progress")
	}
	e := a.enr
	a.enr = nil
	return e.Finish(a.CA, activated, a.now())
}

// AddTPMCAs adds the PEM certificates in data to the TPM vendor anchors:
// self-signed ones as roots, the rest as intermediates.
func (a *Authority) AddTPMCAs(data []byte) (int, error) {
	if a.TPMRoots == nil {
		a.TPMRoots = x509.NewCertPool()
	}
	if a.TPMIntermediates == nil {
		a.TPMIntermediates = x509.NewCertPool()
	}
	n := 0
	for blk, rest := pem.Decode(data); blk != nil; blk, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return n, fmt.Errorf("TPM CA certificate %d: %w", n+1, err)
		}
		if bytes.Equal(c.RawIssuer, c.RawSubject) {
			a.TPMRoots.AddCert(c)
		} else {
			a.TPMIntermediates.AddCert(c)
		}
		n++
	}
	if n == 0 {
		return 0, errors.New("no PEM certificates")
	}
	return n, nil
}

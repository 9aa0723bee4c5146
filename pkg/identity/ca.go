package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"time"
)

// Device names a device for its certificates.
type Device struct {
	Serial       string // the device serial number (subject serialNumber and hwSerialNum)
	Model        string // becomes the subject CN
	Organization string // manufacturer or owner
	// EKPublic, when set, adds a permanentIdentifier holding the SHA-256 of
	// the EK's SubjectPublicKeyInfo (assigner 2.23.133.12.1).
	EKPublic crypto.PublicKey
}

// CA issues device-identity certificates: the manufacturer CA for
// IDevID/IAK, an owner CA for LDevID/LAK.
type CA struct {
	Cert   *x509.Certificate
	Signer crypto.Signer
}

// NewCA creates a self-signed ECDSA P-384 CA, for tests and the testbed.
func NewCA(name string, now time.Time, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{name}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: c, Signer: key}, nil
}

// randSerial returns a positive 64-bit+ serial (the profile asks for
// 64–160 bits, unique per CA).
func randSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n.Add(n, new(big.Int).Lsh(big.NewInt(1), 64))
}

// EKHash is the permanentIdentifier value for an EK: hex SHA-256 of its
// SubjectPublicKeyInfo.
func EKHash(ek crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(ek)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:]), nil
}

// Issue signs a certificate for pub in role for dev, valid from now for
// validity (zero means the profile's "no well-defined expiration",
// 9999-12-31).
func (ca *CA) Issue(role Role, pub crypto.PublicKey, dev Device, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	if dev.Serial == "" {
		return nil, fmt.Errorf("issue %v: device serial is required", role)
	}
	var perm *PermanentIdentifier
	if dev.EKPublic != nil {
		h, err := EKHash(dev.EKPublic)
		if err != nil {
			return nil, fmt.Errorf("issue %v: EK: %w", role, err)
		}
		perm = &PermanentIdentifier{IdentifierValue: h, Assigner: OIDEKPermanentIDAssigner}
	}
	san, err := marshalSAN(dev.Serial, perm)
	if err != nil {
		return nil, fmt.Errorf("issue %v: %w", role, err)
	}
	notAfter := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	if validity > 0 {
		notAfter = now.Add(validity)
	}
	tmpl := &x509.Certificate{
		SerialNumber:    randSerial(),
		Subject:         pkix.Name{CommonName: dev.Model, Organization: nonEmpty(dev.Organization), SerialNumber: dev.Serial},
		NotBefore:       now.Add(-time.Minute),
		NotAfter:        notAfter,
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{san},
	}
	switch role {
	case IDevID, LDevID:
		tmpl.Policies = policies(OIDPolicyTPMResidency, OIDPolicyTPMFixed)
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case IAK, LAK:
		tmpl.Policies = policies(OIDPolicyTPMRestricted)
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{OIDKPAIKCertificate}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Signer)
	if err != nil {
		return nil, fmt.Errorf("issue %v: %w", role, err)
	}
	return x509.ParseCertificate(der)
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// policies converts OIDs for x509.Certificate.Policies (since Go 1.24
// CreateCertificate writes Policies, not PolicyIdentifiers).
func policies(oids ...asn1.ObjectIdentifier) []x509.OID {
	var out []x509.OID
	for _, o := range oids {
		u := make([]uint64, len(o))
		for i, v := range o {
			u[i] = uint64(v)
		}
		x, err := x509.OIDFromInts(u)
		if err != nil {
			panic(err) // constant OIDs above
		}
		out = append(out, x)
	}
	return out
}

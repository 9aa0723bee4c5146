// Package provision creates a device's TPM-resident identity: the IDevID
// (TLS/SSH identity) and IAK (attestation key) from the manufacturer, or
// the LDevID and LAK from the owner, following the TCG "TPM 2.0 Keys for
// Device Identity and Attestation" enrollment: CSR, TPM2_Certify evidence,
// EK certificate, and credential activation.
package provision

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/tpm"
)

// Persistent handles RIV uses (owner range, TPM 2.0 Part 2 §7.4).
const (
	IAKHandle    uint32 = 0x81020000
	IDevIDHandle uint32 = 0x81020001
	LAKHandle    uint32 = 0x81020002
	LDevIDHandle uint32 = 0x81020003
)

// CA is the issuing side of an enrollment (identity.Authority in process,
// or a remote manufacturing/owner service).
type CA interface {
	Nonce() ([]byte, error)
	Begin(*identity.EnrollRequest) (*identity.Challenge, error)
	Finish(activated []byte) (id, ak *x509.Certificate, err error)
}

// Options for Provision.
type Options struct {
	Serial, Model string
	Alg           tpm.KeyAlg
	// Local provisions the owner's LDevID/LAK instead of IDevID/IAK.
	Local bool
	// Dir stores the certificates (idevid.pem, iak.pem or ldevid.pem,
	// lak.pem).
	Dir string
}

// Result of a provisioning.
type Result struct {
	ID, AK       *x509.Certificate
	IDKey, AKKey *tpm.Key
	// Created is false when the device was provisioned already and nothing
	// changed.
	Created bool
}

func (o Options) names() (idFile, akFile string, idH, akH uint32, idLabel, akLabel string) {
	if o.Local {
		return "ldevid.pem", "lak.pem", LDevIDHandle, LAKHandle, "LDevID", "LAK"
	}
	return "idevid.pem", "iak.pem", IDevIDHandle, IAKHandle, "IDevID", "IAK"
}

// Provision makes sure the TPM holds the identity and attestation keys at
// their persistent handles and that Dir holds certificates for them. It is
// idempotent: a provisioned device is left as it is.
func Provision(ctx context.Context, tp *tpm.TPM, ca CA, o Options) (*Result, error) {
	if o.Serial == "" || o.Dir == "" {
		return nil, errors.New("provision: serial and dir are required")
	}
	idFile, akFile, idH, akH, idLabel, akLabel := o.names()
	idSpec := tpm.KeySpec{Alg: o.Alg, Label: idLabel}
	akSpec := tpm.KeySpec{Alg: o.Alg, Restricted: true, Label: akLabel}
	idKey, err := persistent(ctx, tp, idH, idSpec)
	if err != nil {
		return nil, err
	}
	akKey, err := persistent(ctx, tp, akH, akSpec)
	if err != nil {
		return nil, err
	}
	res := &Result{IDKey: idKey, AKKey: akKey}
	if id, ak, err := loadPair(o.Dir, idFile, akFile); err == nil && samePub(id.PublicKey, idKey.Public.Key) && samePub(ak.PublicKey, akKey.Public.Key) {
		res.ID, res.AK = id, ak
		return res, nil
	}

	ek, err := tp.EK(ctx, false)
	if err != nil {
		return nil, err
	}
	defer tp.Flush(ctx, ek)
	ekCert, err := tp.NVRead(ctx, tpm.NVRSAEKCert)
	if err != nil {
		return nil, fmt.Errorf("provision: read EK certificate: %w", err)
	}
	signer, err := tp.Signer(idKey)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: o.Model, SerialNumber: o.Serial},
	}, signer)
	if err != nil {
		return nil, fmt.Errorf("provision: CSR: %w", err)
	}
	nonce, err := ca.Nonce()
	if err != nil {
		return nil, fmt.Errorf("provision: CA nonce: %w", err)
	}
	info, sig, err := tp.Certify(ctx, idKey, akKey, nonce)
	if err != nil {
		return nil, err
	}
	ch, err := ca.Begin(&identity.EnrollRequest{
		Serial: o.Serial, Model: o.Model, EKCert: ekCert, EKPublic: ek.Public.Raw,
		AKPublic: akKey.Public.Raw, IDPublic: idKey.Public.Raw, CSR: csr, CertifyInfo: info, CertifySig: sig,
	})
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	secret, err := tp.ActivateCredential(ctx, akKey, ek, ch.Blob, ch.Secret)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	id, ak, err := ca.Finish(secret)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		c    *x509.Certificate
	}{{idFile, id}, {akFile, ak}} {
		if err := writeAtomic(filepath.Join(o.Dir, f.name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.c.Raw})); err != nil {
			return nil, err
		}
	}
	res.ID, res.AK, res.Created = id, ak, true
	return res, nil
}

// persistent returns the key at handle, creating and persisting it when
// absent. Primary keys derive from the endorsement seed, so re-creating
// gives the same key.
func persistent(ctx context.Context, tp *tpm.TPM, handle uint32, spec tpm.KeySpec) (*tpm.Key, error) {
	if k, err := tp.ReadPublic(ctx, handle, spec); err == nil {
		return k, nil
	}
	k, err := tp.CreateKey(ctx, spec)
	if err != nil {
		return nil, err
	}
	return tp.Persist(ctx, k, handle)
}

func loadPair(dir, idFile, akFile string) (*x509.Certificate, *x509.Certificate, error) {
	id, err := LoadCert(filepath.Join(dir, idFile))
	if err != nil {
		return nil, nil, err
	}
	ak, err := LoadCert(filepath.Join(dir, akFile))
	return id, ak, err
}

// LoadCert reads a PEM certificate.
func LoadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// LoadCA reads a CA: its certificate and its PKCS#8 private key (PEM).
func LoadCA(certFile, keyFile string) (*identity.CA, error) {
	c, err := LoadCert(certFile)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("CA key %s: no PEM block", keyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA key %s: %w", keyFile, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("CA key %s: not a signing key", keyFile)
	}
	return &identity.CA{Cert: c, Signer: s}, nil
}

func samePub(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

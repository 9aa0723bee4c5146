package tpm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/openriv/riv/pkg/quote"
)

// KeyAlg is the algorithm of a key RIV creates.
type KeyAlg int

// Key algorithms: ECC P-256 is the default; P-384/SHA-384 is what OpenConfig
// attestz requires; RSA-2048 for older fleets.
const (
	ECCP256 KeyAlg = iota
	ECCP384
	RSA2048
)

func (a KeyAlg) String() string {
	return [...]string{"ecc-p256", "ecc-p384", "rsa-2048"}[a]
}

// ParseKeyAlg maps "ecc-p256", "p256", "ecc-p384", "p384", "rsa-2048",
// "rsa" to a KeyAlg.
func ParseKeyAlg(s string) (KeyAlg, error) {
	switch s {
	case "ecc-p256", "p256", "ecdsa-p256", "":
		return ECCP256, nil
	case "ecc-p384", "p384", "ecdsa-p384":
		return ECCP384, nil
	case "rsa-2048", "rsa2048", "rsa":
		return RSA2048, nil
	}
	return 0, fmt.Errorf("unknown key algorithm %q (want ecc-p256, ecc-p384 or rsa-2048)", s)
}

// KeySpec describes a signing key to create.
type KeySpec struct {
	Alg KeyAlg
	// Restricted keys (IAK, AK) sign only TPM-generated structures —
	// quotes, certifications — never arbitrary digests that could mimic
	// them (TPM 2.0 Part 1 §25.2.3).
	Restricted bool
	// Label makes keys with otherwise equal templates distinct (it goes in
	// the template's unique field, the KDF context of a primary key), e.g.
	// "IAK" and "IDevID".
	Label string
}

// template builds a signing-key template after the TCG "TPM 2.0 Keys for
// Device Identity and Attestation" §7.3.4 profiles: fixedTPM, fixedParent,
// sensitiveDataOrigin, userWithAuth, sign, plus restricted for attestation
// keys. Restricted keys carry their scheme (the TPM requires one);
// unrestricted keys leave it Null so each signature names its own (TLS 1.3
// needs RSA-PSS, SSH RSASSA).
func (s KeySpec) template() tpm2.TPMTPublic {
	attrs := tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
		UserWithAuth: true, SignEncrypt: true, Restricted: s.Restricted,
	}
	label := []byte(s.Label)
	switch s.Alg {
	case RSA2048:
		scheme := tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull}
		if s.Restricted {
			scheme = tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256})}
		}
		return tpm2.TPMTPublic{
			Type: tpm2.TPMAlgRSA, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull}, Scheme: scheme, KeyBits: 2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: label}),
		}
	default:
		curve, hash, name := tpm2.TPMECCNistP256, tpm2.TPMAlgSHA256, tpm2.TPMAlgSHA256
		if s.Alg == ECCP384 {
			curve, hash, name = tpm2.TPMECCNistP384, tpm2.TPMAlgSHA384, tpm2.TPMAlgSHA384
		}
		scheme := tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull}
		if s.Restricted {
			scheme = tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: hash})}
		}
		return tpm2.TPMTPublic{
			Type: tpm2.TPMAlgECC, NameAlg: name, ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull}, Scheme: scheme, CurveID: curve,
				KDF: tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: label}}),
		}
	}
}

// Key is a loaded TPM key.
type Key struct {
	Handle tpm2.TPMHandle
	Name   tpm2.TPM2BName
	// Public is the parsed TPMT_PUBLIC; Public.Raw is what TPM2_Certify
	// and the Name cover.
	Public *quote.Public
	Spec   KeySpec
}

func (k *Key) auth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: k.Handle, Name: k.Name, Auth: tpm2.PasswordAuth(nil)}
}

// CreateKey creates a primary signing key in the endorsement hierarchy.
// The same spec gives the same key on the same TPM (primary keys derive
// from the hierarchy seed), which makes provisioning idempotent.
func (tp *TPM) CreateKey(ctx context.Context, spec KeySpec) (*Key, error) {
	var k *Key
	err := tp.do(ctx, func(t transport.TPM) error {
		rsp, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
			InPublic:      tpm2.New2B(spec.template()),
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("create %v key: %w", spec.Alg, err)
		}
		pubBytes := rsp.OutPublic.Bytes()
		pub, err := quote.ParsePublic(pubBytes)
		if err != nil {
			tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(t)
			return fmt.Errorf("create %v key: TPM returned %w", spec.Alg, err)
		}
		k = &Key{Handle: rsp.ObjectHandle, Name: rsp.Name, Public: pub, Spec: spec}
		return nil
	})
	return k, err
}

// SoftwareKey describes an ECC key held outside any TPM (the fleet
// simulator's software TPM) as a TPM holding it at handle would: the
// TPMT_PUBLIC of spec's template with pub as its point, so that its Name,
// and the qualifiedSigner of the quotes it signs, are what a TPM's are.
func SoftwareKey(spec KeySpec, pub *ecdsa.PublicKey, handle uint32) (*Key, error) {
	if spec.Alg == RSA2048 {
		return nil, errors.New("software key: ECC keys only")
	}
	t := spec.template()
	size := (pub.Curve.Params().BitSize + 7) / 8
	pt, err := pub.Bytes() // 0x04 || X || Y
	if err != nil || len(pt) != 1+2*size {
		return nil, fmt.Errorf("software key: %v", err)
	}
	t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: pt[1 : 1+size]}, Y: tpm2.TPM2BECCParameter{Buffer: pt[1+size:]}})
	raw := tpm2.Marshal(t)
	p, err := quote.ParsePublic(raw)
	if err != nil {
		return nil, fmt.Errorf("software key: %w", err)
	}
	return &Key{Handle: tpm2.TPMHandle(handle), Name: tpm2.TPM2BName{Buffer: p.Name()}, Public: p, Spec: spec}, nil
}

// Flush unloads a transient key (swtpm has no resource manager: keys left
// loaded exhaust its object slots).
func (tp *TPM) Flush(ctx context.Context, k *Key) error {
	return tp.do(ctx, func(t transport.TPM) error {
		_, err := tpm2.FlushContext{FlushHandle: k.Handle}.Execute(t)
		return err
	})
}

// Persist makes k persistent at handle (0x81xxxxxx) and returns the
// persistent key; the transient one is flushed.
func (tp *TPM) Persist(ctx context.Context, k *Key, handle uint32) (*Key, error) {
	err := tp.do(ctx, func(t transport.TPM) error {
		_, err := tpm2.EvictControl{
			Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			ObjectHandle:     &tpm2.NamedHandle{Handle: k.Handle, Name: k.Name},
			PersistentHandle: tpm2.TPMHandle(handle),
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("persist key at 0x%08x: %w", handle, err)
		}
		tpm2.FlushContext{FlushHandle: k.Handle}.Execute(t)
		return nil
	})
	if err != nil {
		return nil, err
	}
	p := *k
	p.Handle = tpm2.TPMHandle(handle)
	return &p, nil
}

// Signer returns a crypto.Signer whose private key stays in the TPM. It
// refuses restricted keys: the TPM signs arbitrary digests only with
// unrestricted ones (so an IAK can never be made to sign a fake quote).
func (tp *TPM) Signer(k *Key) (crypto.Signer, error) {
	if k.Spec.Restricted || k.Public.Has(quote.AttrRestricted) {
		return nil, fmt.Errorf("signer: key is restricted; use an unrestricted key such as the IDevID")
	}
	return &signer{tp: tp, k: k}, nil
}

type signer struct {
	tp *TPM
	k  *Key
}

func (s *signer) Public() crypto.PublicKey { return s.k.Public.Key }

// Sign signs digest (already hashed with opts.HashFunc()). ECDSA
// signatures are returned ASN.1-encoded as crypto.Signer requires.
func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.SignContext(context.Background(), digest, opts)
}

// SignContext is Sign with a context.
func (s *signer) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	hid, ok := map[crypto.Hash]tpm2.TPMAlgID{crypto.SHA1: tpm2.TPMAlgSHA1, crypto.SHA256: tpm2.TPMAlgSHA256, crypto.SHA384: tpm2.TPMAlgSHA384, crypto.SHA512: tpm2.TPMAlgSHA512}[opts.HashFunc()]
	if !ok {
		return nil, fmt.Errorf("tpm sign: unsupported hash %v", opts.HashFunc())
	}
	var scheme tpm2.TPMTSigScheme
	switch s.k.Spec.Alg {
	case RSA2048:
		if pss, isPSS := opts.(*rsa.PSSOptions); isPSS {
			// The TPM always uses a salt as long as the digest.
			if pss.SaltLength != rsa.PSSSaltLengthEqualsHash && pss.SaltLength != rsa.PSSSaltLengthAuto && pss.SaltLength != opts.HashFunc().Size() {
				return nil, fmt.Errorf("tpm sign: PSS salt length %d unsupported", pss.SaltLength)
			}
			scheme = tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgRSAPSS, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgRSAPSS, &tpm2.TPMSSchemeHash{HashAlg: hid})}
		} else {
			scheme = tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgRSASSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSchemeHash{HashAlg: hid})}
		}
	default:
		scheme = tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: hid})}
	}
	var out []byte
	err := s.tp.do(ctx, func(t transport.TPM) error {
		rsp, err := tpm2.Sign{
			KeyHandle:  s.k.auth(),
			Digest:     tpm2.TPM2BDigest{Buffer: digest},
			InScheme:   scheme,
			Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("tpm sign: %w", err)
		}
		sig, err := quote.ParseSignature(tpm2.Marshal(rsp.Signature))
		if err != nil {
			return fmt.Errorf("tpm sign: %w", err)
		}
		if sig.RSA != nil {
			out = sig.RSA
			return nil
		}
		out, err = asn1.Marshal(struct{ R, S *big.Int }{sig.R, sig.S})
		return err
	})
	return out, err
}

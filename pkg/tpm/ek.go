package tpm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/openriv/riv/pkg/quote"
)

// NV indexes of EK certificates (TCG EK Credential Profile §2.2.1.5).
const (
	NVRSAEKCert     uint32 = 0x01C00002
	NVECCEKCert     uint32 = 0x01C0000A
	NVECCP384EKCert uint32 = 0x01C00016
)

// EK creates the endorsement key from the TCG default low-range template
// (RSA-2048, or ECC P-256 with ecc), the key the manufacturer's EK
// certificate names.
func (tp *TPM) EK(ctx context.Context, ecc bool) (*Key, error) {
	tmpl := tpm2.RSAEKTemplate
	if ecc {
		tmpl = tpm2.ECCEKTemplate
	}
	var k *Key
	err := tp.do(ctx, func(t transport.TPM) error {
		rsp, err := tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
			InPublic:      tpm2.New2B(tmpl),
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("create EK: %w", err)
		}
		pub, err := quote.ParsePublic(rsp.OutPublic.Bytes())
		if err != nil {
			tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(t)
			return fmt.Errorf("create EK: %w", err)
		}
		k = &Key{Handle: rsp.ObjectHandle, Name: rsp.Name, Public: pub}
		return nil
	})
	return k, err
}

// NVRead reads a whole NV index (e.g. an EK certificate).
func (tp *TPM) NVRead(ctx context.Context, index uint32) ([]byte, error) {
	var out []byte
	err := tp.do(ctx, func(t transport.TPM) error {
		pub, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}.Execute(t)
		if err != nil {
			return fmt.Errorf("NV 0x%08x: %w", index, err)
		}
		nv, err := pub.NVPublic.Contents()
		if err != nil {
			return fmt.Errorf("NV 0x%08x: %w", index, err)
		}
		size := int(nv.DataSize)
		for off := 0; off < size; {
			n := min(size-off, 768) // below every TPM's MAX_NV_BUFFER_SIZE
			rsp, err := tpm2.NVRead{
				AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)},
				NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: pub.NVName},
				Size:       uint16(n),
				Offset:     uint16(off),
			}.Execute(t)
			if err != nil {
				return fmt.Errorf("NV 0x%08x read at %d: %w", index, off, err)
			}
			out = append(out, rsp.Data.Buffer...)
			off += n
		}
		return nil
	})
	return out, err
}

// ReadPublic loads the key at a persistent handle, or fails if none.
func (tp *TPM) ReadPublic(ctx context.Context, handle uint32, spec KeySpec) (*Key, error) {
	var k *Key
	err := tp.do(ctx, func(t transport.TPM) error {
		rsp, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(handle)}.Execute(t)
		if err != nil {
			return fmt.Errorf("read public 0x%08x: %w", handle, err)
		}
		pub, err := quote.ParsePublic(rsp.OutPublic.Bytes())
		if err != nil {
			return fmt.Errorf("read public 0x%08x: %w", handle, err)
		}
		k = &Key{Handle: tpm2.TPMHandle(handle), Name: rsp.Name, Public: pub, Spec: spec}
		return nil
	})
	return k, err
}

// ActivateCredential recovers the secret a verifier wrapped for key with
// MakeCredential against this TPM's EK, proving key and EK share the TPM.
func (tp *TPM) ActivateCredential(ctx context.Context, key, ek *Key, blob, secret []byte) ([]byte, error) {
	var out []byte
	err := tp.do(ctx, func(t transport.TPM) error {
		policy := func(t transport.TPM, h tpm2.TPMISHPolicy, nonce tpm2.TPM2BNonce) error {
			_, err := tpm2.PolicySecret{AuthHandle: tpm2.TPMRHEndorsement, PolicySession: h, NonceTPM: nonce}.Execute(t)
			return err
		}
		rsp, err := tpm2.ActivateCredential{
			ActivateHandle: key.auth(),
			KeyHandle:      tpm2.AuthHandle{Handle: ek.Handle, Name: ek.Name, Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, policy)},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: blob},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: secret},
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("activate credential: %w", err)
		}
		out = rsp.CertInfo.Buffer
		return nil
	})
	return out, err
}

// MakeCredential wraps secret for the object named name so that only the
// TPM holding the EK whose TPMT_PUBLIC is ekPublic can recover it (TPM 2.0
// Part 1 §24). It runs in software, on the verifier's side.
func MakeCredential(ekPublic, name, secret []byte) (blob, encSecret []byte, err error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ekPublic)
	if err != nil {
		return nil, nil, fmt.Errorf("make credential: EK public: %w", err)
	}
	key, err := tpm2.ImportEncapsulationKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("make credential: %w", err)
	}
	return tpm2.CreateCredential(rand.Reader, key, name, secret)
}

// LoadPersistent loads the key at a persistent handle with the spec its
// public area implies: what the agent does at start with the keys that
// provisioning left in the TPM.
func (tp *TPM) LoadPersistent(ctx context.Context, handle uint32) (*Key, error) {
	k, err := tp.ReadPublic(ctx, handle, KeySpec{})
	if err != nil {
		return nil, err
	}
	switch pub := k.Public.Key.(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			k.Spec.Alg = ECCP256
		case elliptic.P384():
			k.Spec.Alg = ECCP384
		default:
			return nil, fmt.Errorf("key 0x%08x: curve %s is not one RIV uses", handle, pub.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if pub.N.BitLen() != 2048 {
			return nil, fmt.Errorf("key 0x%08x: RSA-%d is not a key size RIV uses", handle, pub.N.BitLen())
		}
		k.Spec.Alg = RSA2048
	default:
		return nil, fmt.Errorf("key 0x%08x: %T is not a signing key RIV uses", handle, pub)
	}
	if !k.Public.Has(quote.AttrSign) || k.Public.Has(quote.AttrDecrypt) {
		// An EK (restricted decrypt) or a storage key is not a signing key.
		return nil, fmt.Errorf("key 0x%08x is not a signing key", handle)
	}
	k.Spec.Restricted = k.Public.Has(quote.AttrRestricted)
	return k, nil
}

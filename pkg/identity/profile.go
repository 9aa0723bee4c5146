// Package identity implements the device-identity certificate profiles of
// the TCG "TPM 2.0 Keys for Device Identity and Attestation" (IDevID, IAK,
// LDevID, LAK) as RFC 9683 uses them: issuing such certificates (the CA
// side) and verifying a device's pair, including the TPM2_Certify evidence
// that binds the identity key to the attestation key in one TPM.
//
// Verification never fails with a Go error on bad evidence: every mismatch
// becomes a reason in the Result, for the instance-identity claim.
package identity

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
)

// OIDs (TCG OID registry; RFC 4108, RFC 4043).
var (
	// OIDHardwareModuleName is id-on-hardwareModuleName (RFC 4108 §5).
	OIDHardwareModuleName = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 4}
	// OIDPermanentIdentifier is id-on-permanentIdentifier (RFC 4043).
	OIDPermanentIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 3}
	// OIDTPM20HwType is the hwType of a TPM 2.0-resident key (tcg-at-tpm20? 2.23.133.1.2).
	OIDTPM20HwType = asn1.ObjectIdentifier{2, 23, 133, 1, 2}
	// OIDEKPermanentIDAssigner names the EK-hash permanent identifier
	// assigner (2.23.133.12.1).
	OIDEKPermanentIDAssigner = asn1.ObjectIdentifier{2, 23, 133, 12, 1}
	// Certificate policies: verified TPM residency, verified TPM fixed, and
	// verified TPM restricted (the IAK).
	OIDPolicyTPMResidency  = asn1.ObjectIdentifier{2, 23, 133, 11, 1, 1}
	OIDPolicyTPMFixed      = asn1.ObjectIdentifier{2, 23, 133, 11, 1, 2}
	OIDPolicyTPMRestricted = asn1.ObjectIdentifier{2, 23, 133, 11, 1, 3}
	// OIDKPAIKCertificate is tcg-kp-AIKCertificate (accepted on an IAK).
	OIDKPAIKCertificate = asn1.ObjectIdentifier{2, 23, 133, 8, 3}

	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// Role is the kind of device-identity certificate.
type Role int

// Roles.
const (
	IDevID Role = iota // manufacturer-issued identity (TLS/SSH)
	IAK                // manufacturer-issued attestation key
	LDevID             // owner-issued identity
	LAK                // owner-issued attestation key
)

func (r Role) String() string { return [...]string{"IDevID", "IAK", "LDevID", "LAK"}[r] }

// IsAttestation reports whether the role is an attestation key.
func (r Role) IsAttestation() bool { return r == IAK || r == LAK }

// HardwareModuleName is the SAN otherName of RFC 4108 §5.
type HardwareModuleName struct {
	HwType      asn1.ObjectIdentifier
	HwSerialNum []byte
}

// PermanentIdentifier is the SAN otherName of RFC 4043.
type PermanentIdentifier struct {
	IdentifierValue string                `asn1:"utf8,optional"`
	Assigner        asn1.ObjectIdentifier `asn1:"optional"`
}

// otherName is the GeneralName [0] OtherName.
type otherName struct {
	TypeID asn1.ObjectIdentifier
	Value  asn1.RawValue `asn1:"tag:0,explicit"`
}

// SAN holds the device names of a certificate's subjectAltName.
type SAN struct {
	HardwareModule *HardwareModuleName
	Permanent      *PermanentIdentifier
}

var errNoSAN = errors.New("no subjectAltName")

// ParseSAN decodes the hardwareModuleName and permanentIdentifier otherNames
// of cert's subjectAltName with encoding/asn1 (crypto/x509 drops otherName).
func ParseSAN(cert *x509.Certificate) (*SAN, error) {
	var raw []byte
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			raw = e.Value
		}
	}
	if raw == nil {
		return nil, errNoSAN
	}
	var names []asn1.RawValue
	rest, err := asn1.Unmarshal(raw, &names)
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("subjectAltName: malformed: %v", err)
	}
	san := &SAN{}
	for _, n := range names {
		if n.Class != asn1.ClassContextSpecific || n.Tag != 0 {
			continue
		}
		var on otherName
		// The [0] IMPLICIT tag replaces the SEQUENCE tag of OtherName.
		full := n.FullBytes
		seq := append([]byte{0x30}, full[1:]...)
		if rest, err := asn1.Unmarshal(seq, &on); err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("subjectAltName otherName: malformed: %v", err)
		}
		switch {
		case on.TypeID.Equal(OIDHardwareModuleName):
			var h HardwareModuleName
			if rest, err := asn1.Unmarshal(on.Value.Bytes, &h); err != nil || len(rest) != 0 {
				return nil, fmt.Errorf("hardwareModuleName: malformed: %v", err)
			}
			san.HardwareModule = &h
		case on.TypeID.Equal(OIDPermanentIdentifier):
			var p PermanentIdentifier
			if rest, err := asn1.Unmarshal(on.Value.Bytes, &p); err != nil || len(rest) != 0 {
				return nil, fmt.Errorf("permanentIdentifier: malformed: %v", err)
			}
			san.Permanent = &p
		}
	}
	return san, nil
}

// marshalSAN encodes the subjectAltName extension for a device.
func marshalSAN(serial string, permanent *PermanentIdentifier) (pkix.Extension, error) {
	var names []asn1.RawValue
	add := func(typeID asn1.ObjectIdentifier, v any) error {
		inner, err := asn1.Marshal(v)
		if err != nil {
			return err
		}
		on, err := asn1.Marshal(otherName{TypeID: typeID, Value: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner}})
		if err != nil {
			return err
		}
		// Retag the OtherName SEQUENCE as [0] IMPLICIT (constructed).
		on[0] = 0xa0
		names = append(names, asn1.RawValue{FullBytes: on})
		return nil
	}
	if err := add(OIDHardwareModuleName, HardwareModuleName{HwType: OIDTPM20HwType, HwSerialNum: []byte(serial)}); err != nil {
		return pkix.Extension{}, err
	}
	if permanent != nil {
		if err := add(OIDPermanentIdentifier, *permanent); err != nil {
			return pkix.Extension{}, err
		}
	}
	v, err := asn1.Marshal(names)
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: oidSubjectAltName, Value: v}, nil
}

func pkixExt(v []byte) pkix.Extension { return pkix.Extension{Id: oidSubjectAltName, Value: v} }

package identity

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
)

// CertsOnlyCMS wraps a certificate in a degenerate CMS SignedData (RFC
// 5652 §5, no signers), the end-entity-cert-cms encoding of ietf-crypto-types.
func CertsOnlyCMS(c *x509.Certificate) ([]byte, error) {
	type encap struct {
		ContentType asn1.ObjectIdentifier
	}
	type signedData struct {
		Version          int
		DigestAlgorithms asn1.RawValue
		EncapContentInfo encap
		Certificates     asn1.RawValue `asn1:"tag:0,optional"`
		SignerInfos      asn1.RawValue
	}
	sd := signedData{
		Version:          1,
		DigestAlgorithms: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true},
		EncapContentInfo: encap{ContentType: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}},
		Certificates:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: c.Raw},
		SignerInfos:      asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true},
	}
	inner, err := asn1.Marshal(sd)
	if err != nil {
		return nil, err
	}
	// content [0] EXPLICIT: built by hand, since encoding/asn1 writes a
	// RawValue's FullBytes without the explicit tag.
	return asn1.Marshal(struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue
	}{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner}})
}

// ParseCertsOnlyCMS extracts the certificates of a degenerate SignedData.
func ParseCertsOnlyCMS(b []byte) ([]*x509.Certificate, error) {
	var ci struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue
	}
	if rest, err := asn1.Unmarshal(b, &ci); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("CMS ContentInfo: %v", err)
	}
	if !ci.ContentType.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}) || ci.Content.Class != asn1.ClassContextSpecific || ci.Content.Tag != 0 {
		return nil, fmt.Errorf("CMS ContentInfo: not SignedData")
	}
	var sd struct {
		Version          int
		DigestAlgorithms asn1.RawValue
		EncapContentInfo asn1.RawValue
		Certificates     asn1.RawValue `asn1:"tag:0,optional"`
		SignerInfos      asn1.RawValue
	}
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return nil, fmt.Errorf("CMS SignedData: %v", err)
	}
	return x509.ParseCertificates(sd.Certificates.Bytes)
}

package rim

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"

	"github.com/veraison/corim/corim"

	"github.com/openriv/riv/pkg/pcr"
)

// Kind is what a RIM file holds.
type Kind string

// Kinds of RIM.
const (
	KindCoSWID Kind = "coswid"
	KindCoRIM  Kind = "corim"
	KindCOSE   Kind = "cose" // a COSE_Sign1 of another payload
)

// Result is a verified RIM.
type Result struct {
	Kind   Kind
	Signed *Signed
	Tag    *Tag                 // KindCoSWID
	CoRIM  *corim.UnsignedCorim // KindCoRIM
	PCRs   pcr.Values           // KindCoRIM reference values
	// PCRRef is the CoRIM's PCR reference values with the platform they
	// are for (KindCoRIM).
	PCRRef *PCRReference
	// Supersedes and Patches are the tag-ids the CoSWID links to.
	Supersedes []string
	Patches    []string
}

// Verify checks a signed RIM: the COSE signature (and, with anchors, the
// x5chain), then the payload by content type. For a CoSWID the signer must
// be its tag-creator entity (RFC 9393 §2.6: the tag-creator is who
// vouches for the tag), a patch tag must name what it patches, and links
// must be swid:<tag-id>; for a CoRIM the corim-meta signer must name the
// signer certificate.
func Verify(raw []byte, o VerifyOptions) (*Result, error) {
	s, err := VerifyCOSE(raw, o)
	if err != nil {
		return nil, err
	}
	r := &Result{Kind: KindCOSE, Signed: s}
	switch s.ContentType {
	case ContentTypeCoSWID, "application/swid+cbor; profile=tcg-rim":
		t, err := DecodeTag(s.Payload)
		if err != nil {
			return nil, err
		}
		r.Kind, r.Tag = KindCoSWID, t
		if s.Signer != nil {
			if err := signerIsCreator(s.Signer, t); err != nil {
				return nil, err
			}
		}
		if r.Supersedes, err = t.LinkedTags("supersedes"); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrProfile, err)
		}
		if r.Patches, err = t.LinkedTags("patches"); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrProfile, err)
		}
		if t.Patch && len(r.Patches) == 0 {
			return nil, fmt.Errorf("%w: patch tag %s has no patches link", ErrProfile, t.TagID)
		}
	case ContentTypeCoRIM:
		u, ref, err := decodeCoRIM(s.Payload)
		if err != nil {
			return nil, err
		}
		r.Kind, r.CoRIM, r.PCRs, r.PCRRef = KindCoRIM, u, ref.PCRs, ref
		if s.Signer != nil {
			if meta, ok := s.Protected[corimMetaLabel].([]byte); ok {
				m := corim.NewMeta()
				if err := decMode.Wellformed(meta); err != nil {
					return nil, fmt.Errorf("%w: corim-meta: %v", ErrMalformed, err)
				}
				if err := guard(func() error { return m.FromCBOR(meta) }); err != nil {
					return nil, fmt.Errorf("%w: corim-meta: %v", ErrMalformed, err)
				}
				if !nameMatches(s.Signer, m.Signer.Name, "") {
					return nil, fmt.Errorf("%w: corim-meta signer %q is not the signing certificate %q", ErrProfile, m.Signer.Name, s.Signer.Subject)
				}
			}
		}
	}
	return r, nil
}

// signerIsCreator checks the signing certificate names the tag-creator:
// its organization or common name equals the entity-name, or a SAN DNS
// name or URI host equals the reg-id's host.
func signerIsCreator(c *x509.Certificate, t *Tag) error {
	e := t.TagCreator()
	if e == nil {
		return fmt.Errorf("%w: no tag-creator entity", ErrProfile)
	}
	if !nameMatches(c, e.EntityName, e.RegID) {
		return fmt.Errorf("%w: signer %q is not the tag-creator %q (%s)", ErrProfile, c.Subject, e.EntityName, e.RegID)
	}
	return nil
}

func certName(c *x509.Certificate) string {
	if len(c.Subject.Organization) > 0 {
		return c.Subject.Organization[0]
	}
	return c.Subject.CommonName
}

func nameMatches(c *x509.Certificate, name, regID string) bool {
	for _, o := range c.Subject.Organization {
		if name != "" && o == name {
			return true
		}
	}
	if name != "" && c.Subject.CommonName == name {
		return true
	}
	host := regID
	if u, err := url.Parse(regID); err == nil && u.Host != "" {
		host = u.Host
	}
	if host == "" {
		return false
	}
	for _, d := range c.DNSNames {
		if strings.EqualFold(d, host) {
			return true
		}
	}
	for _, u := range c.URIs {
		if strings.EqualFold(u.Host, host) {
			return true
		}
	}
	return false
}

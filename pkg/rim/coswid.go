// Package rim makes and checks Reference Integrity Manifests: signed
// CoSWID tags (RFC 9393) with the TCG RIM extension, TCG PC Client base
// RIMs that point at their support RIM (a reference event log), signed
// CoRIMs (veraison/corim) carrying PCR reference values, and the
// COSE_Sign1 envelope (RFC 9052, veraison/go-cose) around all of them.
//
// Parse, then verify: Decode* return untrusted content; only Verify ties it
// to a signer certificate that chains to the vendor anchors.
package rim

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/swid"

	"github.com/openriv/riv/pkg/alg"
)

// CoSWIDTag is the CBOR tag of a CoSWID (RFC 9393 §8: 1398229316).
const CoSWIDTag = 1398229316

// ContentTypeCoSWID is the COSE content type of a CoSWID payload.
const ContentTypeCoSWID = "application/swid+cbor"

// ReferenceMeasurement is the TCG RIM extension of a CoSWID
// (draft-birkholz-rats-coswid-rim; the TCG RIM Information Model
// attributes). The map keys 58–77 are that draft's provisional indices.
type ReferenceMeasurement struct {
	PayloadType              *uint   `cbor:"59,keyasint,omitempty" json:"payload-type,omitempty"`
	PlatformConfigURIGlobal  string  `cbor:"61,keyasint,omitempty" json:"platform-configuration-uri-global,omitempty"`
	PlatformConfigURILocal   string  `cbor:"62,keyasint,omitempty" json:"platform-configuration-uri-local,omitempty"`
	BindingSpecName          string  `cbor:"63,keyasint" json:"binding-spec-name"`
	BindingSpecVersion       string  `cbor:"64,keyasint" json:"binding-spec-version"`
	PlatformManufacturerID   uint64  `cbor:"65,keyasint" json:"platform-manufacturer-id"`
	PlatformManufacturerName string  `cbor:"66,keyasint" json:"platform-manufacturer-name"`
	PlatformModelName        string  `cbor:"67,keyasint" json:"platform-model-name"`
	PlatformVersion          *uint64 `cbor:"68,keyasint,omitempty" json:"platform-version,omitempty"`
	FirmwareManufacturerID   *uint64 `cbor:"69,keyasint,omitempty" json:"firmware-manufacturer-id,omitempty"`
	FirmwareManufacturerName string  `cbor:"70,keyasint,omitempty" json:"firmware-manufacturer-name,omitempty"`
	FirmwareModelName        string  `cbor:"71,keyasint,omitempty" json:"firmware-model-name,omitempty"`
	FirmwareVersion          *uint64 `cbor:"72,keyasint,omitempty" json:"firmware-version,omitempty"`
	// RIMLinkHash binds a support RIM or base RIM: the hash of the tag it
	// refers to.
	RIMLinkHash []byte `cbor:"73,keyasint" json:"rim-link-hash"`
}

// Payload types of the TCG RIM extension.
const (
	PayloadDirect   uint = 0 // the reference values are in this CoSWID
	PayloadIndirect uint = 1 // they are in a support RIM (e.g. an event log)
	PayloadHybrid   uint = 2
)

// Tag is a CoSWID with the TCG RIM extension.
type Tag struct {
	swid.SoftwareIdentity
	RIM *ReferenceMeasurement `cbor:"58,keyasint,omitempty" json:"reference-measurement,omitempty"`
}

var (
	encMode, _ = cbor.CoreDetEncOptions().EncMode()
	// Decoding untrusted tags: bounded nesting and sizes; duplicate keys
	// rejected so two readers cannot see two different tags.
	decMode, _ = cbor.DecOptions{
		MaxNestedLevels:  16,
		MaxArrayElements: 1 << 16,
		MaxMapPairs:      1 << 16,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthAllowed,
	}.DecMode()
)

// ErrMalformed wraps every decoding failure of RIM bytes.
var ErrMalformed = errors.New("malformed RIM")

// Encode returns the CoSWID CBOR of t (untagged, as COSE payloads carry it).
func (t *Tag) Encode() ([]byte, error) { return encMode.Marshal(t) }

// DecodeTag decodes a CoSWID: bare, wrapped in CBOR tag 1398229316, or that
// tag around a byte string (as HIRS writes it).
func DecodeTag(b []byte) (*Tag, error) {
	var raw cbor.RawTag
	if err := decMode.Unmarshal(b, &raw); err == nil && raw.Number == CoSWIDTag {
		b = raw.Content
		var inner []byte
		if err := decMode.Unmarshal(b, &inner); err == nil {
			b = inner
		}
	}
	t := &Tag{}
	if err := guard(func() error { return decMode.Unmarshal(b, t) }); err != nil {
		return nil, fmt.Errorf("%w: CoSWID: %v", ErrMalformed, err)
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("%w: CoSWID: %v", ErrMalformed, err)
	}
	// swid's types decode some shapes they cannot encode (a link rel or
	// role with no value); such a tag is malformed, not a tag RIV can index.
	if err := guard(func() error { _, err := t.Encode(); return err }); err != nil {
		return nil, fmt.Errorf("%w: CoSWID: %v", ErrMalformed, err)
	}
	return t, nil
}

// check applies the RFC 9393 rules a verifier relies on.
func (t *Tag) check() error {
	if t.TagID.String() == "" {
		return errors.New("no tag-id")
	}
	if t.SoftwareName == "" {
		return errors.New("no software-name")
	}
	if t.TagCreator() == nil {
		return errors.New("no entity with the tag-creator role (RFC 9393 §2.6)")
	}
	return nil
}

// TagCreator returns the tag-creator entity, or nil.
func (t *Tag) TagCreator() *swid.Entity {
	for i := range t.Entities {
		for _, r := range rolesOf(t.Entities[i].Roles) {
			if r == "tagCreator" || r == "tag-creator" {
				return &t.Entities[i]
			}
		}
	}
	return nil
}

// rolesOf lists the role names of an entity (swid prints them
// space-separated, in SWID's camelCase: "tagCreator softwareCreator").
func rolesOf(r swid.Roles) []string { return strings.Fields(r.String()) }

// FileHash is one reference hash of a payload file.
type FileHash struct {
	Path string
	Alg  alg.ID
	Hash []byte
	Size int64
}

// namedInfo maps TPM hash IDs to IANA Named Information hash IDs (the
// hash-entry algorithm numbers of RFC 9393 §2.9.1).
var namedInfo = map[alg.ID]uint64{alg.SHA256: swid.Sha256, alg.SHA384: swid.Sha384, alg.SHA512: swid.Sha512}

func fromNamedInfo(id uint64) alg.ID {
	for a, n := range namedInfo {
		if n == id {
			return a
		}
	}
	return alg.Null
}

// Files lists the payload file hashes of t (directories flattened).
func (t *Tag) Files() []FileHash {
	var out []FileHash
	if t.Payload == nil {
		return nil
	}
	var walk func(prefix string, rc swid.PathElements)
	walk = func(prefix string, rc swid.PathElements) {
		if rc.Files != nil {
			for _, f := range *rc.Files {
				fh := FileHash{Path: joinPath(prefix, f.FsName)}
				if f.Hash != nil {
					fh.Alg, fh.Hash = fromNamedInfo(f.Hash.HashAlgID), f.Hash.HashValue
				}
				if f.Size != nil {
					fh.Size = *f.Size
				}
				out = append(out, fh)
			}
		}
		if rc.Directories != nil {
			for _, d := range *rc.Directories {
				if d.PathElements != nil {
					walk(joinPath(prefix, d.FsName), *d.PathElements)
				}
			}
		}
	}
	walk("", t.Payload.ResourceCollection.PathElements)
	return out
}

func joinPath(a, b string) string {
	switch {
	case a == "":
		return b
	case len(a) > 0 && a[len(a)-1] == '/':
		return a + b
	}
	return a + "/" + b
}

// guard runs a third-party decoder and turns a panic into an error. The
// veraison decoders index into their input without checking it on some
// malformed CBOR (found by FuzzVerifyCOSE); untrusted bytes must never
// crash the verifier.
func guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoder failed on malformed input: %v", r)
		}
	}()
	return f()
}

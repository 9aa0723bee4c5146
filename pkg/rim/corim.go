package rim

import (
	"bytes"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/corim/comid"
	"github.com/veraison/corim/corim"
	"github.com/veraison/swid"

	"github.com/openriv/riv/pkg/pcr"
)

// ContentTypeCoRIM is the COSE content type of a signed CoRIM.
const ContentTypeCoRIM = "application/rim+cbor"

// corimMetaLabel is the protected header carrying corim-meta (CoRIM §4.2).
const corimMetaLabel int64 = 8

// PCRSpec describes a CoRIM of PCR reference values for one platform.
type PCRSpec struct {
	ID          string // corim-id and tag-id (a UUID string)
	Vendor      string
	VendorRegID string
	Model       string
	PCRs        pcr.Values
}

// NewPCRCoRIM builds an unsigned CoRIM whose CoMID carries spec.PCRs as
// integrity-registers reference values of the platform's TPM.
func NewPCRCoRIM(spec PCRSpec) (*corim.UnsignedCorim, error) {
	ir := comid.NewIntegrityRegisters()
	for _, b := range spec.PCRs.Banks() {
		id, ok := namedInfo[b]
		if !ok {
			return nil, fmt.Errorf("corim: bank %v has no CoRIM hash algorithm", b)
		}
		for _, i := range spec.PCRs.Indexes(b) {
			var h swid.HashEntry
			if err := h.Set(id, spec.PCRs.Get(b, i)); err != nil {
				return nil, err
			}
			if err := ir.AddDigest(uint64(i), h); err != nil {
				return nil, err
			}
		}
	}
	m, err := comid.NewUintMeasurement(uint64(0))
	if err != nil {
		return nil, err
	}
	m.Val.IntegrityRegisters = ir
	var regID *string
	if spec.VendorRegID != "" {
		regID = &spec.VendorRegID
	}
	if spec.Vendor == "" || spec.Model == "" {
		return nil, fmt.Errorf("corim: vendor and model are required")
	}
	if _, err := comid.ParseUUID(spec.ID); err != nil {
		return nil, fmt.Errorf("corim: id %q is not a UUID", spec.ID)
	}
	c := comid.NewComid().SetTagIdentity(spec.ID, 0).
		AddEntity(spec.Vendor, regID, comid.RoleTagCreator, comid.RoleCreator).
		AddReferenceValue(comid.ReferenceValue{
			Environment:  comid.Environment{Class: comid.NewClassUUID(mustUUID(spec.ID)).SetVendor(spec.Vendor).SetModel(spec.Model)},
			Measurements: *comid.NewMeasurements().AddMeasurement(m),
		})
	if err := c.Valid(); err != nil {
		return nil, fmt.Errorf("corim: CoMID: %w", err)
	}
	u := corim.NewUnsignedCorim().SetID(spec.ID).AddComid(*c)
	if err := u.Valid(); err != nil {
		return nil, fmt.Errorf("corim: %w", err)
	}
	return u, nil
}

func mustUUID(s string) comid.UUID {
	u, err := comid.ParseUUID(s)
	if err != nil {
		panic(err)
	}
	return u
}

// SignCoRIM signs u with s; the corim-meta signer name is the leaf
// certificate's organization (or common name).
func SignCoRIM(u *corim.UnsignedCorim, s Signer) ([]byte, error) {
	payload, err := u.ToCBOR()
	if err != nil {
		return nil, err
	}
	name := "unknown"
	if len(s.Chain) > 0 {
		name = certName(s.Chain[0])
	}
	meta := corim.NewMeta()
	meta.Signer.Name = name
	metaCBOR, err := meta.ToCBOR()
	if err != nil {
		return nil, err
	}
	return SignCOSE(payload, ContentTypeCoRIM, s, map[any]any{corimMetaLabel: metaCBOR})
}

// DecodeCoRIM decodes an unsigned CoRIM payload and the PCR reference
// values of its CoMIDs (integrity registers keyed by PCR index).
func DecodeCoRIM(payload []byte) (*corim.UnsignedCorim, pcr.Values, error) {
	u, ref, err := decodeCoRIM(payload)
	if err != nil {
		return nil, nil, err
	}
	return u, ref.PCRs, nil
}

// decodeCoRIM decodes a CoRIM and its PCR reference values with the
// vendor and model of the environment they are for.
func decodeCoRIM(payload []byte) (*corim.UnsignedCorim, *PCRReference, error) {
	// The veraison decoders trust declared lengths (a map header claiming
	// three billion pairs loops for minutes; found by FuzzVerifyCOSE), so
	// the bytes are first checked well-formed within RIV's limits.
	if err := decMode.Wellformed(payload); err != nil {
		return nil, nil, fmt.Errorf("%w: CoRIM: %v", ErrMalformed, err)
	}
	u := corim.NewUnsignedCorim()
	if err := guard(func() error { return u.FromCBOR(payload) }); err != nil {
		// CoRIM drafts changed some fields' shapes (profile: array, then a
		// single value); the corim-id and tags RIV needs have not changed.
		var m map[int]cbor.RawMessage
		if err2 := decMode.Unmarshal(payload, &m); err2 != nil {
			return nil, nil, fmt.Errorf("%w: CoRIM: %v", ErrMalformed, err)
		}
		var tags []cbor.RawMessage
		if err2 := decMode.Unmarshal(m[1], &tags); err2 != nil || len(tags) == 0 {
			return nil, nil, fmt.Errorf("%w: CoRIM: %v", ErrMalformed, err)
		}
		u = corim.NewUnsignedCorim()
		if err2 := decMode.Unmarshal(m[0], &u.ID); err2 != nil {
			return nil, nil, fmt.Errorf("%w: CoRIM id: %v", ErrMalformed, err2)
		}
		for _, t := range tags {
			u.Tags = append(u.Tags, corim.Tag(t))
		}
	}
	vals := pcr.Values{}
	ref := &PCRReference{PCRs: vals}
	ref.ID = guardString(u.GetID)
	for _, t := range u.Tags {
		if !bytes.HasPrefix(t, corim.ComidTag) {
			continue
		}
		body := []byte(t[len(corim.ComidTag):])
		// Newer CoRIM drafts wrap the CoMID in a byte string.
		var inner []byte
		if err := decMode.Unmarshal(body, &inner); err == nil {
			body = inner
		}
		if err := decMode.Wellformed(body); err != nil {
			return nil, nil, fmt.Errorf("%w: CoMID: %v", ErrMalformed, err)
		}
		var c comid.Comid
		if err := guard(func() error { return c.FromCBOR(body) }); err != nil {
			return nil, nil, fmt.Errorf("%w: CoMID: %v", ErrMalformed, err)
		}
		if c.Triples.ReferenceValues == nil {
			continue
		}
		for _, rv := range *c.Triples.ReferenceValues {
			if cl := rv.Environment.Class; cl != nil {
				if cl.Vendor != nil && ref.Vendor == "" {
					ref.Vendor = *cl.Vendor
				}
				if cl.Model != nil && ref.Model == "" {
					ref.Model = *cl.Model
				}
			}
			for _, m := range rv.Measurements {
				if m.Val.IntegrityRegisters == nil {
					continue
				}
				var raw []byte
				err := guard(func() (err error) { raw, err = m.Val.IntegrityRegisters.MarshalCBOR(); return err })
				if err != nil {
					return nil, nil, err
				}
				var regs map[uint64][]swid.HashEntry
				if err := cbor.Unmarshal(raw, &regs); err != nil {
					continue // text-keyed registers are not PCRs
				}
				for idx, ds := range regs {
					if idx > pcr.MaxPCR {
						continue
					}
					for _, d := range ds {
						if b := fromNamedInfo(d.HashAlgID); b.IsHash() {
							vals.Set(b, int(idx), d.HashValue)
						}
					}
				}
			}
		}
	}
	return u, ref, nil
}

// guardString is guard for a decoder's string accessor.
func guardString(f func() string) (s string) {
	guard(func() error { s = f(); return nil })
	return s
}

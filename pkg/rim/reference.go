package rim

import (
	"fmt"

	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
)

// PCRReference is the PCR reference values a signed CoRIM gives for one
// platform (the environment class of its CoMID).
type PCRReference struct {
	ID     string // corim-id
	Vendor string
	Model  string
	// Source names where the CoRIM came from (a file name), for reasons.
	Source string
	PCRs   pcr.Values
}

// SupportRIM is the support RIM of a TCG PC Client base RIM: the reference
// event log of a platform, trusted because the signed base RIM lists its
// hash.
type SupportRIM struct {
	Base   *Tag   // the base RIM
	Path   string // the name the base RIM gives the support RIM
	Source string // where it was loaded from
	Log    *eventlog.Log
}

// Model is the platform model the support RIM is for.
func (s *SupportRIM) Model() string {
	if s.Base.RIM != nil {
		return s.Base.RIM.PlatformModelName
	}
	return ""
}

// AddPCRs indexes the PCR reference values of a verified CoRIM.
func (x *Index) AddPCRs(r PCRReference) {
	if len(r.PCRs) > 0 {
		x.pcrRefs = append(x.pcrRefs, r)
		vals, _ := r.PCRs.MarshalJSON()
		x.item("pcrs", []byte(r.ID), []byte(r.Vendor), []byte(r.Model), vals)
	}
}

// HasPCRs reports whether the CoRIM id is indexed.
func (x *Index) HasPCRs(id string) bool {
	for _, r := range x.pcrRefs {
		if r.ID == id {
			return true
		}
	}
	return false
}

// PCRReferences returns the PCR reference values for model (every one
// when model is "").
func (x *Index) PCRReferences(model string) []PCRReference {
	var out []PCRReference
	for _, r := range x.pcrRefs {
		if model == "" || r.Model == model {
			out = append(out, r)
		}
	}
	return out
}

// Bases returns the indexed base RIMs whose reference values are in a
// support RIM (payload type indirect or hybrid).
func (x *Index) Bases() []*Tag {
	var out []*Tag
	for _, id := range x.order {
		t := x.tags[id]
		if t.RIM != nil && t.RIM.PayloadType != nil && *t.RIM.PayloadType != PayloadDirect {
			out = append(out, t)
		}
	}
	return out
}

// HasSupport reports whether base's support RIM at path is indexed.
func (x *Index) HasSupport(base *Tag, path string) bool {
	for _, s := range x.supports {
		if s.Base == base && s.Path == path {
			return true
		}
	}
	return false
}

// AddSupport indexes raw as the support RIM that base (an indexed, verified
// base RIM) lists under path: its hash must be the one base gives, in every
// algorithm, and it must parse as a TCG event log.
func (x *Index) AddSupport(base *Tag, path, source string, raw []byte) error {
	if err := base.SupportRIMMatches(path, raw); err != nil {
		return err
	}
	l, err := eventlog.ParseTCG(raw)
	if err != nil {
		return fmt.Errorf("support RIM %s: %w", path, err)
	}
	x.supports = append(x.supports, SupportRIM{Base: base, Path: path, Source: source, Log: l})
	x.item("support", []byte(base.TagID.String()), []byte(path), raw)
	return nil
}

// Supports returns the support RIMs for model (every one when model is "").
func (x *Index) Supports(model string) []SupportRIM {
	var out []SupportRIM
	for _, s := range x.supports {
		if model == "" || s.Model() == model {
			out = append(out, s)
		}
	}
	return out
}

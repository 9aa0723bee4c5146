package verifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/evidence"
	"github.com/openriv/riv/pkg/rim"
)

// rimVerdict is what the verifier concluded of one signed RIM from the
// bytes alone (their SHA-256 is the key): verified against the vendor
// anchors and indexed, or why not. What depends on a device — the digest
// it lists, the product it is — is judged per device and never cached
// here, so one lying device cannot change another's verdict.
type rimVerdict struct {
	ok      bool
	reason  string // why not ok
	name    string // the file name it first came under
	product string // the product it is for ("" for any)
}

// Bounds of what in-band RIMs may make the verifier hold and fetch.
const (
	// maxInbandComponents bounds the components whose RIMs one poll
	// fetches; the rest come in the next polls.
	maxInbandComponents = 256
	// rimBatchBytes is how many bytes of RIMs (by the sizes the device
	// lists) one fetch asks for: a reply stays well under the session's
	// message limit.
	rimBatchBytes = 8 << 20
)

// RIMIndex returns the reference values appraisals use now: the policy's
// RIMs and every in-band RIM verified so far.
func (v *Verifier) RIMIndex() *rim.Index {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.rims
}

// SetRIMs replaces the policy's reference values (a reload of the RIM
// directory). The in-band RIMs verified so far are forgotten and fetched
// again from the devices that carry them.
func (v *Verifier) SetRIMs(idx *rim.Index) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.Policy.RIMs, v.rims, v.rimSeen = idx, idx, map[string]rimVerdict{}
}

// inbandRIMs fetches the RIMs the device lists that the verifier has not
// seen, by tag-id, and accepts each only after checking that its bytes
// hash to the digest listed, that it verifies against the vendor anchors
// (Policy.RIMAnchors) and that it is for this device's product; an
// unsigned support RIM counts only as the log a verified base RIM lists
// by hash. Accepted RIMs join the verifier's index (a copy swapped in,
// shared by every later appraisal: a RIM is the vendor's, and an index
// lookup only ever returns the RIMs of the device's own product). A RIM
// that fails is a contraindicated claim on the device (p.dev) with the
// reason, on every poll while the device lists it. Without anchors
// nothing is fetched: an unverifiable RIM would be no evidence.
func (p *poll) inbandRIMs(ctx context.Context) {
	v := p.v
	if p.sup.InventoryErr != nil && v.Policy.RIMAnchors != nil {
		p.dev.Reasons = append(p.dev.Reasons, clip(fmt.Sprintf("configuration: the device's inventory could not be read: %v", p.sup.InventoryErr)))
		// Hiding the inventory hides none of the RIMs found bad before.
		v.mu.Lock()
		if st := v.state[p.device]; st != nil {
			for _, reason := range st.inbandBad {
				p.devClaim(reason)
			}
		}
		v.mu.Unlock()
	}
	src, ok := p.s.(evidence.RIMSource)
	if !ok || v.Policy.RIMAnchors == nil || len(p.sup.Inventory) == 0 {
		return
	}
	listed := map[string]bool{}
	var want [][]string // batches of tag-ids
	var batch []string
	var batchBytes uint64
	n := 0
	v.mu.Lock()
	st := v.state[p.device]
	for _, c := range p.sup.Inventory {
		fetch := false
		var size uint64
		for _, ref := range c.RIMs {
			d := strings.ToLower(ref.Digest)
			listed[d] = true
			if st != nil && st.inbandBad[d] != "" {
				p.devClaim(st.inbandBad[d])
			} else if reason := st.pendingFor(d, v.rims); reason != "" {
				p.devClaim(reason)
			} else if vd, seen := v.rimSeen[d]; seen {
				p.judge(vd)
			} else {
				fetch = true
				size += ref.Size
			}
		}
		if !fetch || n == maxInbandComponents {
			continue
		}
		n++
		if len(batch) > 0 && batchBytes+size > rimBatchBytes {
			want, batch, batchBytes = append(want, batch), nil, 0
		}
		batch, batchBytes = append(batch, c.TagID), batchBytes+size
	}
	v.mu.Unlock()
	if len(batch) > 0 {
		want = append(want, batch)
	}
	var files []evidence.RIMFile
	total := 0
	for _, b := range want {
		got, err := src.RIMs(ctx, b)
		if err != nil {
			// The device did not deliver what it lists (or NACM hides
			// it): the appraisal goes on with the RIMs the verifier has.
			p.dev.Reasons = append(p.dev.Reasons, fmt.Sprintf("configuration: the device's RIMs could not be fetched: %v", err))
			break
		}
		files = append(files, got...)
		for _, f := range got {
			total += len(f.Content)
		}
		if total > maxInbandBytes {
			// The rest in the next polls.
			break
		}
	}
	if len(files) == 0 {
		return
	}
	// Check the bytes against the digests listed, then verify the signed
	// ones, outside the lock (chain building costs milliseconds).
	type signedRIM struct {
		f   rimFile
		d   string
		res *rim.Result
		err error
	}
	var signed []signedRIM
	var support []rimFile
	bad := map[string]string{} // by the digest listed: this device's
	for _, f := range files {
		got := hexSum(f.Content)
		name := f.FileName
		if name == "" {
			name = got[:16]
		}
		name = clip(name)
		listedDigest := strings.ToLower(f.Digest)
		if !listed[listedDigest] {
			p.devClaim(fmt.Sprintf("configuration: the device served a RIM %q it does not list", name))
			continue
		}
		if listedDigest != got {
			reason := fmt.Sprintf("configuration: the device's RIM %q of component %q hashes to %s, not the digest %s it lists", name, clip(f.TagID), got[:16], listedDigest[:16])
			bad[listedDigest] = reason
			p.devClaim(reason)
			continue
		}
		rf := rimFile{name: name, raw: f.Content}
		// What a RIM is comes from its bytes, not the media type the
		// device gives: a signed RIM is a COSE_Sign1, anything else can
		// only be a support RIM.
		if _, err := rim.DecodeCOSE(f.Content); err == nil {
			if len(signed) == maxVerifiesPerPoll {
				continue // the next poll
			}
			res, err := rim.Verify(f.Content, rim.VerifyOptions{Roots: v.Policy.RIMAnchors})
			signed = append(signed, signedRIM{rf, got, res, err})
		} else {
			support = append(support, rf)
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	ed := &indexEdit{base: v.rims}
	// Verdicts that follow from the bytes alone are kept for the fleet,
	// within a bound; what depends on what the verifier has indexed (a
	// tag-id taken by another tag, a support RIM no base lists yet) is
	// judged again when the index has changed.
	remember := func(d string, vd rimVerdict) {
		vd.reason = clip(vd.reason)
		if len(v.rimSeen) < maxRIMVerdicts {
			v.rimSeen[d] = vd
		}
	}
	pending := map[string]string{}
	for _, s := range signed {
		if vd, seen := v.rimSeen[s.d]; seen {
			// Another poll verified the same bytes meanwhile.
			p.judge(vd)
			continue
		}
		vd := rimVerdict{name: s.f.name}
		switch {
		case s.err != nil:
			vd.reason = fmt.Sprintf("configuration: the device's RIM %q is not signed by a trusted vendor: %v", s.f.name, s.err)
			remember(s.d, vd)
		case known(ed.cur(), s.res):
			// The same reference values as a RIM indexed already (another
			// copy, or the same tag re-signed): nothing to add.
			vd.ok, vd.product = true, productOf(s.res)
			remember(s.d, vd)
		default:
			if err := indexVerified(ed.add(), s.f, s.res); err != nil {
				vd.reason = clip(fmt.Sprintf("configuration: the device's RIM %q: %v", s.f.name, err))
				pending[s.d] = vd.reason
			} else {
				vd.ok, vd.product = true, productOf(s.res)
				remember(s.d, vd)
			}
		}
		p.judge(vd)
	}
	// A support RIM is unsigned: it counts only as the log a verified
	// base RIM lists by hash — one verified now, or before from another
	// device whose support RIM did not come with it.
	for _, f := range support {
		d := hexSum(f.raw)
		attached, err := attachPending(ed, f)
		switch {
		case err != nil:
			pending[d] = clip(fmt.Sprintf("configuration: the device's support RIM %q: %v", f.name, err))
			p.devClaim(pending[d])
		case attached:
			remember(d, rimVerdict{ok: true, name: f.name})
		default:
			pending[d] = fmt.Sprintf("configuration: the device's RIM %q is not signed, and no signed base RIM lists it as its support RIM", f.name)
			p.devClaim(pending[d])
		}
	}
	if ed.idx != nil {
		v.rims = ed.idx
	}
	if st := v.state[p.device]; st != nil {
		// A digest the device lied about stays its own until it reboots;
		// what waits on the index is judged again once the index changed.
		if len(bad) > 0 && st.inbandBad == nil {
			st.inbandBad = map[string]string{}
		}
		for d, reason := range bad {
			if len(st.inbandBad) < maxDeviceBad {
				st.inbandBad[d] = clip(reason)
			}
		}
		if len(pending) > 0 {
			st.inbandPending, st.inbandPendingIdx = pending, v.rims
		}
	}
}

// known reports whether a verified RIM's reference values are indexed
// already: its tag-id with the same references, or the same CoRIM.
func known(idx *rim.Index, r *rim.Result) bool {
	switch {
	case r.Tag != nil:
		old := idx.Tag(r.Tag.TagID.String())
		return old != nil && sameReferences(old, r.Tag)
	case r.PCRRef != nil:
		return idx.HasPCRs(r.PCRRef.ID)
	}
	return false
}

// indexEdit is a copy-on-write change of the verifier's index (v.mu
// held): base is cloned at the first addition, and the caller swaps idx
// in when there is one. Appraisals in progress keep reading base.
type indexEdit struct {
	base, idx *rim.Index
}

// cur is the index as edited so far.
func (e *indexEdit) cur() *rim.Index {
	if e.idx != nil {
		return e.idx
	}
	return e.base
}

// add is the clone to add to.
func (e *indexEdit) add() *rim.Index {
	if e.idx == nil {
		e.idx = e.base.Clone()
	}
	return e.idx
}

// attachPending finds the base RIMs in the edited index that list f as
// their support RIM (by size and hash) and, for each that has none yet,
// indexes it in the clone. It reports whether a base lists f.
func attachPending(ed *indexEdit, f rimFile) (bool, error) {
	listedBy := false
	for _, b := range ed.cur().Bases() {
		for _, fh := range b.Files() {
			if !fh.Alg.IsHash() || (fh.Size > 0 && int64(len(f.raw)) != fh.Size) || string(fh.Alg.Sum(f.raw)) != string(fh.Hash) {
				continue
			}
			listedBy = true
			if ed.cur().HasSupport(b, fh.Path) {
				continue
			}
			// Tags are shared between an index and its clones.
			if err := ed.add().AddSupport(b, fh.Path, f.name, f.raw); err != nil {
				return true, err
			}
		}
	}
	return listedBy, nil
}

// More bounds on what a device can make the verifier hold or do.
const (
	// maxInbandBytes bounds the RIM bytes one poll fetches.
	maxInbandBytes = 64 << 20
	// maxRIMVerdicts bounds the verdicts kept for the fleet: beyond it a
	// RIM is verified again each poll it is listed in.
	maxRIMVerdicts = 1 << 16
	// maxVerifiesPerPoll bounds the signed RIMs one poll verifies.
	maxVerifiesPerPoll = 256
	// maxDeviceBad bounds the RIMs of one device remembered as bad.
	maxDeviceBad = 1024
)

// clip bounds text the device chose (a name, an error quoting its
// certificate), for a reason that is kept.
func clip(s string) string {
	if len(s) > 256 {
		return s[:256] + "…"
	}
	return s
}

// AddRIM verifies a RIM uploaded by an operator (the API's POST /rims)
// and adds it to the reference values: a signed CoSWID or CoRIM, verified
// against the vendor anchors (Policy.RIMAnchors), or a support RIM that a
// verified base RIM lists by hash. It reports whether the RIM added
// anything (false: its reference values were there already).
func (v *Verifier) AddRIM(name string, raw []byte) (bool, error) {
	if v.Policy.RIMAnchors == nil {
		return false, errors.New("this verifier has no RIM anchors to verify an uploaded RIM against")
	}
	name = clip(name)
	var res *rim.Result
	if _, err := rim.DecodeCOSE(raw); err == nil {
		if res, err = rim.Verify(raw, rim.VerifyOptions{Roots: v.Policy.RIMAnchors}); err != nil {
			return false, fmt.Errorf("not signed by a trusted vendor: %w", err)
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	ed := &indexEdit{base: v.rims}
	if res != nil {
		if known(ed.cur(), res) {
			return false, nil
		}
		if err := indexVerified(ed.add(), rimFile{name: name, raw: raw}, res); err != nil {
			return false, err
		}
		v.rimSeen[hexSum(raw)] = rimVerdict{ok: true, name: name, product: productOf(res)}
	} else {
		listed, err := attachPending(ed, rimFile{name: name, raw: raw})
		if err != nil {
			return false, err
		}
		if !listed {
			return false, errors.New("not signed, and no signed base RIM lists it as its support RIM")
		}
	}
	if ed.idx == nil {
		return false, nil
	}
	v.rims = ed.idx
	return true, nil
}

// judge claims what a cached verdict says about this device: a RIM that
// failed, or one for another product than the device's.
func (p *poll) judge(vd rimVerdict) {
	switch {
	case !vd.ok:
		p.devClaim(vd.reason)
	case vd.product != "" && vd.product != p.model:
		model := p.model
		if model == "" {
			model = "(its certificates name none)"
		}
		p.devClaim(fmt.Sprintf("configuration: the device's RIM %q is for the product %q, not this device's %q", vd.name, vd.product, model))
	}
}

// devClaim is a contraindicated configuration claim on the device as a
// whole (not on one of its TPMs).
func (p *poll) devClaim(reason string) {
	p.dev.claim(&p.dev.Vector.Configuration, ear.UnexpectedEvidenceClaim, reason)
}

// DefaultInventoryRecheck is how old a device's inventory may be before
// a poll that found something unrecognized fetches it again: software
// installed since brings its RIMs, which the next poll then uses, instead
// of waiting for the hourly refresh of the device's certificates.
const DefaultInventoryRecheck = time.Minute

// recheckInventory makes the next poll fetch the device's inventory
// (with its certificates) when this one found something no RIM vouches
// for and the inventory it used is older than Verifier.InventoryRecheck.
func (p *poll) recheckInventory() {
	if len(p.sup.Inventory) == 0 || p.v.Policy.RIMAnchors == nil {
		return
	}
	unrecognized := false
	for _, c := range vectorClaims(&p.r.Vector) {
		if c.IsWarning() || c.IsContraindicated() {
			unrecognized = true
		}
	}
	if !unrecognized {
		return
	}
	after := p.v.InventoryRecheck
	if after == 0 {
		after = DefaultInventoryRecheck
	}
	p.v.mu.Lock()
	defer p.v.mu.Unlock()
	if st := p.v.state[p.device]; st != nil && time.Since(st.supTime) > after {
		st.supTime = time.Time{}
	}
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// productOf is the product a verified RIM is for: a CoSWID's
// software-meta product (or its TCG platform model), a CoRIM's platform
// model.
func productOf(r *rim.Result) string {
	switch {
	case r.Tag != nil:
		if p := r.Tag.Product(); p != "" {
			return p
		}
		if r.Tag.RIM != nil {
			return r.Tag.RIM.PlatformModelName
		}
	case r.PCRRef != nil:
		return r.PCRRef.Model
	}
	return ""
}

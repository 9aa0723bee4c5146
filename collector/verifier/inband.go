package verifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/pkg/rim"
)

// RIMSource is a session that can fetch the RIMs a device carries
// (riv-software-inventory): RFC 9683 Step 0B, the Verifier gets the
// vendor's signed reference values from the device it appraises.
type RIMSource interface {
	RIMs(ctx context.Context, tagIDs []string) ([]netconf.RIMFile, error)
}

var _ RIMSource = (*netconf.Client)(nil)

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
	// maxSupportPool bounds the unsigned support RIMs kept until a base
	// RIM lists them (the vendor's reference logs, a few KiB each).
	maxSupportPool = 4096
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
	v.Policy.RIMs, v.rims, v.rimSeen, v.supportPool = idx, idx, map[string]rimVerdict{}, map[string]rimFile{}
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
	src, ok := p.s.(RIMSource)
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
			} else if vd, seen := v.rimSeen[d]; seen {
				p.judge(vd)
			} else if _, pooled := v.supportPool[d]; !pooled {
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
	var files []netconf.RIMFile
	for _, b := range want {
		got, err := src.RIMs(ctx, b)
		if err != nil {
			// The device did not deliver what it lists (or NACM hides
			// it): the appraisal goes on with the RIMs the verifier has.
			p.dev.Reasons = append(p.dev.Reasons, fmt.Sprintf("configuration: the device's RIMs could not be fetched: %v", err))
			break
		}
		files = append(files, got...)
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
	bad := map[string]string{}
	for _, f := range files {
		got := hexSum(f.Content)
		name := f.FileName
		if name == "" {
			name = got[:16]
		}
		if !listed[strings.ToLower(f.Digest)] || !strings.EqualFold(f.Digest, got) {
			reason := fmt.Sprintf("configuration: the device's RIM %q of component %q hashes to %s, not the digest %.64q it lists", name, f.TagID, got[:16], f.Digest)
			bad[strings.ToLower(f.Digest)] = reason
			p.devClaim(reason)
			continue
		}
		rf := rimFile{name: name, raw: f.Content}
		// What a RIM is comes from its bytes, not the media type the
		// device gives: a signed RIM is a COSE_Sign1, anything else can
		// only be a support RIM.
		if _, err := rim.DecodeCOSE(f.Content); err == nil {
			res, err := rim.Verify(f.Content, rim.VerifyOptions{Roots: v.Policy.RIMAnchors})
			signed = append(signed, signedRIM{rf, got, res, err})
		} else {
			support = append(support, rf)
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if st := v.state[p.device]; st != nil && len(bad) > 0 {
		if st.inbandBad == nil {
			st.inbandBad = map[string]string{}
		}
		for d, reason := range bad {
			st.inbandBad[d] = reason
		}
	}
	var idx *rim.Index // a clone, made when something is added
	add := func() *rim.Index {
		if idx == nil {
			idx = v.rims.Clone()
		}
		return idx
	}
	for _, f := range support {
		d := hexSum(f.raw)
		if _, ok := v.supportPool[d]; !ok && len(v.supportPool) < maxSupportPool {
			v.supportPool[d] = f
		}
	}
	var bases []*rim.Tag
	for _, s := range signed {
		if _, seen := v.rimSeen[s.d]; seen {
			// Another poll verified the same bytes meanwhile.
			p.judge(v.rimSeen[s.d])
			continue
		}
		vd := rimVerdict{name: s.f.name}
		if s.err != nil {
			vd.reason = fmt.Sprintf("configuration: the device's RIM %q is not signed by a trusted vendor: %v", s.f.name, s.err)
		} else if err := indexVerified(add(), s.f, s.res); err != nil {
			vd.reason = fmt.Sprintf("configuration: the device's RIM %q: %v", s.f.name, err)
		} else {
			vd.ok, vd.product = true, productOf(s.res)
			if s.res.Tag != nil && s.res.Tag.RIM != nil {
				bases = append(bases, idx.Tag(s.res.Tag.TagID.String()))
			}
		}
		v.rimSeen[s.d] = vd
		p.judge(vd)
	}
	// A support RIM is unsigned: it counts only as the log a verified
	// base RIM lists by hash, from this device or an earlier one.
	var pool []rimFile
	for _, f := range v.supportPool {
		pool = append(pool, f)
	}
	for _, b := range bases {
		if b == nil {
			continue
		}
		if err := attachSupports(idx, []*rim.Tag{b}, pool); err != nil {
			p.devClaim("configuration: the device's RIMs: " + err.Error())
		}
	}
	if idx != nil {
		v.rims = idx
	}
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

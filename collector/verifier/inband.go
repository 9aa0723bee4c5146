package verifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
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

// Media types of the RIMs a device carries (docs/software-inventory.md).
const (
	mediaCoSWID  = "application/swid+cose"
	mediaCoRIM   = "application/rim+cose"
	mediaSupport = "application/vnd.tcg.pcclient-rim-support"
)

// rimVerdict is what the verifier concluded about one RIM it fetched,
// cached by the digest of its bytes: a good RIM is in the index, a bad
// one is not fetched again and its reason is given on every poll of a
// device that still carries it.
type rimVerdict struct {
	ok     bool
	reason string
}

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
// (Policy.RIMAnchors), and that it is for this device's product. The
// accepted ones join the verifier's index (a copy swapped in, shared by
// every later appraisal: a RIM is the vendor's, not the device's); a
// RIM that fails is a contraindicated claim with the reason. Without
// anchors nothing is fetched: an unverifiable RIM would be no evidence.
func (p *poll) inbandRIMs(ctx context.Context) error {
	v, r, tv := p.v, p.r, &p.r.Vector
	src, ok := p.s.(RIMSource)
	if !ok || v.Policy.RIMAnchors == nil || len(p.sup.Inventory) == 0 {
		return nil
	}
	listed := map[string]netconf.RIMRef{} // by digest
	var want []string
	v.mu.Lock()
	for _, c := range p.sup.Inventory {
		fetch := false
		for _, ref := range c.RIMs {
			d := strings.ToLower(ref.Digest)
			listed[d] = ref
			if vd, seen := v.rimSeen[productKey(d, p.model)]; seen {
				// A RIM for another product is that for this device's
				// model only: a device of the product it is for may use it.
				r.claim(&tv.Configuration, ear.UnexpectedEvidenceClaim, vd.reason)
			} else if vd, seen := v.rimSeen[d]; !seen {
				fetch = true
			} else if !vd.ok {
				r.claim(&tv.Configuration, ear.UnexpectedEvidenceClaim, vd.reason)
			}
		}
		if fetch && len(want) < maxInbandComponents {
			want = append(want, c.TagID)
		}
	}
	v.mu.Unlock()
	if len(want) == 0 {
		return nil
	}
	files, err := src.RIMs(ctx, want)
	if err != nil {
		return fmt.Errorf("%s: in-band RIMs: %w", p.device, err)
	}
	var signed, support []rimFile
	verdicts := map[string]rimVerdict{}
	fail := func(d, reason string) {
		verdicts[d] = rimVerdict{reason: reason}
		r.claim(&tv.Configuration, ear.UnexpectedEvidenceClaim, reason)
	}
	for _, f := range files {
		sum := sha256.Sum256(f.Content)
		got := hex.EncodeToString(sum[:])
		name := f.FileName
		if name == "" {
			name = f.Digest
		}
		what := fmt.Sprintf("in-band RIM %s of component %s", name, f.TagID)
		if _, ok := listed[strings.ToLower(f.Digest)]; !ok || !strings.EqualFold(f.Digest, got) {
			fail(got, fmt.Sprintf("configuration: %s: its bytes hash to %s, not the digest %s the device lists", what, got[:16], f.Digest))
			continue
		}
		if _, seen := verdicts[got]; seen {
			continue
		}
		rf := rimFile{name: name, raw: f.Content}
		switch f.MediaType {
		case mediaSupport:
			support = append(support, rf)
			verdicts[got] = rimVerdict{ok: true}
		case mediaCoSWID, mediaCoRIM:
			signed = append(signed, rf)
			verdicts[got] = rimVerdict{ok: true}
		default:
			fail(got, fmt.Sprintf("configuration: %s: media type %q is not a RIM this verifier reads", what, f.MediaType))
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	idx := v.rims.Clone()
	var bases []*rim.Tag
	for _, f := range signed {
		d := hexSum(f.raw)
		res, err := rim.Verify(f.raw, rim.VerifyOptions{Roots: v.Policy.RIMAnchors})
		if err == nil {
			if prod := productOf(res); prod != "" && p.model != "" && prod != p.model {
				delete(verdicts, d)
				fail(productKey(d, p.model), fmt.Sprintf("configuration: in-band RIM %s is for the product %q, not this device's %q", f.name, prod, p.model))
				continue
			}
			if err := indexVerified(idx, f, res); err != nil {
				fail(d, fmt.Sprintf("configuration: in-band RIM %s: %v", f.name, err))
				continue
			}
		}
		if err != nil {
			fail(d, fmt.Sprintf("configuration: in-band RIM %s: not signed by a trusted vendor: %v", f.name, err))
			continue
		}
		if res.Tag != nil && res.Tag.RIM != nil {
			bases = append(bases, idx.Tag(res.Tag.TagID.String()))
		}
	}
	// A support RIM is unsigned: it counts only as the log a verified
	// base RIM lists by hash.
	if err := attachSupports(idx, slices.DeleteFunc(bases, func(t *rim.Tag) bool { return t == nil }), support); err != nil {
		r.claim(&tv.Configuration, ear.UnexpectedEvidenceClaim, "configuration: in-band RIMs: "+err.Error())
	}
	for d, vd := range verdicts {
		v.rimSeen[d] = vd
	}
	v.rims = idx
	return nil
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
	p.v.mu.Lock()
	defer p.v.mu.Unlock()
	after := p.v.InventoryRecheck
	if after == 0 {
		after = DefaultInventoryRecheck
	}
	if st := p.v.state[p.device]; st != nil && time.Since(st.supTime) > after {
		st.supTime = time.Time{}
	}
}

// maxInbandComponents bounds the components whose RIMs one poll fetches;
// the rest come in the next polls.
const maxInbandComponents = 256

// productKey keys the verdict on a RIM for another product than model's.
func productKey(digest, model string) string { return digest + "|" + model }

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

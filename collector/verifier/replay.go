package verifier

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/veraison/ear"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
	"github.com/openriv/riv/pkg/rim"
)

// replay replays the bios log and the new runtime entries in every quoted
// bank — every value re-derived from the data it covers where the specs
// define it so (eventlog.Replay never extends a reported IMA template
// digest) — and checks the result against the quoted PCR digest, in the
// order of the TPMS_ATTEST selection (TPM 2.0 Part 3 §18.4: the TPM hashes
// the PCRs in the order of the selection it quoted, which need not be the
// order asked for or the order of unsigned-pcr-values). Only then does
// what the logs say count: the verified entries are recorded and
// appraised. False means a claim ended the poll.
func (p *poll) replay() bool {
	v, st, banks := p.v, p.st, p.banks
	r, tv := p.r, &p.r.Vector
	switch {
	case p.bios != nil:
		bv, err := p.bios.Replay(eventlog.ReplayOptions{Banks: banks})
		if err != nil {
			r.claim(&tv.Executables, ear.UnexpectedEvidenceClaim, "bios log: "+err.Error())
			return false
		}
		p.bv = bv
	case p.biosKept:
		p.bv = st.biosVals.values()
	}
	types := slices.Sorted(maps.Keys(p.runtime))
	p.rv = map[string]pcr.Values{}
	for _, t := range types {
		// Run-time entries belong in the run-time PCR, which is quoted:
		// an entry reported in another PCR is bound by nothing, and
		// would let a device whose NOS measured nothing (PCR 10 at its
		// reset value) claim files approved at run time.
		for _, e := range p.runtime[t].Events {
			if e.PCR != runtimePCR {
				r.claim(&tv.Executables, ear.UnexpectedEvidenceClaim, fmt.Sprintf("%s log: entry %d is in PCR %d; run-time measurements go to PCR %d", t, e.Seq, e.PCR, runtimePCR))
				return false
			}
		}
		vals, err := st.runtimeFor(t, banks, p.rims, p.rimModel()).replay(p.runtime[t], banks)
		if err != nil {
			r.claim(&tv.Executables, ear.UnexpectedEvidenceClaim, t+" log: "+err.Error())
			return false
		}
		p.rv[t] = vals
	}
	// Two logs extending one PCR cannot be replayed: their interleaving
	// is unknown.
	owner := map[int]string{}
	for _, t := range append([]string{logBIOS}, types...) {
		vals := p.bv
		if t != logBIOS {
			vals = p.rv[t]
		}
		for i := range vals[banks[0]] {
			if o, dup := owner[i]; dup {
				r.claim(&tv.Executables, ear.UnexpectedEvidenceClaim, fmt.Sprintf("the %s and %s logs both extend PCR %d: their order cannot be replayed", o, t, i))
				return false
			}
			owner[i] = t
		}
	}
	vals := pcr.Values{}
	merge := func() {
		for _, s := range p.sel {
			for _, i := range s.PCRs {
				var val []byte
				if t, ok := owner[i]; ok && t != logBIOS {
					val = p.rv[t].Get(s.Bank, i)
				} else {
					val = p.bv.Get(s.Bank, i)
				}
				if val == nil {
					val = pcr.Initial(s.Bank, i)
				}
				vals.Set(s.Bank, i, val)
			}
		}
	}
	quoted := func() bool {
		d, err := quote.PCRDigest(p.sig.Hash, p.attest.Quote.Selection, vals)
		return err == nil && bytes.Equal(d, p.attest.Quote.PCRDigest)
	}
	merge()
	ok := quoted()
	if !ok {
		// Entries measured between the quote and the log retrieval are
		// in the log but not in the quote: accept the longest prefix the
		// quote covers; the rest is fetched again next poll. With several
		// runtime logs growing at once the search would multiply; the
		// next poll settles it.
		var growing []string
		for _, t := range types {
			if len(p.runtime[t].Events) > 0 {
				growing = append(growing, t)
			}
		}
		if len(growing) == 1 {
			t := growing[0]
			l, full := p.runtime[t], p.rv[t]
			if k, pv := st.runtime.of(t).coveredPrefix(l, banks, func(nv pcr.Values) bool {
				p.rv[t] = nv
				merge()
				return quoted()
			}); k >= 0 {
				c := *l
				c.Events = l.Events[:k]
				p.runtime[t], p.rv[t], ok = &c, pv, true
			} else {
				p.rv[t] = full
			}
			merge()
		}
	}
	if !ok {
		reason := "the logs do not replay to the quoted PCRs"
		if diff := vals.Diff(p.quote.Unsigned); len(diff) > 0 {
			reason += " (" + strings.Join(diff, "; ") + ")"
		}
		r.claim(&tv.Executables, ear.ContraindicatedRuntimeClaim, reason)
		return false
	}
	// Bound by the quote: record it.
	p.quotedVals = vals
	if p.bios != nil {
		st.boot, st.bootRIMs, st.bootDigest = nil, nil, [32]byte{}
		st.biosVals, st.biosBanks = keepPCRs(p.bv), slices.Clone(banks)
		if n := len(p.bios.Events); n > 0 {
			st.biosSeen, st.biosLast = true, uint64(p.bios.Events[n-1].Seq)
		}
	}
	for _, t := range types {
		l := p.runtime[t]
		// The logged template digests were not used; one that is not the
		// hash of its entry's data is a lie worth naming.
		l.CheckDigests(l.Banks...)
		st.runtime.of(t).advance(l, p.rv[t], &v.Policy)
	}
	return true
}

// runtimeFor returns the state of runtime log t, fresh when what was
// verified before was for other banks or RIMs.
func (st *deviceState) runtimeFor(t string, banks []alg.ID, rims *rim.Index, model string) *runtimeState {
	rs := st.runtime.of(t)
	if rs == nil || !rs.matches(banks, rims) || rs.model != model {
		rs = &runtimeState{logType: t, banks: slices.Clone(banks), rims: rims, model: model}
		st.runtime.set(rs)
	}
	return rs
}

package verifier

import (
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// keptPCRs are PCR values as a device's state keeps them between polls:
// the replay of its bios log, and of each runtime log up to its last
// verified entry. As a pcr.Values they cost a map per bank and an
// allocation per value, about 1.7 KB a device for its ten boot PCRs and
// PCR 10 (BenchmarkStatePerDevice); here each bank's values are back to
// back in one slice. A poll expands them (values) to replay from and
// keeps what it replayed to (keepPCRs). Values this form cannot hold (a
// PCR index past 31, a value not of its bank's size) are kept as they
// are; either way values returns what keepPCRs was given.
type keptPCRs struct {
	banks []keptBank // nil for nil values
	other pcr.Values // the values, when banks cannot hold them
}

type keptBank struct {
	bank alg.ID
	pcrs uint32 // bit i: PCR i has a value
	vals []byte // the values, ascending by PCR, bank.Size() bytes each
}

func keepPCRs(v pcr.Values) keptPCRs {
	if v == nil {
		return keptPCRs{}
	}
	banks := make([]keptBank, 0, len(v))
	for b, m := range v {
		kb := keptBank{bank: b}
		size := b.Size()
		for i, val := range m {
			if i < 0 || i > 31 || len(val) != size || size == 0 {
				return keptPCRs{other: v}
			}
			kb.pcrs |= 1 << i
		}
		if len(m) > 0 {
			kb.vals = make([]byte, 0, len(m)*size)
			for i := range 32 {
				if kb.pcrs&(1<<i) != 0 {
					kb.vals = append(kb.vals, m[i]...)
				}
			}
		}
		banks = append(banks, kb)
	}
	return keptPCRs{banks: banks}
}

// values returns the kept values, to be read (a value is shared with
// the kept ones when they could not be compacted).
func (k keptPCRs) values() pcr.Values {
	if k.other != nil || k.banks == nil {
		return k.other
	}
	out := make(pcr.Values, len(k.banks))
	for _, kb := range k.banks {
		m := make(map[int][]byte, len(kb.vals)/max(1, kb.bank.Size()))
		size, off := kb.bank.Size(), 0
		for i := range 32 {
			if kb.pcrs&(1<<i) != 0 {
				m[i] = kb.vals[off : off+size : off+size]
				off += size
			}
		}
		out[kb.bank] = m
	}
	return out
}

package eventlog

import (
	"fmt"
	"hash"

	"github.com/openriv/riv/pkg/alg"
)

// hashers keeps one hash.Hash and one template hasher per bank, so
// checking or replaying a log allocates per bank, not per event.
type hashers struct {
	h   map[alg.ID]hash.Hash
	t   map[alg.ID]*templateHasher
	buf [64]byte
}

func newHashers() *hashers {
	return &hashers{h: map[alg.ID]hash.Hash{}, t: map[alg.ID]*templateHasher{}}
}

// sum returns H_b(data) in a buffer valid until the next call.
func (hs *hashers) sum(b alg.ID, data []byte) []byte {
	h := hs.h[b]
	if h == nil {
		var err error
		if h, err = b.New(); err != nil {
			return nil
		}
		hs.h[b] = h
	}
	h.Reset()
	h.Write(data)
	return h.Sum(hs.buf[:0])
}

// template returns the IMA template hash of e in bank b.
func (hs *hashers) template(b alg.ID, e *Event) []byte {
	t := hs.t[b]
	if t == nil {
		var err error
		if t, err = newTemplateHasher(b); err != nil {
			return nil
		}
		hs.t[b] = t
	}
	return t.sum(e)
}

// CheckDigests recomputes, in banks (all the log's banks if none), every
// digest the specs define as a hash of the event's own data — TCG
// separators, EFI actions, GPT events, H-CRTM events, Secure Boot
// configuration and boot variables (PFP §10.4.4); IMA template hashes;
// CEL content — and sets Event.Anomaly where it disagrees: the event data
// then lies about what was measured. IMA violations (all-zero digests) are
// expected and not flagged. It returns the number of anomalous events.
//
// Parsing does not do this (it would hash every event in every bank); Verify
// does it for the banks it verifies.
func (l *Log) CheckDigests(banks ...alg.ID) int {
	if len(banks) == 0 {
		banks = l.Banks
	}
	hs := newHashers()
	n := 0
	for i := range l.Events {
		e := &l.Events[i]
		e.Anomaly = ""
		switch l.Format {
		case FormatTCG:
			checkDataDigest(e, hs, banks)
		case FormatIMA, FormatIMAASCII:
			for _, b := range banks {
				d := e.Digest(b)
				if d != nil && !isZero(d) && !bytesEqual(hs.template(b, e), d) {
					e.Anomaly = fmt.Sprintf("template digest %x is not the %v of the template data", d, b)
				}
			}
		default:
			checkCELDigest(e, hs, banks)
		}
		if e.Anomaly != "" {
			n++
		}
	}
	return n
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

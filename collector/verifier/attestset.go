package verifier

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"slices"

	"github.com/veraison/ear"

	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
)

// attestationSet says what a submod's verdict was reached on, after the
// attestation-set claims of draft-moriarty-attestationsets, so that a
// reader of the EAR can see what was checked: the policy set (MPS), the
// log entries used (LEM), the quoted PCR values (PCR), the evidence format
// (FMA), and a hash of the evidence bundle. It travels in the submod's
// ear.veraison.annotated-evidence claim under "riv.attestation-set" (the
// draft has no registered claim keys yet; the names are its
// abbreviations).
type attestationSet struct {
	MPS      string       `json:"mps"`
	LEM      []logEntries `json:"lem,omitempty"`
	PCR      pcr.Values   `json:"pcr,omitempty"` // as {"sha256":{"0":"<hex>"}}
	FMA      string       `json:"fma"`
	Evidence string       `json:"evidence,omitempty"` // "sha-256:" hex
}

// logEntries are the entries of one log this poll used: new ones (First
// to Last, Count of them, Digest over them), or Kept when the log did not
// grow and its earlier appraisal stood.
type logEntries struct {
	Log    string `json:"log"`
	First  *int   `json:"first,omitempty"`
	Last   *int   `json:"last,omitempty"`
	Count  int    `json:"count"`
	Kept   bool   `json:"kept,omitempty"`
	Digest string `json:"digest,omitempty"`
}

// evidenceFormat is RIV's evidence: an RFC 9684 tpm20-challenge-response
// quote (TPMS_ATTEST signed as TPMT_SIGNATURE) with its logs.
const evidenceFormat = "urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation:tpm20-quote"

// attestationSet builds the set of a poll whose quote the logs replayed
// to (vals, the quoted values; nil when the poll ended before).
func (p *poll) attestationSet(vals pcr.Values) *attestationSet {
	set := &attestationSet{MPS: p.v.Policy.Name, FMA: evidenceFormat}
	h := newFieldHash()
	if p.quote != nil {
		h.field(p.quote.Attest)
		h.field(p.quote.Sig)
	}
	if vals != nil {
		set.PCR = vals
		add := func(t string, l *eventlog.Log) {
			le := logEntries{Log: t}
			if l == nil {
				le.Kept = true
			} else {
				le.Count = len(l.Events)
				if le.Count > 0 {
					first, last := l.Events[0].Seq, l.Events[le.Count-1].Seq
					le.First, le.Last = &first, &last
				}
				d := entriesDigest(l)
				if le.Count > 0 {
					le.Digest = "sha-256:" + hex.EncodeToString(d[:])
				}
				h.field([]byte(t))
				h.field(d[:])
			}
			set.LEM = append(set.LEM, le)
		}
		switch {
		case p.bios != nil:
			add(logBIOS, p.bios)
		case p.biosKept:
			add(logBIOS, nil)
		}
		types := make([]string, 0, len(p.runtime))
		for t := range p.runtime {
			types = append(types, t)
		}
		slices.Sort(types)
		for _, t := range types {
			add(t, p.runtime[t])
		}
	}
	if p.quote != nil {
		set.Evidence = "sha-256:" + hex.EncodeToString(h.Sum(nil))
	}
	return set
}

// entriesDigest hashes what the verifier used of each entry: its
// position, PCR, type, digests and data.
func entriesDigest(l *eventlog.Log) [32]byte {
	h := newFieldHash()
	for i := range l.Events {
		e := &l.Events[i]
		binary.BigEndian.PutUint64(h.n[:8], uint64(e.Seq))
		binary.BigEndian.PutUint32(h.n[8:12], uint32(e.PCR))
		binary.BigEndian.PutUint32(h.n[12:], e.Type)
		h.Write(h.n[:])
		for _, d := range e.Digests {
			binary.BigEndian.PutUint16(h.n[:2], uint16(d.Alg))
			h.Write(h.n[:2])
			h.field(d.Value)
		}
		h.field(e.Data)
	}
	return [32]byte(h.Sum(nil))
}

// A fieldHash is a SHA-256 of length-prefixed fields. Its scratch bytes
// live with it: written through the hash.Hash interface, a local array
// escapes, one allocation per field and two per log entry.
type fieldHash struct {
	hash.Hash
	n [16]byte
}

func newFieldHash() *fieldHash { return &fieldHash{Hash: sha256.New()} }

// field hashes b after its length.
func (h *fieldHash) field(b []byte) {
	binary.BigEndian.PutUint32(h.n[:4], uint32(len(b)))
	h.Write(h.n[:4])
	h.Write(b)
}

// annotate puts the set into a submod.
func annotate(ap *ear.Appraisal, set *attestationSet) {
	if set == nil {
		return
	}
	m := map[string]any{"riv.attestation-set": set}
	ap.VeraisonAnnotatedEvidence = &m
}

// evidenceDigest is the device's evidence hash: its one TPM's, or a hash
// over its TPMs' in order.
func evidenceDigest(sets ...*attestationSet) []byte {
	var got []string
	for _, s := range sets {
		if s != nil && s.Evidence != "" {
			got = append(got, s.Evidence)
		}
	}
	switch len(got) {
	case 0:
		return nil
	case 1:
		b, _ := hex.DecodeString(got[0][len("sha-256:"):])
		return b
	}
	h := newFieldHash()
	for _, g := range got {
		h.field([]byte(g))
	}
	return h.Sum(nil)
}

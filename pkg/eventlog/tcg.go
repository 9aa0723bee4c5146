package eventlog

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/openriv/riv/internal/wire"
	"github.com/openriv/riv/pkg/alg"
)

const (
	specIDSig03 = "Spec ID Event03\x00"
	specIDSig00 = "Spec ID Event00\x00"
	startupLoc  = "StartupLocality\x00"

	// maxEvents bounds the events of one log; a real UEFI log has a few
	// hundred, IMA logs are parsed separately.
	maxEvents = 1 << 20
	// maxAlgs bounds the Spec ID algorithm list (HASH_COUNT headroom).
	maxAlgs = 16
)

func newLE(b []byte) *wire.Reader { return wire.New(b, binary.LittleEndian, ErrMalformed) }

func looksLikeTCG(raw []byte) bool {
	if len(raw) < 32 {
		return false
	}
	pcrIdx := binary.LittleEndian.Uint32(raw)
	size := binary.LittleEndian.Uint32(raw[28:])
	return pcrIdx <= 31 && int(size) <= len(raw)-32
}

// ParseTCG parses a TCG PC Client event log: crypto-agile when the first
// event is a Spec ID Event03, else legacy SHA-1 (PFP §10.2.1, §10.2.2).
func ParseTCG(raw []byte) (*Log, error) {
	r := newLE(raw)
	l := &Log{Format: FormatTCG}
	first := readLegacyEvent(r, 0)
	if r.Err != nil {
		return nil, fmt.Errorf("parse TCG log: first event: %w", r.Err)
	}
	if EventType(first.Type) == EvNoAction && first.PCR == 0 && bytes.HasPrefix(first.Data, []byte(specIDSig03)) {
		sid, err := parseSpecID(first.Data)
		if err != nil {
			return nil, fmt.Errorf("parse TCG log: %w", err)
		}
		l.SpecID = sid
		first.Seq = 0
		l.Events = make([]Event, 0, 1+len(raw)/256)
		l.Events = append(l.Events, first)
		pool := &digestPool{n: len(sid.Algs)}
		for seq := 1; r.Left() > 0; seq++ {
			if seq > maxEvents {
				return nil, fmt.Errorf("parse TCG log: %w: more than %d events", ErrMalformed, maxEvents)
			}
			e := readAgileEvent(r, sid, seq, pool)
			if r.Err != nil {
				return nil, fmt.Errorf("parse TCG log: event %d: %w", seq, r.Err)
			}
			l.Events = append(l.Events, e)
		}
	} else {
		l.Banks = []alg.ID{alg.SHA1}
		l.Events = append(l.Events, first)
		for seq := 1; r.Left() > 0; seq++ {
			if seq > maxEvents {
				return nil, fmt.Errorf("parse TCG log: %w: more than %d events", ErrMalformed, maxEvents)
			}
			e := readLegacyEvent(r, seq)
			if r.Err != nil {
				return nil, fmt.Errorf("parse TCG log: event %d: %w", seq, r.Err)
			}
			l.Events = append(l.Events, e)
		}
	}
	if l.SpecID != nil {
		l.Banks = completeBanks(l)
	}
	for i := range l.Events {
		e := &l.Events[i]
		if EventType(e.Type) == EvNoAction && e.PCR == 0 && bytes.HasPrefix(e.Data, []byte(startupLoc)) && len(e.Data) == len(startupLoc)+1 {
			l.StartupLocality = e.Data[len(startupLoc)]
		}
	}
	return l, nil
}

// completeBanks returns the Spec ID hash algorithms that every extended
// event has a digest for. Windows Boot Manager, for one, logs only the
// SHA-256 bank for the PCRs it extends, so a Spec ID bank may be partial;
// replaying it anyway would invent values the TPM never had.
func completeBanks(l *Log) []alg.ID {
	var out []alg.ID
	for _, a := range l.SpecID.Algs {
		if !a.Alg.IsHash() {
			continue
		}
		ok := true
		for i := range l.Events {
			e := &l.Events[i]
			if EventType(e.Type) != EvNoAction && e.Digest(a.Alg) == nil {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, a.Alg)
		}
	}
	return out
}

// checkPCR accepts PCRs 0–31 and, for EV_NO_ACTION only, the index -1
// (0xFFFFFFFF) that some firmware uses for informational events (PFP
// §10.4.5: never extended).
func checkPCR(r *wire.Reader, e *Event) {
	if r.Err != nil {
		return
	}
	if e.PCR == 0xFFFFFFFF && EventType(e.Type) == EvNoAction {
		e.PCR = -1
		return
	}
	if e.PCR > 31 || e.PCR < 0 {
		r.Fail(fmt.Sprintf("PCR index %d", uint32(e.PCR)))
	}
}

// readLegacyEvent reads a TCG_PCR_EVENT (SHA-1 digest).
func readLegacyEvent(r *wire.Reader, seq int) Event {
	e := Event{Seq: seq, IndexType: celPCR}
	e.PCR = int(r.U32("pcrIndex"))
	e.Type = r.U32("eventType")
	e.Digests = []Digest{{Alg: alg.SHA1, Value: r.Bytes(20, "SHA-1 digest")}}
	e.Data = r.Bytes(int(r.U32("eventSize")), "event data")
	checkPCR(r, &e)
	return e
}

// readAgileEvent reads a TCG_PCR_EVENT2, digest sizes from the Spec ID.
func readAgileEvent(r *wire.Reader, sid *SpecID, seq int, pool *digestPool) Event {
	e := Event{Seq: seq, IndexType: celPCR}
	e.PCR = int(r.U32("pcrIndex"))
	e.Type = r.U32("eventType")
	n := r.U32("digest count")
	if r.Err == nil && (n == 0 || int(n) > len(sid.Algs)) {
		r.Fail(fmt.Sprintf("digest count %d (Spec ID lists %d)", n, len(sid.Algs)))
		return e
	}
	e.Digests = pool.take(int(n))
	for i := uint32(0); i < n && r.Err == nil; i++ {
		a := alg.ID(r.U16("digest alg"))
		size := sid.size(a)
		if r.Err == nil && size < 0 {
			r.Fail(fmt.Sprintf("digest algorithm %v not in Spec ID", a))
			return e
		}
		e.Digests = append(e.Digests, Digest{Alg: a, Value: r.Bytes(size, "digest")})
	}
	e.Data = r.Bytes(int(r.U32("eventSize")), "event data")
	checkPCR(r, &e)
	return e
}

// digestPool hands out digest slices from shared chunks: one allocation per
// 64 events instead of one per event.
type digestPool struct {
	n     int // digests per event (the Spec ID's algorithm count)
	chunk []Digest
}

func (p *digestPool) take(k int) []Digest {
	if cap(p.chunk)-len(p.chunk) < k {
		p.chunk = make([]Digest, 0, max(64*p.n, k))
	}
	d := p.chunk[len(p.chunk) : len(p.chunk) : len(p.chunk)+k]
	p.chunk = p.chunk[:len(p.chunk)+k]
	return d
}

// parseSpecID parses TCG_EfiSpecIdEvent (PFP §10.4.5.1).
func parseSpecID(b []byte) (*SpecID, error) {
	r := newLE(b)
	s := &SpecID{}
	s.Signature = string(bytes.TrimRight(r.Bytes(16, "signature"), "\x00"))
	s.PlatformClass = r.U32("platformClass")
	s.VersionMinor = r.U8("specVersionMinor")
	s.VersionMajor = r.U8("specVersionMajor")
	s.Errata = r.U8("specErrata")
	s.UintnSize = r.U8("uintnSize")
	n := r.U32("numberOfAlgorithms")
	if r.Err == nil && (n == 0 || n > maxAlgs) {
		return nil, fmt.Errorf("%w: Spec ID lists %d algorithms", ErrMalformed, n)
	}
	for i := uint32(0); i < n && r.Err == nil; i++ {
		a := alg.ID(r.U16("algorithmId"))
		size := int(r.U16("digestSize"))
		if r.Err != nil {
			break
		}
		if a.IsHash() && a.Size() != size {
			return nil, fmt.Errorf("%w: Spec ID says %v digests are %d bytes", ErrMalformed, a, size)
		}
		if size == 0 || size > 64 {
			return nil, fmt.Errorf("%w: Spec ID digest size %d for %v", ErrMalformed, size, a)
		}
		s.Algs = append(s.Algs, SpecAlg{Alg: a, Size: size})
	}
	s.VendorInfo = r.Bytes(int(r.U8("vendorInfoSize")), "vendorInfo")
	if err := r.Done("Spec ID event"); err != nil {
		return nil, err
	}
	return s, nil
}

// checkDataDigest flags an event whose digest the PFP defines as the hash
// of the event data but which does not match it (PFP §10.4.1: EV_SEPARATOR,
// EV_EFI_ACTION, EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_HCRTM_EVENT).
func checkDataDigest(e *Event, hs *hashers, banks []alg.ID) {
	// alt is the other measurement firmware is known to make of an event:
	// EDK2 hashes only the VariableData of Boot#### variables. Authority
	// events (EV_EFI_VARIABLE_AUTHORITY) are not checked: shim and some
	// firmware measure them in ways no form of the data reproduces (seen
	// in 10 of the 38 real logs in testdata), and their content is
	// appraised against the Secure Boot policy instead.
	var alt []byte
	switch EventType(e.Type) {
	case EvSeparator, EvEFIAction, EvEFIVariableDriverConfig, EvEFIHCRTMEvent, EvEFIGPTEvent, EvEFIGPTEvent2:
	case EvEFIVariableBoot, EvEFIVariableBoot2:
		v, err := ParseUEFIVariable(e.Data)
		if err != nil {
			e.Anomaly = fmt.Sprintf("%v event data is not a UEFI_VARIABLE_DATA: %v", EventType(e.Type), err)
			return
		}
		alt = v.Data
	default:
		return
	}
	for _, b := range banks {
		d := e.Digest(b)
		if d == nil {
			continue
		}
		if bytes.Equal(hs.sum(b, e.Data), d) || alt != nil && bytes.Equal(hs.sum(b, alt), d) {
			continue
		}
		e.Anomaly = fmt.Sprintf("%v digest %x is not the %v of the event data", EventType(e.Type), d, b)
		return
	}
}

// WriteTCG encodes l as a crypto-agile TCG log (TCG_PCR_EVENT2 events after
// a Spec ID Event03 header for l.Banks). A leading Spec ID event in
// l.Events is replaced by a freshly computed one.
func WriteTCG(l *Log) ([]byte, error) {
	if len(l.Banks) == 0 {
		return nil, fmt.Errorf("write TCG log: no banks")
	}
	var sid []byte
	sid = append(sid, specIDSig03...)
	sid = binary.LittleEndian.AppendUint32(sid, 0) // platformClass: client
	sid = append(sid, 0, 2, 0, 2)                  // version 2.0, errata 0, UINTN 8 bytes (2)
	sid = binary.LittleEndian.AppendUint32(sid, uint32(len(l.Banks)))
	for _, b := range l.Banks {
		sid = binary.LittleEndian.AppendUint16(sid, uint16(b))
		sid = binary.LittleEndian.AppendUint16(sid, uint16(b.Size()))
	}
	sid = append(sid, 0) // vendorInfoSize
	out := binary.LittleEndian.AppendUint32(nil, 0)
	out = binary.LittleEndian.AppendUint32(out, uint32(EvNoAction))
	out = append(out, make([]byte, 20)...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(sid)))
	out = append(out, sid...)
	for i := range l.Events {
		e := &l.Events[i]
		if i == 0 && EventType(e.Type) == EvNoAction && bytes.HasPrefix(e.Data, []byte(specIDSig03)) {
			continue
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(e.PCR))
		out = binary.LittleEndian.AppendUint32(out, e.Type)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(l.Banks)))
		for _, b := range l.Banks {
			d := e.Digest(b)
			if len(d) != b.Size() {
				return nil, fmt.Errorf("write TCG log: event %d lacks a %v digest", i, b)
			}
			out = binary.LittleEndian.AppendUint16(out, uint16(b))
			out = append(out, d...)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(len(e.Data)))
		out = append(out, e.Data...)
	}
	return out, nil
}

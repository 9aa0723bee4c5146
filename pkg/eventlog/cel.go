package eventlog

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/fxamacker/cbor/v2"

	"github.com/openriv/riv/internal/wire"
	"github.com/openriv/riv/pkg/alg"
)

// CEL record and content types (TCG Canonical Event Log Format v1.0 §5).
const (
	celRecnum      uint8 = 0
	celPCR         uint8 = 1
	celNVIndex     uint8 = 2
	celDigests     uint8 = 3
	celMgt         uint8 = 4
	celPCClientStd uint8 = 5
	celIMATemplate uint8 = 7
	celIMATLV      uint8 = 8
)

// maxCELValue bounds one TLV value.
const maxCELValue = 16 << 20

var celContentNames = map[uint8]string{celMgt: "cel_mgt", celPCClientStd: "pcclient_std", celIMATemplate: "ima_template", celIMATLV: "ima_tlv"}

func celContentName(t uint8) string {
	if n, ok := celContentNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type_%d", t)
}

func celContentType(s string) (uint8, bool) {
	for t, n := range celContentNames {
		if n == s {
			return t, true
		}
	}
	var t uint8
	if _, err := fmt.Sscanf(s, "type_%d", &t); err == nil {
		return t, true
	}
	return 0, false
}

func newBE(b []byte) *wire.Reader { return wire.New(b, binary.BigEndian, ErrMalformed) }

// readTLV reads one CEL TLV: a type byte, a big-endian u32 length, a value.
func readTLV(r *wire.Reader) (uint8, []byte) {
	t := r.U8("TLV type")
	n := r.U32("TLV length")
	if r.Err == nil && n > maxCELValue {
		r.Fail(fmt.Sprintf("TLV length %d", n))
	}
	return t, r.Bytes(int(n), "TLV value")
}

// looksLikeCELTLV checks the shape of a first record: recnum TLV of 8
// bytes, an index TLV of 1–4 bytes, then the digests TLV. (A legacy TCG log
// starting with PCR 0 and a small event type can look like a recnum TLV.)
func looksLikeCELTLV(raw []byte) bool {
	if len(raw) < 13+5 || raw[0] != celRecnum || binary.BigEndian.Uint32(raw[1:]) != 8 {
		return false
	}
	n := int(binary.BigEndian.Uint32(raw[14:]))
	if n < 1 || n > 4 || raw[13] == celDigests || raw[13] == celRecnum || len(raw) < 18+n+5 {
		return false
	}
	return raw[18+n] == celDigests
}

func looksLikeCELCBOR(raw []byte) bool {
	return len(raw) > 0 && raw[0]>>5 == 4 // a CBOR array
}

// ParseCELTLV parses a TLV-encoded CEL: each record is recnum, an index
// (PCR, NV index or another register type), digests, then content.
func ParseCELTLV(raw []byte) (*Log, error) {
	r := newBE(raw)
	l := &Log{Format: FormatCELTLV}
	banks := map[alg.ID]bool{}
	for seq := 0; r.Left() > 0; seq++ {
		if seq >= maxIMAEntries {
			return nil, fmt.Errorf("parse CEL: %w: more than %d records", ErrMalformed, maxIMAEntries)
		}
		e, err := readCELRecord(r)
		if err != nil {
			return nil, fmt.Errorf("parse CEL: record %d: %w", seq, err)
		}
		for _, d := range e.Digests {
			banks[d.Alg] = true
		}
		l.Events = append(l.Events, e)
	}
	l.Banks = sortedBanks(banks)
	if len(l.Events) == 0 {
		return nil, fmt.Errorf("parse CEL: %w: no records", ErrMalformed)
	}
	return l, nil
}

func readCELRecord(r *wire.Reader) (Event, error) {
	var e Event
	t, v := readTLV(r)
	if r.Err != nil {
		return e, r.Err
	}
	if t != celRecnum || len(v) != 8 {
		return e, fmt.Errorf("%w: record starts with TLV type %d (%d bytes), want recnum", ErrMalformed, t, len(v))
	}
	e.Seq = int(binary.BigEndian.Uint64(v) & 0x7fffffff)
	t, v = readTLV(r)
	if r.Err != nil {
		return e, r.Err
	}
	if len(v) == 0 || len(v) > 4 {
		return e, fmt.Errorf("%w: index of %d bytes", ErrMalformed, len(v))
	}
	var idx uint32
	for _, c := range v {
		idx = idx<<8 | uint32(c)
	}
	if err := setCELIndex(&e, t, idx); err != nil {
		return e, err
	}
	t, v = readTLV(r)
	if r.Err != nil {
		return e, r.Err
	}
	if t != celDigests {
		return e, fmt.Errorf("%w: TLV type %d where digests belong", ErrMalformed, t)
	}
	dr := newBE(v)
	for dr.Left() > 0 {
		a, d := readTLV(dr)
		if dr.Err != nil {
			return e, dr.Err
		}
		id := alg.ID(a)
		if !id.IsHash() || len(d) != id.Size() {
			return e, fmt.Errorf("%w: digest of %d bytes for algorithm %v", ErrMalformed, len(d), id)
		}
		e.Digests = append(e.Digests, Digest{Alg: id, Value: d})
	}
	if len(e.Digests) == 0 {
		return e, fmt.Errorf("%w: record without digests", ErrMalformed)
	}
	ct, content := readTLV(r)
	if r.Err != nil {
		return e, r.Err
	}
	e.ContentType = ct
	e.Data = content
	return e, decodeCELContent(&e)
}

func setCELIndex(e *Event, t uint8, idx uint32) error {
	e.IndexType = t
	switch t {
	case celPCR:
		if idx > 31 {
			return fmt.Errorf("%w: PCR %d", ErrMalformed, idx)
		}
		e.PCR = int(idx)
	case celNVIndex:
		e.PCR, e.NVIndex = -1, idx
	case celDigests, celRecnum:
		return fmt.Errorf("%w: TLV type %d where the index belongs", ErrMalformed, t)
	default:
		e.PCR, e.Register = -1, idx
	}
	return nil
}

// decodeCELContent interprets pcclient_std (nested TLVs event_type=0,
// event_data=1) and ima_template (template_name=0, template_data=1).
func decodeCELContent(e *Event) error {
	switch e.ContentType {
	case celPCClientStd, celIMATemplate:
	default:
		return nil
	}
	cr := newBE(e.Data)
	var first, second []byte
	for cr.Left() > 0 {
		t, v := readTLV(cr)
		if cr.Err != nil {
			return cr.Err
		}
		switch t {
		case 0:
			first = v
		case 1:
			second = v
		}
	}
	return setCELContent(e, first, second)
}

func setCELContent(e *Event, first, second []byte) error {
	switch e.ContentType {
	case celPCClientStd:
		if len(first) != 4 {
			return fmt.Errorf("%w: pcclient_std event_type of %d bytes", ErrMalformed, len(first))
		}
		e.Type = binary.BigEndian.Uint32(first)
		e.Data = second
	case celIMATemplate:
		ent, err := decodeTemplate(string(first), second)
		if err != nil {
			return err
		}
		e.IMA, e.Data = ent, second
	}
	return nil
}

// checkCELDigest flags a record whose digest is defined by its content
// and does not match: IMA templates (the template hash), PC Client events
// of the types checkDataDigest knows, and opaque content types, which the
// Confidential Space launcher (go-tpm-tools) measures as H(content TLV).
func checkCELDigest(e *Event, hs *hashers, banks []alg.ID) {
	switch e.ContentType {
	case celPCClientStd:
		checkDataDigest(e, hs, banks)
	case celMgt:
	case celIMATemplate:
		for _, b := range banks {
			if d := e.Digest(b); d != nil && !isZero(d) && !bytes.Equal(hs.template(b, e), d) {
				e.Anomaly = fmt.Sprintf("%v digest is not the hash of the IMA template", b)
			}
		}
	default:
		tlv := append([]byte{e.ContentType}, binary.BigEndian.AppendUint32(nil, uint32(len(e.Data)))...)
		tlv = append(tlv, e.Data...)
		for _, b := range banks {
			if d := e.Digest(b); d != nil && !bytes.Equal(hs.sum(b, tlv), d) {
				e.Anomaly = fmt.Sprintf("%v digest is not the hash of the content TLV", b)
			}
		}
	}
}

func sortedBanks(m map[alg.ID]bool) []alg.ID {
	var out []alg.ID
	for b := range m {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// ReplayIndex replays records of a non-PCR index type (celNVIndex = 2 for
// NV indexes, or a register type such as 108) in bank b, each index
// starting at zero.
func (l *Log) ReplayIndex(indexType uint8, b alg.ID) map[uint32][]byte {
	out := map[uint32][]byte{}
	for i := range l.Events {
		e := &l.Events[i]
		if e.IndexType != indexType || e.PCR >= 0 {
			continue
		}
		idx := e.Register
		if indexType == celNVIndex {
			idx = e.NVIndex
		}
		d := e.Digest(b)
		if d == nil {
			continue
		}
		cur, ok := out[idx]
		if !ok {
			cur = make([]byte, b.Size())
		}
		out[idx] = b.Sum(cur, d)
	}
	return out
}

// celJSON is the JSON encoding of a CEL record (CEL §6).
type celJSON struct {
	Recnum  uint64          `json:"recnum"`
	PCR     *uint32         `json:"pcr,omitempty"`
	NVIndex *uint32         `json:"nv_index,omitempty"`
	Digests []celJSONDigest `json:"digests"`
	Type    string          `json:"content_type"`
	Content json.RawMessage `json:"content"`
}

type celJSONDigest struct {
	HashAlg string `json:"hashAlg"`
	Digest  string `json:"digest"`
}

type celJSONPCClient struct {
	EventType uint32 `json:"event_type"`
	EventData string `json:"event_data"` // base64
}

type celJSONIMA struct {
	TemplateName string `json:"template_name"`
	TemplateData string `json:"template_data"` // base64
}

// ParseCELJSON parses a JSON CEL: an array of records (or one record per
// line).
func ParseCELJSON(raw []byte) (*Log, error) {
	var recs []celJSON
	if err := json.Unmarshal(raw, &recs); err != nil {
		// JSON lines: one record per line.
		recs = nil
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		for dec.More() {
			var c celJSON
			if err2 := dec.Decode(&c); err2 != nil {
				return nil, fmt.Errorf("parse CEL JSON: %w: %v", ErrMalformed, err)
			}
			recs = append(recs, c)
		}
	}
	l := &Log{Format: FormatCELJSON}
	banks := map[alg.ID]bool{}
	for i, c := range recs {
		e, err := celFromJSON(c)
		if err != nil {
			return nil, fmt.Errorf("parse CEL JSON: record %d: %w", i, err)
		}
		for _, d := range e.Digests {
			banks[d.Alg] = true
		}
		l.Events = append(l.Events, e)
	}
	if len(l.Events) == 0 {
		return nil, fmt.Errorf("parse CEL JSON: %w: no records", ErrMalformed)
	}
	l.Banks = sortedBanks(banks)
	return l, nil
}

func celFromJSON(c celJSON) (Event, error) {
	e := Event{Seq: int(c.Recnum & 0x7fffffff)}
	switch {
	case c.PCR != nil && c.NVIndex == nil:
		if err := setCELIndex(&e, celPCR, *c.PCR); err != nil {
			return e, err
		}
	case c.NVIndex != nil && c.PCR == nil:
		setCELIndex(&e, celNVIndex, *c.NVIndex)
	default:
		return e, fmt.Errorf("%w: want exactly one of pcr and nv_index", ErrMalformed)
	}
	for _, d := range c.Digests {
		a, err := alg.ParseHash(d.HashAlg)
		if err != nil {
			return e, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		v, err := hex.DecodeString(d.Digest)
		if err != nil || len(v) != a.Size() {
			return e, fmt.Errorf("%w: bad %s digest %q", ErrMalformed, d.HashAlg, d.Digest)
		}
		e.Digests = append(e.Digests, Digest{Alg: a, Value: v})
	}
	if len(e.Digests) == 0 {
		return e, fmt.Errorf("%w: record without digests", ErrMalformed)
	}
	ct, ok := celContentType(c.Type)
	if !ok {
		return e, fmt.Errorf("%w: content_type %q", ErrMalformed, c.Type)
	}
	e.ContentType = ct
	switch ct {
	case celPCClientStd:
		var p celJSONPCClient
		if err := json.Unmarshal(c.Content, &p); err != nil {
			return e, fmt.Errorf("%w: pcclient_std content: %v", ErrMalformed, err)
		}
		d, err := base64.StdEncoding.DecodeString(p.EventData)
		if err != nil {
			return e, fmt.Errorf("%w: event_data: %v", ErrMalformed, err)
		}
		e.Type, e.Data = p.EventType, d
	case celIMATemplate:
		var p celJSONIMA
		if err := json.Unmarshal(c.Content, &p); err != nil {
			return e, fmt.Errorf("%w: ima_template content: %v", ErrMalformed, err)
		}
		d, err := base64.StdEncoding.DecodeString(p.TemplateData)
		if err != nil {
			return e, fmt.Errorf("%w: template_data: %v", ErrMalformed, err)
		}
		if err := setCELContent(&e, []byte(p.TemplateName), d); err != nil {
			return e, err
		}
	default:
		var s string
		if err := json.Unmarshal(c.Content, &s); err != nil {
			return e, fmt.Errorf("%w: content of %s must be a base64 string", ErrMalformed, c.Type)
		}
		d, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return e, fmt.Errorf("%w: content: %v", ErrMalformed, err)
		}
		e.Data = d
	}
	return e, nil
}

// celCBOR is the CBOR encoding of a CEL record: a map keyed by the CEL TLV
// types (0 recnum, 1 pcr or 2 nv_index, 3 digests as {alg: bstr}, and the
// content type's key holding the content: for pcclient_std and
// ima_template a map {0: type or name, 1: data}, otherwise a bstr).
type celCBOR map[uint8]cbor.RawMessage

var celDec, _ = cbor.DecOptions{MaxNestedLevels: 8, MaxArrayElements: maxIMAEntries, MaxMapPairs: 64, DupMapKey: cbor.DupMapKeyEnforcedAPF}.DecMode()

// ParseCELCBOR parses a CBOR CEL: an array of record maps.
func ParseCELCBOR(raw []byte) (*Log, error) {
	var recs []celCBOR
	if err := celDec.Unmarshal(raw, &recs); err != nil {
		return nil, fmt.Errorf("parse CEL CBOR: %w: %v", ErrMalformed, err)
	}
	l := &Log{Format: FormatCELCBOR}
	banks := map[alg.ID]bool{}
	for i, m := range recs {
		e, err := celFromCBOR(m)
		if err != nil {
			return nil, fmt.Errorf("parse CEL CBOR: record %d: %w", i, err)
		}
		for _, d := range e.Digests {
			banks[d.Alg] = true
		}
		l.Events = append(l.Events, e)
	}
	if len(l.Events) == 0 {
		return nil, fmt.Errorf("parse CEL CBOR: %w: no records", ErrMalformed)
	}
	l.Banks = sortedBanks(banks)
	return l, nil
}

func celFromCBOR(m celCBOR) (Event, error) {
	var e Event
	var recnum uint64
	if err := celDec.Unmarshal(m[celRecnum], &recnum); err != nil {
		return e, fmt.Errorf("%w: recnum: %v", ErrMalformed, err)
	}
	e.Seq = int(recnum & 0x7fffffff)
	var idx uint32
	_, hasPCR := m[celPCR]
	_, hasNV := m[celNVIndex]
	switch {
	case hasPCR && !hasNV:
		if err := celDec.Unmarshal(m[celPCR], &idx); err != nil {
			return e, fmt.Errorf("%w: pcr: %v", ErrMalformed, err)
		}
		if err := setCELIndex(&e, celPCR, idx); err != nil {
			return e, err
		}
	case hasNV && !hasPCR:
		if err := celDec.Unmarshal(m[celNVIndex], &idx); err != nil {
			return e, fmt.Errorf("%w: nv_index: %v", ErrMalformed, err)
		}
		setCELIndex(&e, celNVIndex, idx)
	default:
		return e, fmt.Errorf("%w: want exactly one of pcr (1) and nv_index (2)", ErrMalformed)
	}
	var digests map[uint16][]byte
	if err := celDec.Unmarshal(m[celDigests], &digests); err != nil {
		return e, fmt.Errorf("%w: digests: %v", ErrMalformed, err)
	}
	for _, a := range sortedKeys(digests) {
		id := alg.ID(a)
		if !id.IsHash() || len(digests[a]) != id.Size() {
			return e, fmt.Errorf("%w: digest of %d bytes for algorithm %v", ErrMalformed, len(digests[a]), id)
		}
		e.Digests = append(e.Digests, Digest{Alg: id, Value: digests[a]})
	}
	if len(e.Digests) == 0 {
		return e, fmt.Errorf("%w: record without digests", ErrMalformed)
	}
	var ct uint8
	n := 0
	for k := range m {
		if k > celDigests {
			ct = k
			n++
		}
	}
	if n != 1 {
		return e, fmt.Errorf("%w: %d content entries, want 1", ErrMalformed, n)
	}
	e.ContentType = ct
	switch ct {
	case celPCClientStd, celIMATemplate:
		var cm map[uint8]cbor.RawMessage
		if err := celDec.Unmarshal(m[ct], &cm); err != nil {
			return e, fmt.Errorf("%w: content: %v", ErrMalformed, err)
		}
		var second []byte
		if err := celDec.Unmarshal(cm[1], &second); err != nil {
			return e, fmt.Errorf("%w: content data: %v", ErrMalformed, err)
		}
		var first []byte
		if ct == celPCClientStd {
			var t uint32
			if err := celDec.Unmarshal(cm[0], &t); err != nil {
				return e, fmt.Errorf("%w: event_type: %v", ErrMalformed, err)
			}
			first = binary.BigEndian.AppendUint32(nil, t)
		} else {
			var s string
			if err := celDec.Unmarshal(cm[0], &s); err != nil {
				return e, fmt.Errorf("%w: template_name: %v", ErrMalformed, err)
			}
			first = []byte(s)
		}
		if err := setCELContent(&e, first, second); err != nil {
			return e, err
		}
	default:
		if err := celDec.Unmarshal(m[ct], &e.Data); err != nil {
			return e, fmt.Errorf("%w: content: %v", ErrMalformed, err)
		}
	}
	return e, nil
}

func sortedKeys(m map[uint16][]byte) []uint16 {
	var out []uint16
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// celIndex returns the index TLV type and value of e.
func celIndex(e *Event) (uint8, uint32) {
	switch {
	case e.PCR >= 0:
		return celPCR, uint32(e.PCR)
	case e.IndexType == celNVIndex:
		return celNVIndex, e.NVIndex
	}
	return e.IndexType, e.Register
}

// celContent returns the content type and the content as CEL carries it.
func celContent(e *Event) (uint8, []byte, []byte) {
	switch {
	case e.IMA != nil:
		return celIMATemplate, []byte(e.IMA.Template), e.Data
	case e.ContentType == 0 || e.ContentType == celPCClientStd:
		return celPCClientStd, binary.BigEndian.AppendUint32(nil, e.Type), e.Data
	}
	return e.ContentType, nil, e.Data
}

func appendTLV(b []byte, t uint8, v []byte) []byte {
	b = append(b, t)
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// WriteCEL encodes l's events as a CEL in format f (FormatCELTLV,
// FormatCELJSON or FormatCELCBOR). TCG events become pcclient_std content,
// IMA entries ima_template. EV_NO_ACTION events are left out: CEL records
// only what was extended.
func WriteCEL(l *Log, f Format) ([]byte, error) {
	var tlv []byte
	var js []celJSON
	var cb []map[uint8]any
	n := uint64(0)
	for i := range l.Events {
		e := &l.Events[i]
		if l.Format == FormatTCG && EventType(e.Type) == EvNoAction {
			continue
		}
		it, idx := celIndex(e)
		ct, first, data := celContent(e)
		switch f {
		case FormatCELTLV:
			tlv = appendTLV(tlv, celRecnum, binary.BigEndian.AppendUint64(nil, n))
			tlv = appendTLV(tlv, it, binary.BigEndian.AppendUint32(nil, idx))
			var ds []byte
			for _, d := range e.Digests {
				ds = appendTLV(ds, uint8(d.Alg), d.Value)
			}
			tlv = appendTLV(tlv, celDigests, ds)
			content := data
			if first != nil {
				content = appendTLV(appendTLV(nil, 0, first), 1, data)
			}
			tlv = appendTLV(tlv, ct, content)
		case FormatCELJSON:
			c := celJSON{Recnum: n, Type: celContentName(ct)}
			if it == celPCR {
				c.PCR = &idx
			} else if it == celNVIndex {
				c.NVIndex = &idx
			} else {
				return nil, fmt.Errorf("write CEL JSON: record %d: index type %d has no JSON name", i, it)
			}
			for _, d := range e.Digests {
				c.Digests = append(c.Digests, celJSONDigest{HashAlg: d.Alg.String(), Digest: hex.EncodeToString(d.Value)})
			}
			var content any
			switch ct {
			case celPCClientStd:
				content = celJSONPCClient{EventType: e.Type, EventData: base64.StdEncoding.EncodeToString(data)}
			case celIMATemplate:
				content = celJSONIMA{TemplateName: string(first), TemplateData: base64.StdEncoding.EncodeToString(data)}
			default:
				content = base64.StdEncoding.EncodeToString(data)
			}
			c.Content, _ = json.Marshal(content)
			js = append(js, c)
		case FormatCELCBOR:
			m := map[uint8]any{celRecnum: n, it: idx}
			ds := map[uint16][]byte{}
			for _, d := range e.Digests {
				ds[uint16(d.Alg)] = d.Value
			}
			m[celDigests] = ds
			switch ct {
			case celPCClientStd:
				m[ct] = map[uint8]any{0: e.Type, 1: data}
			case celIMATemplate:
				m[ct] = map[uint8]any{0: string(first), 1: data}
			default:
				m[ct] = data
			}
			cb = append(cb, m)
		default:
			return nil, fmt.Errorf("write CEL: format %v is not a CEL format", f)
		}
		n++
	}
	switch f {
	case FormatCELJSON:
		return json.MarshalIndent(js, "", " ")
	case FormatCELCBOR:
		em, _ := cbor.CanonicalEncOptions().EncMode()
		return em.Marshal(cb)
	}
	return tlv, nil
}

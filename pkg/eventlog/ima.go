package eventlog

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// IMAEntry is the template of one IMA measurement (kernel
// security/integrity/ima/ima_template.c). All fields are untrusted.
type IMAEntry struct {
	Template string   // "ima", "ima-ng", "ima-sig", "ima-buf", or a field list
	Fields   [][]byte // raw field values, in template order
	// Decoded d-ng / d-ngv2 / d and n-ng / n fields.
	FileHashAlg     alg.ID // Null for an unknown algorithm name
	FileHashAlgName string
	FileHash        []byte
	FileName        string
	Sig             []byte // sig field (ima-sig), or buf (ima-buf)
}

const (
	imaTemplateIMA = "ima"
	// imaNameMax is IMA_EVENT_NAME_LEN_MAX: the legacy "ima" template hashes
	// the file name zero-padded to this plus one byte.
	imaNameMax = 255
	// maxTemplateData bounds one entry's template data (the kernel caps
	// buffers far lower; signatures and ima-buf key blobs stay well below).
	maxTemplateData = 1 << 20
	maxTemplateName = 255
	maxIMAEntries   = 1 << 24
)

// templateFields returns the field list of a template name (a custom
// template's name is its field list, e.g. "d-ng|n-ng|sig").
func templateFields(name string) []string {
	switch name {
	case imaTemplateIMA:
		return []string{"d", "n"}
	case "ima-ng":
		return []string{"d-ng", "n-ng"}
	case "ima-ngv2":
		return []string{"d-ngv2", "n-ng"}
	case "ima-sig":
		return []string{"d-ng", "n-ng", "sig"}
	case "ima-sigv2":
		return []string{"d-ngv2", "n-ng", "sig"}
	case "ima-buf":
		return []string{"d-ng", "n-ng", "buf"}
	case "ima-modsig":
		return []string{"d-ng", "n-ng", "sig", "d-modsig", "modsig"}
	case "evm-sig":
		return []string{"d-ng", "n-ng", "evmsig", "xattrnames", "xattrlengths", "xattrvalues", "iuid", "igid", "imode"}
	}
	return strings.Split(name, "|")
}

func looksLikeIMABinary(raw []byte) bool {
	_, ok := imaDigestSize(raw)
	return ok
}

// imaDigestSize finds the template-digest size of a binary IMA log from its
// first entry: the kernel writes SHA-1 digests to
// binary_runtime_measurements and the bank's size to
// binary_runtime_measurements_<alg>.
func imaDigestSize(raw []byte) (int, bool) {
	if len(raw) < 4 || binary.LittleEndian.Uint32(raw) > 31 {
		return 0, false
	}
	for _, n := range []int{20, 32, 48, 64} {
		off := 4 + n
		if len(raw) < off+4 {
			continue
		}
		nl := int(binary.LittleEndian.Uint32(raw[off:]))
		if nl < 1 || nl > maxTemplateName || len(raw) < off+4+nl {
			continue
		}
		if validTemplateName(raw[off+4 : off+4+nl]) {
			return n, true
		}
	}
	return 0, false
}

func validTemplateName(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '|') {
			return false
		}
	}
	return len(b) > 0
}

func bankForSize(n int) alg.ID {
	switch n {
	case 20:
		return alg.SHA1
	case 32:
		return alg.SHA256
	case 48:
		return alg.SHA384
	case 64:
		return alg.SHA512
	}
	return alg.Null
}

// ParseIMA parses a binary IMA log (binary_runtime_measurements or a
// per-bank binary_runtime_measurements_<alg>). A 32-byte template digest is
// taken as SHA-256; use ParseIMABank for SM3.
func ParseIMA(raw []byte) (*Log, error) {
	n, ok := imaDigestSize(raw)
	if !ok {
		return nil, fmt.Errorf("parse IMA log: %w: first entry is not an IMA measurement", ErrMalformed)
	}
	return ParseIMABank(raw, bankForSize(n))
}

// ParseIMABank parses a binary IMA log whose template digests are in bank.
func ParseIMABank(raw []byte, bank alg.ID) (*Log, error) {
	if !bank.IsHash() {
		return nil, fmt.Errorf("parse IMA log: %w: bank %v", ErrMalformed, bank)
	}
	l := &Log{Format: FormatIMA, Banks: []alg.ID{bank}}
	r := newLE(raw)
	for seq := 0; r.Left() > 0; seq++ {
		if seq >= maxIMAEntries {
			return nil, fmt.Errorf("parse IMA log: %w: more than %d entries", ErrMalformed, maxIMAEntries)
		}
		e := Event{Seq: seq, IndexType: celPCR}
		e.PCR = int(r.U32("pcr"))
		e.Digests = []Digest{{Alg: bank, Value: r.Bytes(bank.Size(), "template digest")}}
		nl := int(r.U32("template name length"))
		if r.Err == nil && (nl == 0 || nl > maxTemplateName) {
			r.Fail(fmt.Sprintf("template name length %d", nl))
		}
		name := r.Bytes(nl, "template name")
		if r.Err == nil && (!validTemplateName(name) || e.PCR > 31) {
			r.Fail(fmt.Sprintf("entry with PCR %d and template name %q", e.PCR, name))
		}
		var data []byte
		if string(name) == imaTemplateIMA {
			// The legacy template has no data length: a SHA-1 digest, then
			// a length-prefixed name (kernel IMA_SHOW_BINARY_OLD_STRING_FMT).
			start := r.Off
			r.Bytes(20, "ima file digest")
			r.Bytes(int(r.U32("ima name length")), "ima file name")
			if r.Err == nil {
				data = raw[start:r.Off:r.Off]
			}
		} else {
			dl := int(r.U32("template data length"))
			if r.Err == nil && dl > maxTemplateData {
				r.Fail(fmt.Sprintf("template data length %d", dl))
			}
			data = r.Bytes(dl, "template data")
		}
		if r.Err != nil {
			return nil, fmt.Errorf("parse IMA log: entry %d: %w", seq, r.Err)
		}
		e.Data = data
		ent, err := decodeTemplate(string(name), data)
		if err != nil {
			return nil, fmt.Errorf("parse IMA log: entry %d: %w", seq, err)
		}
		e.IMA = ent
		l.Events = append(l.Events, e)
	}
	if len(l.Events) == 0 {
		return nil, fmt.Errorf("parse IMA log: %w: no entries", ErrMalformed)
	}
	return l, nil
}

// DecodeIMATemplate decodes one entry's template data by its template
// name, as the kernel's binary log carries them (the SNMP MIB does too).
func DecodeIMATemplate(name string, data []byte) (*IMAEntry, error) {
	if !validTemplateName([]byte(name)) || len(name) > maxTemplateName {
		return nil, fmt.Errorf("%w: IMA template name %q", ErrMalformed, name)
	}
	if len(data) > maxTemplateData {
		return nil, fmt.Errorf("%w: IMA template data of %d bytes", ErrMalformed, len(data))
	}
	return decodeTemplate(name, data)
}

// decodeTemplate splits template data into fields and decodes the common
// ones. For non-legacy templates each field is a u32 length and a value.
func decodeTemplate(name string, data []byte) (*IMAEntry, error) {
	ent := &IMAEntry{Template: name}
	fields := templateFields(name)
	if name == imaTemplateIMA {
		r := newLE(data)
		d := r.Bytes(20, "ima digest")
		n := r.Bytes(int(r.U32("ima name length")), "ima name")
		if err := r.Done("ima template"); err != nil {
			return nil, err
		}
		ent.Fields = [][]byte{d, n}
		ent.FileHashAlg, ent.FileHashAlgName, ent.FileHash, ent.FileName = alg.SHA1, "sha1", d, string(n)
		return ent, nil
	}
	r := newLE(data)
	for _, f := range fields {
		v := r.Bytes(int(r.U32(f+" length")), f)
		if r.Err != nil {
			return nil, r.Err
		}
		ent.Fields = append(ent.Fields, v)
		switch f {
		case "d-ng", "d-ngv2":
			// "<algo>:\0<digest>", or for d-ngv2 "<ima|verity>:<algo>:\0<digest>".
			i := bytes.IndexByte(v, 0)
			if i < 1 || v[i-1] != ':' {
				// Old kernels write plain SHA-1/MD5 digests in d-ng.
				ent.FileHashAlgName, ent.FileHash = "sha1", v
				ent.FileHashAlg = alg.SHA1
				continue
			}
			an := string(v[:i-1])
			if f == "d-ngv2" {
				if j := strings.IndexByte(an, ':'); j >= 0 {
					an = an[j+1:]
				}
			}
			ent.FileHashAlgName, ent.FileHash = an, v[i+1:]
			ent.FileHashAlg, _ = alg.ParseHash(an)
		case "d":
			ent.FileHashAlgName, ent.FileHash, ent.FileHashAlg = "sha1", v, alg.SHA1
		case "n-ng", "n":
			ent.FileName = string(bytes.TrimRight(v, "\x00"))
		case "sig", "buf":
			ent.Sig = v
		}
	}
	if err := r.Done("template data"); err != nil {
		return nil, err
	}
	return ent, nil
}

// templateHasher computes an IMA template digest in one bank without
// allocating: the per-entry hot path of IMA replay.
type templateHasher struct {
	h   hash.Hash
	buf [64]byte
	pad [imaNameMax + 1]byte
}

func newTemplateHasher(b alg.ID) (*templateHasher, error) {
	h, err := b.New()
	if err != nil {
		return nil, err
	}
	return &templateHasher{h: h}, nil
}

// sum returns H(template) for e: the template data as logged, except the
// legacy "ima" template, which hashes the digest and the file name
// zero-padded to 256 bytes with no length fields.
func (t *templateHasher) sum(e *Event) []byte {
	t.h.Reset()
	if e.IMA != nil && e.IMA.Template == imaTemplateIMA && len(e.IMA.Fields) == 2 {
		t.h.Write(e.IMA.Fields[0])
		n := copy(t.pad[:], e.IMA.Fields[1])
		clear(t.pad[n:])
		t.h.Write(t.pad[:])
	} else {
		t.h.Write(e.Data)
	}
	return t.h.Sum(t.buf[:0])
}

// Violation says whether e is an IMA measurement violation (a file
// changed, or opened for write, while it was measured): the kernel logs
// it with an all-zero template digest and extends all ones, so its name
// and file hash are not what the PCR holds.
func (e *Event) Violation() bool { return len(e.Digests) > 0 && isZero(e.Digests[0].Value) }

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// replayIMA extends PCRs in bank b from an IMA log. Every value extended
// is derived from the entry's template data, in every bank, including the
// bank of the logged template digest: that digest is only the device's
// claim, and extending it unchecked would let a log name any file and hash
// while PCR 10 holds the measurement of another (a file name and hash that
// a signed RIM lists, say, over the digest of a backdoor). In bank b the
// kernel (≥ 5.8) extends H_b(template data); with padSHA1 (older kernels)
// the SHA-1 of the template data zero-padded to the bank size. A violation
// (all-zero logged digest) extends all ones of the bank size (≥ 5.8) or 20
// bytes of ones zero-padded (older). A logged digest that is not the hash
// of the data is named by CheckDigests; the replay follows the data, so
// such a log replays to a quote only if its data is what was measured.
func (l *Log) replayIMA(b alg.ID, padSHA1 bool, from map[int][]byte) (map[int][]byte, error) {
	hb := b
	if padSHA1 {
		hb = alg.SHA1
	}
	th, err := newTemplateHasher(hb)
	if err != nil {
		return nil, err
	}
	ext, err := b.New()
	if err != nil {
		return nil, err
	}
	size := b.Size()
	ones := bytes.Repeat([]byte{0xff}, size)
	padded := make([]byte, size)
	type state struct{ v [64]byte }
	pcrs := map[int]*state{}
	for i := range l.Events {
		e := &l.Events[i]
		if len(e.Digests) == 0 {
			return nil, fmt.Errorf("%w: IMA entry %d has no template digest", ErrMalformed, e.Seq)
		}
		var d []byte
		switch {
		case e.Violation():
			d = ones
			if padSHA1 {
				clear(padded)
				copy(padded, ones[:20])
				d = padded
			}
		case padSHA1 && b != alg.SHA1:
			clear(padded)
			copy(padded, th.sum(e))
			d = padded
		default:
			d = th.sum(e)
		}
		st := pcrs[e.PCR]
		if st == nil {
			st = &state{}
			if f := from[e.PCR]; len(f) == size {
				copy(st.v[:], f)
			}
			pcrs[e.PCR] = st
		}
		ext.Reset()
		ext.Write(st.v[:size])
		ext.Write(d)
		ext.Sum(st.v[:0])
	}
	out := make(map[int][]byte, len(pcrs))
	for i, st := range pcrs {
		out[i] = bytes.Clone(st.v[:size])
	}
	return out, nil
}

// DetectIMARule replays an IMA log in bank b both ways and reports which
// rule reproduces want: "rehash" (kernel ≥ 5.8), "pad-sha1" (older
// kernels), or "" when neither does.
func (l *Log) DetectIMARule(b alg.ID, want pcr.Values) string {
	for _, rule := range []struct {
		name string
		pad  bool
	}{{"rehash", false}, {"pad-sha1", true}} {
		got, err := l.Replay(ReplayOptions{Banks: []alg.ID{b}, IMAPadSHA1: rule.pad})
		if err == nil && len(got.Diff(pcr.Values{b: want[b]})) == 0 {
			return rule.name
		}
	}
	return ""
}

func looksLikeIMAASCII(raw []byte) bool {
	line := raw
	if i := bytes.IndexByte(raw, '\n'); i >= 0 {
		line = raw[:i]
	}
	f := strings.Fields(string(line))
	if len(f) < 4 {
		return false
	}
	if _, err := strconv.ParseUint(f[0], 10, 8); err != nil {
		return false
	}
	_, err := hex.DecodeString(f[1])
	return err == nil && validTemplateName([]byte(f[2]))
}

// ParseIMAASCII parses ascii_runtime_measurements: "PCR template-digest
// template-name fields...". The template data is rebuilt byte for byte as
// the kernel hashes it, so every bank can be replayed. The template-digest
// bank comes from its length (SM3 when the file hashes say sm3_256).
func ParseIMAASCII(raw []byte) (*Log, error) {
	l := &Log{Format: FormatIMAASCII}
	lines := bytes.Split(raw, []byte("\n"))
	for ln, line := range lines {
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if len(l.Events) >= maxIMAEntries {
			return nil, fmt.Errorf("parse IMA ascii log: %w: more than %d entries", ErrMalformed, maxIMAEntries)
		}
		e, err := parseIMALine(string(line), len(l.Events))
		if err != nil {
			return nil, fmt.Errorf("parse IMA ascii log: line %d: %w", ln+1, err)
		}
		if len(l.Banks) == 0 {
			l.Banks = []alg.ID{e.Digests[0].Alg}
		} else if e.Digests[0].Alg != l.Banks[0] {
			return nil, fmt.Errorf("parse IMA ascii log: line %d: %w: template digest of %d bytes after %v digests", ln+1, ErrMalformed, len(e.Digests[0].Value), l.Banks[0])
		}
		l.Events = append(l.Events, e)
	}
	if len(l.Events) == 0 {
		return nil, fmt.Errorf("parse IMA ascii log: %w: no entries", ErrMalformed)
	}
	return l, nil
}

func parseIMALine(line string, seq int) (Event, error) {
	e := Event{Seq: seq, IndexType: celPCR}
	parts := strings.SplitN(line, " ", 4)
	if len(parts) < 4 {
		return e, fmt.Errorf("%w: want PCR, template digest, template name and fields", ErrMalformed)
	}
	p, err := strconv.ParseUint(parts[0], 10, 8)
	if err != nil || p > 31 {
		return e, fmt.Errorf("%w: PCR %q", ErrMalformed, parts[0])
	}
	e.PCR = int(p)
	td, err := hex.DecodeString(parts[1])
	if err != nil {
		return e, fmt.Errorf("%w: template digest: %v", ErrMalformed, err)
	}
	name := parts[2]
	if !validTemplateName([]byte(name)) {
		return e, fmt.Errorf("%w: template name %q", ErrMalformed, name)
	}
	rest := parts[3]
	var data []byte
	ent := &IMAEntry{Template: name}
	fields := templateFields(name)
	// The file name may contain spaces; the fields after it (sig, buf) are
	// hex without spaces, so they are split off from the right.
	tail := len(fields) - 2
	tok := strings.SplitN(rest, " ", 2)
	if len(tok) < 2 {
		return e, fmt.Errorf("%w: want file hash and file name", ErrMalformed)
	}
	fh, nameAndTail := tok[0], tok[1]
	var tails []string
	for i := 0; i < tail; i++ {
		j := strings.LastIndexByte(nameAndTail, ' ')
		if j < 0 {
			break
		}
		cand := nameAndTail[j+1:]
		if _, err := hex.DecodeString(cand); err != nil {
			break
		}
		tails = append([]string{cand}, tails...)
		nameAndTail = nameAndTail[:j]
	}
	ent.FileName = nameAndTail
	algName, hexHash, hasAlg := strings.Cut(fh, ":")
	if !hasAlg {
		algName, hexHash = "sha1", fh
	}
	fileHash, err := hex.DecodeString(hexHash)
	if err != nil {
		return e, fmt.Errorf("%w: file hash: %v", ErrMalformed, err)
	}
	ent.FileHash, ent.FileHashAlgName = fileHash, algName
	if name != imaTemplateIMA {
		a, err := alg.ParseHash(algName)
		if err != nil {
			return e, fmt.Errorf("%w: file hash algorithm %q: %v", ErrMalformed, algName, err)
		}
		if a.Size() != len(fileHash) {
			return e, fmt.Errorf("%w: %s file hash of %d bytes", ErrMalformed, algName, len(fileHash))
		}
		ent.FileHashAlg = a
	} else {
		ent.FileHashAlg = alg.SHA1
	}
	field := func(v []byte) {
		data = binary.LittleEndian.AppendUint32(data, uint32(len(v)))
		data = append(data, v...)
		ent.Fields = append(ent.Fields, v)
	}
	if name == imaTemplateIMA {
		ent.Fields = [][]byte{fileHash, []byte(ent.FileName)}
		data = append(append(bytes.Clone(fileHash), binary.LittleEndian.AppendUint32(nil, uint32(len(ent.FileName)))...), ent.FileName...)
	} else {
		for i, f := range fields {
			switch {
			case f == "d-ng" || f == "d-ngv2":
				field(append(append([]byte(algName), ':', 0), fileHash...))
			case f == "n-ng":
				field(append([]byte(ent.FileName), 0))
			case i >= 2 && i-2 < len(tails):
				v, _ := hex.DecodeString(tails[i-2])
				if f == "sig" || f == "buf" {
					ent.Sig = v
				}
				field(v)
			default:
				field(nil)
			}
		}
	}
	e.Data = data
	e.IMA = ent
	bank := bankForSize(len(td))
	if len(td) == 32 && ent.FileHashAlg == alg.SM3_256 {
		bank = alg.SM3_256
	}
	if bank == alg.Null {
		return e, fmt.Errorf("%w: template digest of %d bytes", ErrMalformed, len(td))
	}
	e.Digests = []Digest{{Alg: bank, Value: td}}
	return e, nil
}

// IMAEntryFor builds an ima-ng (or ima-sig, when sig is non-nil) entry for
// a file measured with fileAlg, with template digests in banks.
func IMAEntryFor(pcrIdx int, fileAlg alg.ID, fileHash []byte, name string, sig []byte, banks []alg.ID) Event {
	tmpl := "ima-ng"
	if sig != nil {
		tmpl = "ima-sig"
	}
	var data []byte
	add := func(v []byte) { data = append(binary.LittleEndian.AppendUint32(data, uint32(len(v))), v...) }
	add(append(append([]byte(fileAlg.String()), ':', 0), fileHash...))
	add(append([]byte(name), 0))
	if sig != nil {
		add(sig)
	}
	ent, _ := decodeTemplate(tmpl, data)
	e := Event{PCR: pcrIdx, IndexType: celPCR, Data: data, IMA: ent}
	for _, b := range banks {
		e.Digests = append(e.Digests, Digest{Alg: b, Value: b.Sum(data)})
	}
	return e
}

// WriteIMA encodes events as a binary IMA log with template digests in
// bank (binary_runtime_measurements for SHA-1).
func WriteIMA(events []Event, bank alg.ID) ([]byte, error) {
	var out []byte
	for i := range events {
		e := &events[i]
		d := e.Digest(bank)
		if len(d) != bank.Size() || e.IMA == nil {
			return nil, fmt.Errorf("write IMA log: entry %d lacks a %v template digest or template", i, bank)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(e.PCR))
		out = append(out, d...)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(e.IMA.Template)))
		out = append(out, e.IMA.Template...)
		if e.IMA.Template != imaTemplateIMA {
			out = binary.LittleEndian.AppendUint32(out, uint32(len(e.Data)))
		}
		out = append(out, e.Data...)
	}
	return out, nil
}

// WriteIMAASCII encodes events as ascii_runtime_measurements with template
// digests in bank.
func WriteIMAASCII(events []Event, bank alg.ID) ([]byte, error) {
	var sb strings.Builder
	for i := range events {
		e := &events[i]
		d := e.Digest(bank)
		if len(d) != bank.Size() || e.IMA == nil {
			return nil, fmt.Errorf("write IMA ascii log: entry %d lacks a %v template digest or template", i, bank)
		}
		fmt.Fprintf(&sb, "%d %x %s ", e.PCR, d, e.IMA.Template)
		if e.IMA.Template == imaTemplateIMA {
			fmt.Fprintf(&sb, "%x %s", e.IMA.FileHash, e.IMA.FileName)
		} else {
			fmt.Fprintf(&sb, "%s:%x %s", e.IMA.FileHashAlgName, e.IMA.FileHash, e.IMA.FileName)
			if e.IMA.Template == "ima-sig" || e.IMA.Template == "ima-buf" {
				if len(e.IMA.Sig) > 0 {
					fmt.Fprintf(&sb, " %x", e.IMA.Sig)
				}
			}
		}
		sb.WriteByte('\n')
	}
	return []byte(sb.String()), nil
}

package netconf

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
)

// maxEntries bounds one decoded reply.
const maxEntries = 1 << 20

// preallocEntries caps the scratch slice kept between replies (a page).
const preallocEntries = 4096

// logDecoder decodes log-retrieval replies in one pass over the bytes
// with a small scanner: the replies are the bulk of what the collector
// reads (see BenchmarkDecodeLogs).
type logDecoder struct {
	s      *scanner
	arena  []byte // backing store for decoded binary values
	imas   []eventlog.IMAEntry
	dgs    []eventlog.Digest
	fields [][]byte
	// name is the entry's filename-hint as it is in the reply (or the
	// unescaped copy the general path made), until finishIMA builds the
	// template data around it; names makes the FileName strings.
	name []byte
	// names is how many bytes of file names the reply's entries hold.
	names int
	// general turns fastIMA off (to test that it decides as the general
	// path does).
	general bool
}

// Entries are decoded into a scratch slice kept between replies and
// copied out at their exact count: no growth garbage, and no pass over
// the reply to count them first.
var eventScratch sync.Pool // of *[]eventlog.Event

// grow sizes the next chunk: doubling from 16 up to limit, so a short
// incremental reply (the steady state) allocates little and a long one
// still allocates once per limit entries.
func grow(prev, limit int) int { return min(max(2*prev, 16), limit) }

// newIMA and newDigest hand out entries from chunks, one allocation per
// 256 log entries once a reply is long.
func (ld *logDecoder) newIMA() *eventlog.IMAEntry {
	if len(ld.imas) == cap(ld.imas) {
		ld.imas = make([]eventlog.IMAEntry, 0, grow(cap(ld.imas), 256))
	}
	ld.imas = ld.imas[:len(ld.imas)+1]
	return &ld.imas[len(ld.imas)-1]
}

func (ld *logDecoder) oneDigest(d eventlog.Digest) []eventlog.Digest {
	if len(ld.dgs) == cap(ld.dgs) {
		ld.dgs = make([]eventlog.Digest, 0, grow(cap(ld.dgs), 256))
	}
	ld.dgs = append(ld.dgs, d)
	return ld.dgs[len(ld.dgs)-1 : len(ld.dgs) : len(ld.dgs)]
}

// newFields returns n template-field slots from a chunk.
func (ld *logDecoder) newFields(n int) [][]byte {
	if cap(ld.fields)-len(ld.fields) < n {
		ld.fields = make([][]byte, 0, grow(cap(ld.fields), 768))
	}
	f := ld.fields[len(ld.fields) : len(ld.fields)+n : len(ld.fields)+n]
	ld.fields = ld.fields[:len(ld.fields)+n]
	return f
}

// alloc returns n bytes from the arena (one allocation per 64 KiB of
// decoded values, once a reply is long, instead of one per value).
func (ld *logDecoder) alloc(n int) []byte {
	if cap(ld.arena)-len(ld.arena) < n {
		size := 64 << 10
		if ld.arena == nil {
			// Decoded values are smaller than half the reply's text.
			size = min(size, len(ld.s.b)/2+64)
		}
		ld.arena = make([]byte, 0, max(size, n))
	}
	b := ld.arena[len(ld.arena) : len(ld.arena)+n : len(ld.arena)+n]
	ld.arena = ld.arena[:len(ld.arena)+n]
	return b
}

// b64 decodes standard base64 into the arena.
func (ld *logDecoder) b64(v []byte) ([]byte, error) {
	dst := ld.alloc(base64.StdEncoding.DecodedLen(len(v)))
	if n, ok := decodeB64(dst, v); ok {
		return dst[:n:n], nil
	}
	n, err := base64.StdEncoding.Decode(dst, v)
	return dst[:n:n], err
}

// b64Value maps a standard base64 character to its value; 0xff for any
// other byte.
var b64Value = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" {
		t[c] = byte(i)
	}
	return t
}()

// decodeB64 is the common case of base64.StdEncoding.Decode, padded
// groups of four with nothing else, in one pass (the library's general
// decoder costs more than the rest of a log entry's fields). It returns
// false, having decided nothing, for any other input: line breaks,
// missing or misplaced padding, characters outside the alphabet are the
// library's to judge.
func decodeB64(dst, src []byte) (int, bool) {
	if len(src)%4 != 0 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(src); i += 4 {
		a, b, c, d := b64Value[src[i]], b64Value[src[i+1]], b64Value[src[i+2]], b64Value[src[i+3]]
		if a|b|c|d < 64 { // all four in the alphabet
			dst[n], dst[n+1], dst[n+2] = a<<2|b>>4, b<<4|c>>2, c<<6|d
			n += 3
			continue
		}
		// Only the last group may be padded: "xx==" or "xxx=".
		if i+4 != len(src) || a|b >= 64 || src[i+3] != '=' {
			return 0, false
		}
		switch {
		case src[i+2] == '=':
			dst[n] = a<<2 | b>>4
			return n + 1, true
		case c < 64:
			dst[n], dst[n+1] = a<<2|b>>4, b<<4|c>>2
			return n + 2, true
		}
		return 0, false
	}
	return n, true
}

// parseHash is alg.ParseHash with the names agents send spelled out
// first (it lower-cases and copies its argument).
func parseHash(s string) (alg.ID, error) {
	switch s {
	case "sha1":
		return alg.SHA1, nil
	case "sha256":
		return alg.SHA256, nil
	case "sha384":
		return alg.SHA384, nil
	case "sha512":
		return alg.SHA512, nil
	}
	return alg.ParseHash(s)
}

// logBanks are the banks a log can name, in the order Log.Banks lists
// them.
var logBanks = [...]alg.ID{alg.SHA1, alg.SHA256, alg.SHA384, alg.SHA512, alg.SM3_256}

// bankSet is which of logBanks a reply named.
type bankSet [len(logBanks)]bool

func (bs *bankSet) add(b alg.ID) {
	for i, l := range logBanks {
		if l == b {
			bs[i] = true
		}
	}
}

// parseUint parses a decimal without allocating.
func parseUint(v []byte, bits int) (uint64, error) {
	if len(v) == 0 || len(v) > 20 {
		return 0, errors.New("not a number")
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("not a number: %q", v)
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, errors.New("number out of range")
		}
		n = n*10 + d
	}
	if bits < 64 && n >= 1<<uint(bits) {
		return 0, errors.New("number out of range")
	}
	return n, nil
}

// intern returns a constant string for the common values.
func intern(v []byte) string {
	switch string(v) {
	case "ima-ng":
		return "ima-ng"
	case "ima-sig":
		return "ima-sig"
	case "sha1":
		return "sha1"
	case "sha256":
		return "sha256"
	case "sha384":
		return "sha384"
	case "sha512":
		return "sha512"
	}
	return string(v)
}

func newLogDecoder(b []byte) *logDecoder { return &logDecoder{s: &scanner{b: b}} }

func (ld *logDecoder) decode(logType string) (*eventlog.Log, uint32, error) {
	l := &eventlog.Log{}
	var upTime uint32
	var bankSet bankSet
	var text []byte
	var cur *eventlog.Event
	var curIMA *eventlog.IMAEntry
	var digestAlg alg.ID
	var tmplAlg alg.ID
	switch logType {
	case "bios":
		l.Format = eventlog.FormatTCG
	case "ima", "netequip_boot":
		l.Format = eventlog.FormatIMA
	default:
		return nil, 0, fmt.Errorf("log type %q", logType)
	}
	scratch, _ := eventScratch.Get().(*[]eventlog.Event)
	if scratch == nil {
		scratch = new([]eventlog.Event)
	}
	events := (*scratch)[:0]
	defer func() {
		clear(events) // drop the references before the slice is pooled
		if cap(events) <= preallocEntries {
			*scratch = events[:0]
			eventScratch.Put(scratch)
		}
	}()
	for {
		kind, tok, err := ld.s.next()
		if err != nil {
			return nil, 0, fmt.Errorf("decode log-retrieval reply: %w", err)
		}
		if kind == tokEOF {
			break
		}
		switch kind {
		case tokStart:
			text = text[:0]
			switch string(tok) {
			case "bios-event-entry", "boot-event-entry", "ima-event-entry":
				if len(events) >= maxEntries {
					return nil, 0, errors.New("log-retrieval reply: too many entries")
				}
				events = append(events, eventlog.Event{IndexType: 1})
				cur = &events[len(events)-1]
				ld.name = nil // an entry's file name is its own
				if string(tok) != "bios-event-entry" {
					curIMA = ld.newIMA()
					cur.IMA = curIMA
					ok, err := false, error(nil)
					if !ld.general {
						ok, err = ld.fastIMA(cur, curIMA, &tmplAlg, &bankSet)
					}
					if err == nil && ok {
						err = ld.finishIMA(cur, tmplAlg)
					}
					if err != nil {
						return nil, 0, fmt.Errorf("log entry %d: %w", len(events)-1, err)
					}
					if ok {
						cur, curIMA = nil, nil
					}
				}
			}
		case tokText:
			text = append(text, tok...)
		case tokEnd:
			v := bytes.TrimSpace(text)
			text = text[:0]
			if string(tok) == "up-time" && cur == nil {
				u, _ := parseUint(v, 32)
				upTime = uint32(u)
				continue
			}
			if cur == nil {
				continue
			}
			if err := ld.field(cur, curIMA, tok, v, &digestAlg, &tmplAlg, &bankSet); err != nil {
				return nil, 0, fmt.Errorf("log entry %d: %w", len(events)-1, err)
			}
			switch string(tok) {
			case "bios-event-entry":
				cur = nil
			case "boot-event-entry", "ima-event-entry":
				if err := ld.finishIMA(cur, tmplAlg); err != nil {
					return nil, 0, fmt.Errorf("log entry %d: %w", len(events)-1, err)
				}
				cur, curIMA = nil, nil
			}
		}
	}
	if len(events) > 0 {
		l.Events = slices.Clone(events)
	}
	ld.fileNames(l.Events)
	for i, b := range logBanks {
		if bankSet[i] {
			l.Banks = append(l.Banks, b)
		}
	}
	if l.Format == eventlog.FormatTCG {
		// A bank counts only if every extended event carries it.
		var complete []alg.ID
		for _, b := range l.Banks {
			ok := true
			for i := range l.Events {
				if eventlog.EventType(l.Events[i].Type) != eventlog.EvNoAction && l.Events[i].Digest(b) == nil {
					ok = false
					break
				}
			}
			if ok {
				complete = append(complete, b)
			}
		}
		l.Banks = complete
		for i := range l.Events {
			e := &l.Events[i]
			if eventlog.EventType(e.Type) == eventlog.EvNoAction && e.PCR == 0 && strings.HasPrefix(string(e.Data), "StartupLocality\x00") && len(e.Data) == 17 {
				l.StartupLocality = e.Data[16]
			}
		}
	}
	return l, upTime, nil
}

func (ld *logDecoder) field(e *eventlog.Event, ima *eventlog.IMAEntry, name, v []byte, digestAlg, tmplAlg *alg.ID, banks *bankSet) error {
	if leaf := imaLeafOf(name); leaf >= 0 {
		if ima == nil && leaf != leafNumber && leaf != leafPCR {
			return nil // not a leaf of a bios-event-entry: skipped, as unknown elements are
		}
		if leaf == leafFileName {
			v = bytes.Clone(v) // v is the scanner's buffer
		}
		return ld.imaLeaf(e, ima, leaf, v, tmplAlg, banks)
	}
	var err error
	switch string(name) {
	case "event-type":
		var n uint64
		n, err = parseUint(v, 32)
		e.Type = uint32(n)
	case "hash-algo":
		b, ok := hashByIdentity(localName(string(v)))
		if !ok {
			return fmt.Errorf("hash-algo %q", v)
		}
		*digestAlg = b
		banks.add(b)
	case "digest":
		var d []byte
		if d, err = ld.b64(v); err == nil {
			if len(d) != digestAlg.Size() {
				return fmt.Errorf("%v digest of %d bytes", *digestAlg, len(d))
			}
			e.Digests = append(e.Digests, eventlog.Digest{Alg: *digestAlg, Value: d})
		}
	case "event-data":
		var d []byte
		if d, err = ld.b64(v); err == nil {
			e.Data = append(e.Data, d...)
		}
	}
	return err
}

// fileNames sets the entries' FileName from their template data: one
// string for all of them, cut into the names, instead of one allocation
// per entry.
func (ld *logDecoder) fileNames(events []eventlog.Event) {
	if ld.names == 0 {
		return
	}
	var sb strings.Builder
	sb.Grow(ld.names)
	for i := range events {
		if ima := events[i].IMA; ima != nil && len(ima.Fields) > 1 {
			sb.Write(ima.Fields[1][:len(ima.Fields[1])-1]) // less the NUL
		}
	}
	all := sb.String()
	for i := range events {
		if ima := events[i].IMA; ima != nil && len(ima.Fields) > 1 {
			n := len(ima.Fields[1]) - 1
			ima.FileName, all = all[:n], all[n:]
		}
	}
}

// finishIMA rebuilds the template data the kernel hashed from the fields
// RFC 9684 carries (as for an ASCII log), so every bank can be replayed.
func (ld *logDecoder) finishIMA(e *eventlog.Event, tmplAlg alg.ID) error {
	ima := e.IMA
	if len(e.Digests) != 1 || len(e.Digests[0].Value) != tmplAlg.Size() {
		return errors.New("missing or mis-sized template-hash")
	}
	switch ima.Template {
	case "ima-ng", "ima-sig", "ima-buf":
	default:
		return fmt.Errorf("ima-template %q cannot be rebuilt from RFC 9684 fields", ima.Template)
	}
	// Template data: <len><algo>:\0<hash> <len><name>\0 [<len><sig>],
	// built once in the arena; the fields are slices of it.
	name := ld.name
	ld.name = nil
	ld.names += len(name)
	dl := len(ima.FileHashAlgName) + 2 + len(ima.FileHash)
	nl := len(name) + 1
	size := 4 + dl + 4 + nl
	if ima.Template != "ima-ng" {
		size += 4 + len(ima.Sig)
	}
	data := ld.alloc(size)[:0]
	data = binary.LittleEndian.AppendUint32(data, uint32(dl))
	data = append(append(append(data, ima.FileHashAlgName...), ':', 0), ima.FileHash...)
	data = binary.LittleEndian.AppendUint32(data, uint32(nl))
	data = append(append(data, name...), 0)
	if ima.Template == "ima-ng" {
		ima.Fields = ld.newFields(2)
	} else {
		ima.Fields = ld.newFields(3)
		data = binary.LittleEndian.AppendUint32(data, uint32(len(ima.Sig)))
		data = append(data, ima.Sig...)
		ima.Fields[2] = data[len(data)-len(ima.Sig):]
	}
	ima.Fields[0], ima.Fields[1] = data[4:4+dl], data[8+dl:8+dl+nl]
	e.Data = data
	return nil
}

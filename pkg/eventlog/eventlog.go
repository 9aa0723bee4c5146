// Package eventlog parses, replays and writes the measurement logs a TPM's
// PCRs are checked against:
//
//   - TCG PC Client logs (TCG PC Client Platform Firmware Profile, PFP
//     §10): legacy SHA-1 (TCG_PCR_EVENT) and crypto-agile (TCG_PCR_EVENT2
//     after a Spec ID Event03 header), any banks;
//   - Linux IMA logs (binary and ASCII; ima, ima-ng, ima-sig, ima-buf and
//     custom templates; per-bank template digests);
//   - TCG Canonical Event Logs (CEL: TLV, JSON and CBOR encodings; PCR and
//     NV-index records).
//
// As in go-attestation, parsing and verifying are separate steps: Parse
// returns untrusted data, Replay computes the PCR values the log claims,
// and only a comparison with quoted PCRs (Verify) makes any of it trusted.
package eventlog

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
)

// Format is the encoding of a log.
type Format int

// Formats RIV reads.
const (
	FormatAuto     Format = iota
	FormatTCG             // TCG PC Client binary (legacy SHA-1 or crypto-agile)
	FormatIMA             // IMA binary_runtime_measurements
	FormatIMAASCII        // IMA ascii_runtime_measurements
	FormatCELTLV
	FormatCELJSON
	FormatCELCBOR
)

var formatNames = map[Format]string{
	FormatAuto: "auto", FormatTCG: "tcg", FormatIMA: "ima", FormatIMAASCII: "ima-ascii",
	FormatCELTLV: "cel-tlv", FormatCELJSON: "cel-json", FormatCELCBOR: "cel-cbor",
}

func (f Format) String() string { return formatNames[f] }

// ParseFormat maps a --format value to a Format.
func ParseFormat(s string) (Format, error) {
	for f, n := range formatNames {
		if n == s {
			return f, nil
		}
	}
	return 0, fmt.Errorf("unknown log format %q (want auto, tcg, ima, ima-ascii, cel-tlv, cel-json or cel-cbor)", s)
}

// Errors.
var (
	// ErrMalformed wraps every parse failure of untrusted bytes.
	ErrMalformed = errors.New("malformed event log")
	// ErrUnknownFormat means auto-detection recognised nothing.
	ErrUnknownFormat = errors.New("unrecognised event log format")
	// ErrMissingBank means a replay asked for a bank the log lacks.
	ErrMissingBank = errors.New("event log has no digests for bank")
)

// Digest is one hash of an event.
type Digest struct {
	Alg   alg.ID
	Value []byte
}

// Event is one measurement. All fields are untrusted.
type Event struct {
	Seq     int    // position in the log (record number for CEL)
	PCR     int    // PCR index; -1 when the record extends something else
	NVIndex uint32 // CEL NV-index records (IndexType 2)
	// IndexType is the CEL index kind: 1 PCR, 2 NV index, or another
	// register type (go-tpm-tools uses 108 for a CC measurement register,
	// kept in Register). TCG and IMA events are PCR events.
	IndexType uint8
	Register  uint32
	Type      uint32 // TCG event type; 0 for IMA
	Digests   []Digest
	Data      []byte // event data; IMA template data; CEL content value

	// IMA entries carry their template; CEL records their content type.
	IMA         *IMAEntry
	ContentType uint8

	// Anomaly is set when the digest cannot be a measurement of Data where
	// the spec defines it as H(Data) (separators, EFI actions, secure-boot
	// variables). Replay still extends the digest, as the TPM did; the
	// appraiser must treat the event's data as a lie.
	Anomaly string
}

// Digest returns the event's digest in bank a, or nil.
func (e *Event) Digest(a alg.ID) []byte {
	for _, d := range e.Digests {
		if d.Alg == a {
			return d.Value
		}
	}
	return nil
}

// TypeName returns the event type name (EV_...) of a TCG event.
func (e *Event) TypeName() string { return EventType(e.Type).String() }

// SpecID is the TCG_EfiSpecIdEvent of a crypto-agile log (PFP §10.4.5.1).
type SpecID struct {
	Signature     string
	PlatformClass uint32
	VersionMajor  uint8
	VersionMinor  uint8
	Errata        uint8
	UintnSize     uint8
	Algs          []SpecAlg
	VendorInfo    []byte
}

// SpecAlg is one algorithm of a Spec ID event and its digest size.
type SpecAlg struct {
	Alg  alg.ID
	Size int
}

// size returns the digest size the Spec ID gives for a, or -1. A linear
// scan: logs list two or three algorithms, and this runs per digest.
func (s *SpecID) size(a alg.ID) int {
	for _, x := range s.Algs {
		if x.Alg == a {
			return x.Size
		}
	}
	return -1
}

// Log is a parsed event log.
type Log struct {
	Format Format
	// Banks are the hash algorithms the log carries digests for (for IMA
	// logs: the template-digest bank; other banks are replayed by
	// re-hashing template data).
	Banks  []alg.ID
	SpecID *SpecID // crypto-agile TCG logs only
	// StartupLocality is the locality of TPM2_Startup from the
	// "StartupLocality" EV_NO_ACTION event (PFP §10.4.5.3); it seeds PCR 0.
	StartupLocality uint8
	Events          []Event
}

// Parse decodes raw in the given format (FormatAuto detects it).
func Parse(raw []byte, f Format) (*Log, error) {
	if f == FormatAuto {
		var err error
		if f, err = Detect(raw); err != nil {
			return nil, err
		}
	}
	switch f {
	case FormatTCG:
		return ParseTCG(raw)
	case FormatIMA:
		return ParseIMA(raw)
	case FormatIMAASCII:
		return ParseIMAASCII(raw)
	case FormatCELTLV:
		return ParseCELTLV(raw)
	case FormatCELJSON:
		return ParseCELJSON(raw)
	case FormatCELCBOR:
		return ParseCELCBOR(raw)
	}
	return nil, fmt.Errorf("%w: %v", ErrUnknownFormat, f)
}

// Detect guesses the format of raw from its first bytes.
func Detect(raw []byte) (Format, error) {
	trim := bytes.TrimLeft(raw, " \t\r\n")
	switch {
	case len(raw) == 0:
		return 0, fmt.Errorf("%w: empty input", ErrMalformed)
	case len(trim) > 0 && (trim[0] == '[' || trim[0] == '{'):
		return FormatCELJSON, nil
	case looksLikeIMAASCII(raw):
		return FormatIMAASCII, nil
	case looksLikeIMABinary(raw):
		return FormatIMA, nil
	case looksLikeCELTLV(raw):
		return FormatCELTLV, nil
	case looksLikeCELCBOR(raw):
		return FormatCELCBOR, nil
	case looksLikeTCG(raw):
		return FormatTCG, nil
	}
	return 0, fmt.Errorf("%w: not a TCG, IMA or CEL log", ErrUnknownFormat)
}

// ReplayOptions tunes Replay.
type ReplayOptions struct {
	// Banks to compute; empty means every bank the log carries.
	Banks []alg.ID
	// IMAPadSHA1 replays IMA logs as kernels before 5.8 extended them: the
	// SHA-1 template digest zero-padded into every other bank, instead of
	// that bank's hash of the template data.
	IMAPadSHA1 bool
	// From continues an earlier replay: PCRs start at these values (the
	// result of replaying the events before this log's) instead of their
	// reset values, and the result carries them even when untouched. A
	// collector that fetched only new entries replays just those.
	From pcr.Values
}

// Replay computes the PCR values the log claims, per bank: PCRs start at
// their reset value (PCR 0 at the startup locality, PCRs 17–22 at all
// ones), EV_NO_ACTION events are never extended, and IMA violations extend
// all ones. Only PCRs the log touches appear in the result.
func (l *Log) Replay(opts ReplayOptions) (pcr.Values, error) {
	banks := opts.Banks
	if len(banks) == 0 {
		banks = l.Banks
	}
	out := pcr.Values{}
	for _, b := range banks {
		if !b.IsHash() {
			return nil, fmt.Errorf("%w: %v", ErrMissingBank, b)
		}
		var vals map[int][]byte
		var err error
		switch l.Format {
		case FormatIMA, FormatIMAASCII:
			vals, err = l.replayIMA(b, opts.IMAPadSHA1, opts.From[b])
		default:
			vals, err = l.replayDigests(b, nil, opts.From[b])
		}
		if err != nil {
			return nil, err
		}
		for i, v := range opts.From[b] {
			if _, ok := vals[i]; !ok {
				vals[i] = bytes.Clone(v)
			}
		}
		if len(vals) > 0 {
			out[b] = vals
		}
	}
	return out, nil
}

// replayDigests extends each event's digest in bank b. extra events (from
// a quirk) are appended after the log's own. One hash and a fixed array of
// PCR states serve the whole replay: it allocates per bank, not per event.
func (l *Log) replayDigests(b alg.ID, extra []Event, from map[int][]byte) (map[int][]byte, error) {
	h, err := b.New()
	if err != nil {
		return nil, err
	}
	size := b.Size()
	var state [32][64]byte
	var touched uint32
	ext := func(e *Event) error {
		if e.PCR < 0 || (l.Format == FormatTCG && EventType(e.Type) == EvNoAction) {
			return nil
		}
		d := e.Digest(b)
		if d == nil {
			return fmt.Errorf("%w: %v: event %d (PCR %d) has no digest in it (log has %v)", ErrMissingBank, b, e.Seq, e.PCR, l.Banks)
		}
		st := &state[e.PCR]
		if touched&(1<<uint(e.PCR)) == 0 {
			touched |= 1 << uint(e.PCR)
			if f := from[e.PCR]; len(f) == size {
				copy(st[:size], f)
			} else {
				copy(st[:size], pcr.Initial(b, e.PCR))
				if e.PCR == 0 {
					st[size-1] = l.StartupLocality
				}
			}
		}
		h.Reset()
		h.Write(st[:size])
		h.Write(d)
		h.Sum(st[:0])
		return nil
	}
	for i := range l.Events {
		if err := ext(&l.Events[i]); err != nil {
			return nil, err
		}
	}
	for i := range extra {
		if err := ext(&extra[i]); err != nil {
			return nil, err
		}
	}
	vals := map[int][]byte{}
	for i := 0; i < 32; i++ {
		if touched&(1<<uint(i)) != 0 {
			vals[i] = append([]byte(nil), state[i][:size]...)
		}
	}
	return vals, nil
}

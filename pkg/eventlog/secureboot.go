package eventlog

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"unicode/utf16"
)

// GUIDs of UEFI variables and signature types (UEFI 2.10 §32.4.1, §3.3).
var (
	guidGlobalVariable = [16]byte{0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}
	guidImageSecurity  = [16]byte{0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f}
	guidCertX509       = [16]byte{0xa1, 0x59, 0xc0, 0xa5, 0xe4, 0x94, 0xa7, 0x4a, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72}
	guidCertSHA256     = [16]byte{0x26, 0x16, 0xc4, 0xc1, 0x4c, 0x50, 0x92, 0x40, 0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28}
)

// UEFIVariable is a UEFI_VARIABLE_DATA (PFP §10.4.4.1). Untrusted.
type UEFIVariable struct {
	GUID [16]byte
	Name string
	Data []byte
}

// ParseUEFIVariable decodes the event data of EV_EFI_VARIABLE_* events.
func ParseUEFIVariable(b []byte) (*UEFIVariable, error) {
	r := newLE(b)
	v := &UEFIVariable{}
	copy(v.GUID[:], r.Bytes(16, "VariableName GUID"))
	nameLen := r.U64("UnicodeNameLength")
	dataLen := r.U64("VariableDataLength")
	if r.Err == nil && (nameLen > uint64(r.Left()/2) || dataLen > uint64(r.Left())) {
		return nil, fmt.Errorf("%w: UEFI variable lengths %d/%d exceed the event", ErrMalformed, nameLen, dataLen)
	}
	raw := r.Bytes(int(nameLen)*2, "UnicodeName")
	v.Data = r.Bytes(int(dataLen), "VariableData")
	if r.Err != nil {
		return nil, r.Err
	}
	u := make([]uint16, nameLen)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(raw[2*i:])
	}
	v.Name = string(utf16.Decode(u))
	return v, nil
}

// SignatureEntry is one entry of an EFI_SIGNATURE_LIST.
type SignatureEntry struct {
	Type    string // "x509", "sha256" or the type GUID in hex
	Owner   [16]byte
	Data    []byte
	Subject string // for x509 entries that parse
}

// ParseSignatureLists decodes a sequence of EFI_SIGNATURE_LISTs (the
// contents of PK, KEK, db, dbx; UEFI 2.10 §32.4.1).
func ParseSignatureLists(b []byte) ([]SignatureEntry, error) {
	var out []SignatureEntry
	r := newLE(b)
	for r.Left() > 0 {
		var typ [16]byte
		copy(typ[:], r.Bytes(16, "SignatureType"))
		listSize := r.U32("SignatureListSize")
		hdrSize := r.U32("SignatureHeaderSize")
		sigSize := r.U32("SignatureSize")
		if r.Err != nil {
			return nil, r.Err
		}
		if listSize < 28 || sigSize < 16 || uint64(listSize) < 28+uint64(hdrSize) || (uint64(listSize)-28-uint64(hdrSize))%uint64(sigSize) != 0 {
			return nil, fmt.Errorf("%w: EFI_SIGNATURE_LIST sizes %d/%d/%d", ErrMalformed, listSize, hdrSize, sigSize)
		}
		r.Bytes(int(hdrSize), "SignatureHeader")
		body := newLE(r.Bytes(int(listSize-28-hdrSize), "signatures"))
		if r.Err != nil {
			return nil, r.Err
		}
		for body.Left() > 0 {
			e := sigEntry(typ, body.Bytes(int(sigSize), "signature"))
			out = append(out, e)
		}
	}
	return out, nil
}

func sigEntry(typ [16]byte, b []byte) SignatureEntry {
	e := SignatureEntry{Data: b[16:]}
	copy(e.Owner[:], b[:16])
	switch typ {
	case guidCertX509:
		e.Type = "x509"
		if c, err := x509.ParseCertificate(e.Data); err == nil {
			e.Subject = c.Subject.String()
		}
	case guidCertSHA256:
		e.Type = "sha256"
	default:
		e.Type = fmt.Sprintf("%x", typ)
	}
	return e
}

// SecureBootState is what the PCR 7 events of a log say about Secure Boot
// (PFP §3.3.4.8, §10.4.4). Untrusted until the log replays to a quote.
type SecureBootState struct {
	Enabled          bool
	SetupMode        bool
	DeployedMode     bool
	PK, KEK, DB, DBX []SignatureEntry
	// Authorities are the db entries (EV_EFI_VARIABLE_AUTHORITY) that
	// verified boot components.
	Authorities []SignatureEntry
	// Problems lists events that could not be decoded.
	Problems []string
	// Conflicts lists what makes the state untrustworthy: a SecureBoot
	// variable measured twice with different values, or measured after
	// PCR 7's separator (where firmware never measures it, but anyone
	// who can extend PCR 7 from the OS can). Enabled is false with any.
	Conflicts []string
}

// SecureBoot extracts the Secure Boot configuration from a TCG log.
//
// The policy variables count only as firmware measures them, before
// PCR 7's separator (PFP §3.3.4.8); the value of SecureBoot is the one
// measured there, and only if it is measured once or always alike.
func (l *Log) SecureBoot() *SecureBootState { return l.secureBoot(true) }

// SecureBootMode is SecureBoot's verdict alone — whether Secure Boot is
// on, and the conflicts that say it is not — without parsing the
// signature databases and authorities (a verifier's every poll needs
// only this; the lists are for reports).
func (l *Log) SecureBootMode() (enabled bool, conflicts []string) {
	s := l.secureBoot(false)
	return s.Enabled, s.Conflicts
}

func (l *Log) secureBoot(lists bool) *SecureBootState {
	s := &SecureBootState{}
	separated := false
	var sbValue []byte
	sbSeen := false
	for i := range l.Events {
		e := &l.Events[i]
		if e.PCR != 7 {
			continue
		}
		switch EventType(e.Type) {
		case EvSeparator:
			separated = true
		case EvEFIVariableDriverConfig:
			v, err := ParseUEFIVariable(e.Data)
			if err != nil {
				s.Problems = append(s.Problems, fmt.Sprintf("event %d: %v", e.Seq, err))
				continue
			}
			isSB := v.GUID == guidGlobalVariable && v.Name == "SecureBoot"
			if separated {
				if isSB {
					s.Conflicts = append(s.Conflicts, fmt.Sprintf("event %d measures SecureBoot after PCR 7's separator", e.Seq))
				}
				continue
			}
			if isSB {
				if sbSeen && !bytes.Equal(sbValue, v.Data) {
					s.Conflicts = append(s.Conflicts, fmt.Sprintf("event %d measures SecureBoot again with another value", e.Seq))
				}
				sbSeen, sbValue = true, v.Data
			}
			s.addVariable(e.Seq, v, lists)
		case EvEFIVariableAuthority:
			if !lists {
				continue
			}
			v, err := ParseUEFIVariable(e.Data)
			if err != nil {
				s.Problems = append(s.Problems, fmt.Sprintf("event %d: %v", e.Seq, err))
				continue
			}
			if len(v.Data) >= 16 {
				s.Authorities = append(s.Authorities, sigEntry(guidCertX509, v.Data))
			} else {
				// Some shims log a bare string authority (e.g. "MokListRT").
				s.Authorities = append(s.Authorities, SignatureEntry{Type: "data", Data: v.Data})
			}
		}
	}
	if len(s.Conflicts) > 0 {
		s.Enabled = false
	}
	return s
}

func (s *SecureBootState) addVariable(seq int, v *UEFIVariable, lists bool) {
	var list *[]SignatureEntry
	switch {
	case v.GUID == guidGlobalVariable && v.Name == "SecureBoot":
		if len(v.Data) == 1 {
			s.Enabled = v.Data[0] == 1
		} else if len(v.Data) > 1 {
			s.Problems = append(s.Problems, fmt.Sprintf("event %d: SecureBoot data len is %d", seq, len(v.Data)))
		}
		return
	case v.GUID == guidGlobalVariable && v.Name == "SetupMode":
		s.SetupMode = len(v.Data) == 1 && v.Data[0] == 1
		return
	case v.GUID == guidGlobalVariable && v.Name == "DeployedMode":
		s.DeployedMode = len(v.Data) == 1 && v.Data[0] == 1
		return
	case v.GUID == guidGlobalVariable && v.Name == "PK":
		list = &s.PK
	case v.GUID == guidGlobalVariable && v.Name == "KEK":
		list = &s.KEK
	case v.GUID == guidImageSecurity && v.Name == "db":
		list = &s.DB
	case v.GUID == guidImageSecurity && v.Name == "dbx":
		list = &s.DBX
	default:
		return
	}
	if !lists {
		return
	}
	entries, err := ParseSignatureLists(v.Data)
	if err != nil {
		s.Problems = append(s.Problems, fmt.Sprintf("event %d (%s): %v", seq, v.Name, err))
	}
	*list = append(*list, entries...)
}

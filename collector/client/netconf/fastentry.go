package netconf

import (
	"bytes"
	"fmt"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
)

// An IMA-style entry (boot-event-entry, ima-event-entry) as the agent
// renders it: its leaves in schema order, no whitespace, no prefixes,
// no character references. fastIMA decodes that form by matching the
// tags in order instead of scanning token by token (a third of the time
// per entry); anything else — other order, attributes, comments,
// escapes, unknown leaves — leaves it to the general scanner, which
// decides every such case on its own.

// imaLeaf is one leaf of an entry in schema order; optional leaves may
// be absent.
type imaLeaf struct {
	open, close string
	optional    bool
}

var imaLeaves = [...]imaLeaf{
	{"<event-number>", "</event-number>", false},
	{"<ima-template>", "</ima-template>", true},
	{"<filename-hint>", "</filename-hint>", true},
	{"<filedata-hash>", "</filedata-hash>", true},
	{"<filedata-hash-algorithm>", "</filedata-hash-algorithm>", true},
	{"<template-hash-algorithm>", "</template-hash-algorithm>", false},
	{"<template-hash>", "</template-hash>", false},
	{"<pcr-index>", "</pcr-index>", false},
	{"<signature>", "</signature>", true},
}

// imaLeaf decodes the value v of the entry's leaf (its position in
// imaLeaves) into e and ima, for both paths. v must outlive the entry:
// the file name stays in it until finishIMA builds the template data.
// event-number and pcr-index are bios entries' leaves too (ima unused).
func (ld *logDecoder) imaLeaf(e *eventlog.Event, ima *eventlog.IMAEntry, leaf int, v []byte, tmplAlg *alg.ID, banks *bankSet) error {
	var err error
	switch leaf {
	case leafNumber:
		var n uint64
		n, err = parseUint(v, 31)
		e.Seq = int(n)
	case leafPCR:
		var n uint64
		n, err = parseUint(v, 8)
		if n > 31 {
			err = fmt.Errorf("pcr-index %d", n)
		}
		e.PCR = int(n)
	case leafTemplate:
		ima.Template = intern(v)
	case leafFileName:
		ld.name = v
	case leafFileHash:
		ima.FileHash, err = ld.b64(v)
	case leafFileHashAlg:
		ima.FileHashAlgName = intern(v)
		ima.FileHashAlg, _ = parseHash(ima.FileHashAlgName)
	case leafTmplAlg:
		b, perr := parseHash(intern(v))
		if perr != nil {
			return fmt.Errorf("template-hash-algorithm %q", v)
		}
		*tmplAlg = b
		banks.add(b)
	case leafTmplHash:
		var d []byte
		if d, err = ld.b64(v); err == nil {
			e.Digests = ld.oneDigest(eventlog.Digest{Alg: *tmplAlg, Value: d})
		}
	case leafSig:
		ima.Sig, err = ld.b64(v)
	}
	return err
}

// imaLeafOf is the position in imaLeaves of a leaf named name, or -1.
func imaLeafOf(name []byte) int {
	for i := range imaLeaves {
		if l := imaLeaves[i].open; string(name) == l[1:len(l)-1] {
			return i
		}
	}
	return -1
}

// Leaf positions in imaLeaves.
const (
	leafNumber = iota
	leafTemplate
	leafFileName
	leafFileHash
	leafFileHashAlg
	leafTmplAlg
	leafTmplHash
	leafPCR
	leafSig
	nLeaves
)

// fastIMA decodes one entry whose start tag has just been read (the
// top of the scanner's stack), from the scanner's position, into cur
// and ima. It reports false, having changed
// nothing but possibly the arena, when the entry is not in the
// canonical form; true with the entry decoded and the scanner past its
// end tag; or an error for a canonical entry with a bad value (the same
// errors the general path gives).
func (ld *logDecoder) fastIMA(cur *eventlog.Event, ima *eventlog.IMAEntry, tmplAlg *alg.ID, banks *bankSet) (bool, error) {
	s := ld.s
	if s.pendingEnd != nil || len(s.stack) == 0 {
		return false, nil // <boot-event-entry/>
	}
	tag := s.name(s.stack[len(s.stack)-1])
	b := s.b[s.i:]
	var vals [nLeaves][]byte
	var have [nLeaves]bool
	for i := range imaLeaves {
		l := &imaLeaves[i]
		if !hasPrefix(b, l.open) {
			if l.optional {
				continue
			}
			return false, nil
		}
		b = b[len(l.open):]
		j := bytes.IndexByte(b, '<')
		if j < 0 {
			return false, nil
		}
		v := b[:j]
		// Surrounding white space (bytes.TrimSpace's: ASCII and
		// Unicode) is trimmed by the general path: left to it.
		if len(v) > 0 && (edgy(v[0]) || edgy(v[len(v)-1])) || bytes.IndexByte(v, '&') >= 0 || !hasPrefix(b[j:], l.close) {
			return false, nil
		}
		vals[i], have[i] = v, true
		b = b[j+len(l.close):]
	}
	// The entry's end tag: "</" + the name the start tag used.
	if len(b) < len(tag)+3 || b[0] != '<' || b[1] != '/' || !bytes.Equal(b[2:2+len(tag)], tag) || b[2+len(tag)] != '>' {
		return false, nil
	}
	// Canonical: each value decoded as the general path decodes it.
	for i, v := range vals {
		if have[i] {
			if err := ld.imaLeaf(cur, ima, i, v, tmplAlg, banks); err != nil {
				return true, err
			}
		}
	}
	// Past the end tag, which the scanner has open.
	s.i = len(s.b) - len(b) + len(tag) + 3
	s.stack = s.stack[:len(s.stack)-1]
	return true, nil
}

// edgy is a byte at a value's edge that may be (part of) white space.
func edgy(c byte) bool { return c <= ' ' || c >= 0x80 }

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

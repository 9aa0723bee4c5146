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
	if have[leafFileHash] != have[leafFileHashAlg] {
		return false, nil // left to the general path's judgement
	}
	// Canonical: decode the values as field does.
	n, err := parseUint(vals[leafNumber], 31)
	if err != nil {
		return true, err
	}
	cur.Seq = int(n)
	if have[leafTemplate] {
		ima.Template = intern(vals[leafTemplate])
	}
	// The name stays in the reply until decode makes one string of all
	// the names (see names).
	ld.name = vals[leafFileName]
	if have[leafFileHash] {
		if ima.FileHash, err = ld.b64(vals[leafFileHash]); err != nil {
			return true, err
		}
		ima.FileHashAlgName = intern(vals[leafFileHashAlg])
		ima.FileHashAlg, _ = parseHash(ima.FileHashAlgName)
	}
	if *tmplAlg, err = parseHash(intern(vals[leafTmplAlg])); err != nil {
		return true, fmt.Errorf("template-hash-algorithm %q", vals[leafTmplAlg])
	}
	banks.add(*tmplAlg)
	d, err := ld.b64(vals[leafTmplHash])
	if err != nil {
		return true, err
	}
	cur.Digests = ld.oneDigest(eventlog.Digest{Alg: *tmplAlg, Value: d})
	if n, err = parseUint(vals[leafPCR], 8); err != nil {
		return true, err
	} else if n > 31 {
		return true, fmt.Errorf("pcr-index %d", n)
	}
	cur.PCR = int(n)
	if have[leafSig] {
		if ima.Sig, err = ld.b64(vals[leafSig]); err != nil {
			return true, err
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

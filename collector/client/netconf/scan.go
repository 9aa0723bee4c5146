package netconf

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// scanner is a small XML tokenizer for the agent's replies: elements,
// text, attributes skipped, comments/PIs skipped, CDATA and the five
// predefined entities plus character references decoded, end tags checked
// against start tags. encoding/xml spends about 12 µs per log entry on
// allocation-heavy tokens; log-retrieval replies are the bulk of what a
// collector reads, so this one works on the byte slice in place.
type scanner struct {
	b     []byte
	i     int
	stack []openTag
	text  []byte // reusable buffer for unescaped text
	// pendingEnd is the end of a self-closing element, returned next.
	pendingEnd []byte
}

// openTag is an element whose end tag is due: where its qualified name
// is in the input (to check the end tag against) and where its local
// name starts (to return). Offsets, not slices: a stack of pointers
// costs a write barrier per push while the collector marks, which was a
// fifth of a log decode.
type openTag struct{ start, end, local int32 }

func (s *scanner) name(t openTag) []byte  { return s.b[t.start:t.end:t.end] }
func (s *scanner) local(t openTag) []byte { return s.b[t.local:t.end:t.end] }

// nameStop marks the bytes that end an element name in a start tag.
var nameStop = [256]bool{' ': true, '\t': true, '\n': true, '\r': true, '>': true, '/': true}

type tokKind int

const (
	tokEOF tokKind = iota
	tokStart
	tokEnd
	tokText
)

var errXML = errors.New("malformed XML")

// maxDepth bounds nesting (the deepest RFC 9684 reply is about 10).
const maxDepth = 64

func localOf(name []byte) []byte {
	if i := bytes.IndexByte(name, ':'); i >= 0 {
		return name[i+1:]
	}
	return name
}

// next returns the next token: the local name for start/end tags, the
// text (valid until the next call) for character data.
func (s *scanner) next() (tokKind, []byte, error) {
	if s.pendingEnd != nil {
		n := s.pendingEnd
		s.pendingEnd = nil
		return tokEnd, n, nil
	}
	if s.i >= len(s.b) {
		if len(s.stack) > 0 {
			return 0, nil, fmt.Errorf("%w: unclosed <%s>", errXML, s.name(s.stack[len(s.stack)-1]))
		}
		return tokEOF, nil, nil
	}
	if s.b[s.i] != '<' {
		j := bytes.IndexByte(s.b[s.i:], '<')
		if j < 0 {
			j = len(s.b) - s.i
		}
		raw := s.b[s.i : s.i+j]
		s.i += j
		t, err := s.unescape(raw)
		return tokText, t, err
	}
	rest := s.b[s.i+1:]
	if len(rest) > 0 && rest[0] == '/' {
		// End tag, usually exactly the name that is open.
		if len(s.stack) == 0 {
			return 0, nil, fmt.Errorf("%w: unexpected end tag", errXML)
		}
		top := s.stack[len(s.stack)-1]
		topName := s.name(top)
		if n := len(topName); len(rest) > n+1 && rest[n+1] == '>' && bytes.Equal(rest[1:n+1], topName) {
			s.stack = s.stack[:len(s.stack)-1]
			s.i += n + 3
			return tokEnd, s.local(top), nil
		}
		end := bytes.IndexByte(rest, '>')
		if end < 0 {
			return 0, nil, fmt.Errorf("%w: unterminated end tag", errXML)
		}
		name := bytes.TrimSpace(rest[1:end])
		if !bytes.Equal(topName, name) {
			return 0, nil, fmt.Errorf("%w: unexpected </%s>", errXML, name)
		}
		s.stack = s.stack[:len(s.stack)-1]
		s.i += 1 + end + 1
		return tokEnd, s.local(top), nil
	}
	if len(rest) > 0 && (rest[0] == '!' || rest[0] == '?') {
		switch {
		case bytes.HasPrefix(rest, []byte("![CDATA[")):
			end := bytes.Index(rest, []byte("]]>"))
			if end < 0 {
				return 0, nil, fmt.Errorf("%w: unterminated CDATA", errXML)
			}
			t := rest[8:end]
			s.i += 1 + end + 3
			return tokText, t, nil
		case bytes.HasPrefix(rest, []byte("!--")):
			end := bytes.Index(rest, []byte("-->"))
			if end < 0 {
				return 0, nil, fmt.Errorf("%w: unterminated comment", errXML)
			}
			s.i += 1 + end + 3
			return s.next()
		}
		end := bytes.IndexByte(rest, '>')
		if end < 0 {
			return 0, nil, fmt.Errorf("%w: unterminated declaration", errXML)
		}
		s.i += 1 + end + 1
		return s.next()
	}
	// Start tag: name, then attributes (skipped, quotes respected).
	j, colon := 0, -1
	for j < len(rest) && !nameStop[rest[j]] {
		if rest[j] == ':' && colon < 0 {
			colon = j
		}
		j++
	}
	if j == 0 || j == len(rest) {
		return 0, nil, fmt.Errorf("%w: bad start tag", errXML)
	}
	if len(s.b) > math.MaxInt32 {
		return 0, nil, fmt.Errorf("%w: document of %d bytes", errXML, len(s.b))
	}
	start := int32(s.i + 1)
	tag := openTag{start: start, end: start + int32(j), local: start + int32(colon+1)}
	local := s.local(tag)
	var q byte
	for ; j < len(rest); j++ {
		c := rest[j]
		switch {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case c == '>':
			selfClose := rest[j-1] == '/'
			s.i += 1 + j + 1
			if selfClose {
				s.pendingEnd = local
				return tokStart, local, nil
			}
			if len(s.stack) >= maxDepth {
				return 0, nil, fmt.Errorf("%w: nesting deeper than %d", errXML, maxDepth)
			}
			s.stack = append(s.stack, tag)
			return tokStart, local, nil
		}
	}
	return 0, nil, fmt.Errorf("%w: unterminated start tag", errXML)
}

// unescape decodes entity and character references; raw is returned as
// is when it has none.
func (s *scanner) unescape(raw []byte) ([]byte, error) {
	if bytes.IndexByte(raw, '&') < 0 {
		return raw, nil
	}
	out := s.text[:0]
	for len(raw) > 0 {
		k := bytes.IndexByte(raw, '&')
		if k < 0 {
			out = append(out, raw...)
			break
		}
		out = append(out, raw[:k]...)
		raw = raw[k:]
		semi := bytes.IndexByte(raw, ';')
		if semi < 0 || semi > 12 {
			return nil, fmt.Errorf("%w: bad entity", errXML)
		}
		ent := string(raw[1:semi])
		switch ent {
		case "lt":
			out = append(out, '<')
		case "gt":
			out = append(out, '>')
		case "amp":
			out = append(out, '&')
		case "quot":
			out = append(out, '"')
		case "apos":
			out = append(out, '\'')
		default:
			if len(ent) < 2 || ent[0] != '#' {
				return nil, fmt.Errorf("%w: unknown entity &%s;", errXML, ent)
			}
			var n uint64
			var err error
			if ent[1] == 'x' {
				n, err = strconv.ParseUint(ent[2:], 16, 32)
			} else {
				n, err = strconv.ParseUint(ent[1:], 10, 32)
			}
			if err != nil || !utf8.ValidRune(rune(n)) {
				return nil, fmt.Errorf("%w: bad character reference &%s;", errXML, ent)
			}
			out = utf8.AppendRune(out, rune(n))
		}
		raw = raw[semi+1:]
	}
	s.text = out
	return out, nil
}

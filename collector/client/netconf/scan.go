package netconf

import (
	"bytes"
	"errors"
	"fmt"
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
	stack [][]byte
	text  []byte // reusable buffer for unescaped text
	// pendingEnd is the end of a self-closing element, returned next.
	pendingEnd []byte
}

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
			return 0, nil, fmt.Errorf("%w: unclosed <%s>", errXML, s.stack[len(s.stack)-1])
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
	case len(rest) > 0 && (rest[0] == '?' || rest[0] == '!'):
		end := bytes.IndexByte(rest, '>')
		if end < 0 {
			return 0, nil, fmt.Errorf("%w: unterminated declaration", errXML)
		}
		s.i += 1 + end + 1
		return s.next()
	case len(rest) > 0 && rest[0] == '/':
		end := bytes.IndexByte(rest, '>')
		if end < 0 {
			return 0, nil, fmt.Errorf("%w: unterminated end tag", errXML)
		}
		name := bytes.TrimSpace(rest[1:end])
		if len(s.stack) == 0 || !bytes.Equal(s.stack[len(s.stack)-1], name) {
			return 0, nil, fmt.Errorf("%w: unexpected </%s>", errXML, name)
		}
		s.stack = s.stack[:len(s.stack)-1]
		s.i += 1 + end + 1
		return tokEnd, localOf(name), nil
	}
	// Start tag: name, then attributes (skipped, quotes respected).
	j := 0
	for j < len(rest) && rest[j] != ' ' && rest[j] != '\t' && rest[j] != '\n' && rest[j] != '\r' && rest[j] != '>' && rest[j] != '/' {
		j++
	}
	if j == 0 || j == len(rest) {
		return 0, nil, fmt.Errorf("%w: bad start tag", errXML)
	}
	name := rest[:j]
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
				s.pendingEnd = localOf(name)
				return tokStart, localOf(name), nil
			}
			if len(s.stack) >= maxDepth {
				return 0, nil, fmt.Errorf("%w: nesting deeper than %d", errXML, maxDepth)
			}
			s.stack = append(s.stack, name)
			return tokStart, localOf(name), nil
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

package netconf

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	nc "github.com/nemith/netconf"
	"github.com/nemith/netconf/transport"
)

// The client's own session layer over nemith's framing transports. The
// library's Session decodes every reply with encoding/xml before handing
// it over; a log-retrieval reply is mostly base64 template data, and that
// pass cost ~25 µs per entry, more than everything else in a poll. Here a
// reply is read once and only its envelope is scanned; the body goes to
// the scanners in this package untouched.

const (
	nsBase = "urn:ietf:params:xml:ns:netconf:base:1.0"
	// maxReply bounds one reply message; a full page of log entries is
	// a few MiB.
	maxReply = 64 << 20
	maxHello = 1 << 20
)

type session struct {
	tr     transport.Transport
	mu     sync.Mutex // one RPC in flight: a collector polls sequentially
	nextID uint64
	id     uint64 // the server's session-id
	broken error  // set once the stream is out of step
}

// openSession exchanges hellos and switches to chunked framing when both
// sides speak base:1.1.
func openSession(tr transport.Transport) (*session, error) {
	s := &session{tr: tr}
	w, err := tr.MsgWriter()
	if err != nil {
		tr.Close()
		return nil, err
	}
	io.WriteString(w, `<hello xmlns="`+nsBase+`"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability><capability>urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>`)
	if err := w.Close(); err != nil {
		tr.Close()
		return nil, fmt.Errorf("write hello: %w", err)
	}
	r, err := tr.MsgReader()
	if err != nil {
		tr.Close()
		return nil, err
	}
	var hello struct {
		XMLName   xml.Name `xml:"urn:ietf:params:xml:ns:netconf:base:1.0 hello"`
		SessionID uint64   `xml:"session-id"`
		Caps      []string `xml:"capabilities>capability"`
	}
	// Read to the end of the message and do not Close: the framer's
	// Close reads on to the next end marker, which is the next message's.
	raw, err := io.ReadAll(io.LimitReader(r, maxHello+1))
	if err == nil && len(raw) > maxHello {
		err = errors.New("larger than 1 MiB")
	}
	if err == nil {
		err = xml.Unmarshal(raw, &hello)
	}
	if err != nil {
		tr.Close()
		return nil, fmt.Errorf("server hello: %w", err)
	}
	if hello.SessionID == 0 {
		tr.Close()
		return nil, errors.New("server hello has no session-id")
	}
	s.id = hello.SessionID
	for _, c := range hello.Caps {
		if c == "urn:ietf:params:netconf:base:1.1" {
			if u, ok := tr.(interface{ Upgrade() }); ok {
				u.Upgrade()
			}
			break
		}
	}
	return s, nil
}

// do sends one rpc whose operation is body and returns the reply's inner
// XML. ctx ending closes the session (the stream is then out of step).
func (s *session) do(ctx context.Context, body string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return nil, s.broken
	}
	stop := context.AfterFunc(ctx, func() { s.tr.Close() })
	defer stop()
	msg, err := s.exchange(body)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		s.broken = fmt.Errorf("netconf session closed: %w", err)
		s.tr.Close()
		return nil, err
	}
	inner, err := parseReply(msg, s.nextID)
	if err != nil {
		s.broken = fmt.Errorf("netconf session closed: %w", err)
		s.tr.Close()
		return nil, err
	}
	// Error replies are rare: decode those fully.
	if bytes.Contains(inner, []byte("rpc-error")) {
		var r nc.Reply
		if err := xml.Unmarshal(msg, &r); err != nil {
			return nil, fmt.Errorf("rpc-reply: %w", err)
		}
		if err := r.Err(); err != nil {
			return nil, &RPCError{Err: err, Errors: r.Errors}
		}
	}
	return inner, nil
}

func (s *session) exchange(body string) ([]byte, error) {
	s.nextID++
	w, err := s.tr.MsgWriter()
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w, `<rpc xmlns="`+nsBase+`" message-id="`+strconv.FormatUint(s.nextID, 10)+`">`+body+`</rpc>`); err != nil {
		w.Close()
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	r, err := s.tr.MsgReader()
	if err != nil {
		return nil, err
	}
	msg, err := io.ReadAll(io.LimitReader(r, maxReply+1))
	if err != nil {
		return nil, err
	}
	if len(msg) > maxReply {
		return nil, fmt.Errorf("reply larger than %d bytes", maxReply)
	}
	return msg, nil
}

// close sends close-session (briefly) and closes the transport.
func (s *session) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.do(ctx, "<close-session/>")
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tr.Close()
}

// parseReply checks msg is the rpc-reply to message id and returns what is
// between its start and end tags. Only the envelope is looked at.
func parseReply(msg []byte, id uint64) ([]byte, error) {
	p := bytes.TrimSpace(msg)
	// XML declaration, comments and processing instructions before the root.
	for {
		switch {
		case bytes.HasPrefix(p, []byte("<?")):
			i := bytes.Index(p, []byte("?>"))
			if i < 0 {
				return nil, errors.New("rpc-reply: unterminated processing instruction")
			}
			p = bytes.TrimSpace(p[i+2:])
			continue
		case bytes.HasPrefix(p, []byte("<!--")):
			i := bytes.Index(p[4:], []byte("-->"))
			if i < 0 {
				return nil, errors.New("rpc-reply: unterminated comment")
			}
			p = bytes.TrimSpace(p[4+i+3:])
			continue
		}
		break
	}
	if len(p) == 0 || p[0] != '<' {
		return nil, errors.New("rpc-reply: not an XML element")
	}
	// The start tag: name and attributes, with quoted values.
	end := -1
	var quote byte
	for i := 1; i < len(p); i++ {
		c := p[i]
		if quote != 0 {
			if c == quote {
				quote = 0
			}
			continue
		}
		if c == '"' || c == '\'' {
			quote = c
		} else if c == '>' {
			end = i
			break
		}
	}
	if end < 0 {
		return nil, errors.New("rpc-reply: unterminated start tag")
	}
	tag := p[1:end]
	empty := bytes.HasSuffix(tag, []byte("/"))
	if empty {
		tag = tag[:len(tag)-1]
	}
	fields := bytes.Fields(tag)
	if len(fields) == 0 {
		return nil, errors.New("rpc-reply: empty start tag")
	}
	qname := string(fields[0])
	prefix, local := "", qname
	if i := bytes.IndexByte(fields[0], ':'); i >= 0 {
		prefix, local = qname[:i], qname[i+1:]
	}
	if local != "rpc-reply" {
		return nil, fmt.Errorf("expected rpc-reply, got <%.40s>", local)
	}
	attrs, err := parseAttrs(tag[len(fields[0]):])
	if err != nil {
		return nil, err
	}
	nsAttr := "xmlns"
	if prefix != "" {
		nsAttr += ":" + prefix
	}
	if attrs[nsAttr] != nsBase {
		return nil, fmt.Errorf("rpc-reply is not in the NETCONF base namespace (%.80q)", attrs[nsAttr])
	}
	if got := attrs["message-id"]; got != strconv.FormatUint(id, 10) {
		return nil, fmt.Errorf("rpc-reply message-id %.40q, want %d", got, id)
	}
	if empty {
		if len(bytes.TrimSpace(p[end+1:])) != 0 {
			return nil, errors.New("rpc-reply: content after the root element")
		}
		return nil, nil
	}
	rest := p[end+1:]
	closing := "</" + qname + ">"
	if !bytes.HasSuffix(rest, []byte(closing)) {
		return nil, errors.New("rpc-reply: missing or misplaced end tag")
	}
	return rest[:len(rest)-len(closing)], nil
}

// parseAttrs reads name="value" pairs; values are unescaped for the
// characters that can appear in a message-id or namespace.
func parseAttrs(b []byte) (map[string]string, error) {
	out := map[string]string{}
	for {
		b = bytes.TrimLeft(b, " \t\r\n")
		if len(b) == 0 {
			return out, nil
		}
		eq := bytes.IndexByte(b, '=')
		if eq <= 0 {
			return nil, errors.New("rpc-reply: malformed attribute")
		}
		name := string(bytes.TrimSpace(b[:eq]))
		b = bytes.TrimLeft(b[eq+1:], " \t\r\n")
		if len(b) == 0 || (b[0] != '"' && b[0] != '\'') {
			return nil, errors.New("rpc-reply: unquoted attribute value")
		}
		q := b[0]
		i := bytes.IndexByte(b[1:], q)
		if i < 0 {
			return nil, errors.New("rpc-reply: unterminated attribute value")
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("rpc-reply: attribute %.40q twice", name)
		}
		out[name] = xmlUnescapeAttr(string(b[1 : 1+i]))
		b = b[i+2:]
	}
}

func xmlUnescapeAttr(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var v struct {
		A string `xml:"a,attr"`
	}
	if xml.Unmarshal([]byte(`<x a="`+s+`"/>`), &v) != nil {
		return s
	}
	return v.A
}

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

	nc "github.com/nemith/netconf"

	"github.com/openriv/riv/pkg/frame"
)

// The client's own session layer over RFC 6242 framing (pkg/frame, bounded
// as the RFC's grammar is). nemith/netconf's Session decodes every reply
// with encoding/xml before handing it over; a log-retrieval reply is
// mostly base64 template data, and that pass cost ~25 µs per entry, more
// than everything else in a poll. Here a reply is read once and only its
// envelope is scanned; the body goes to the scanners in this package
// untouched.

const (
	nsBase = "urn:ietf:params:xml:ns:netconf:base:1.0"
	// maxReply bounds one reply message; a full page of log entries is
	// a few MiB.
	maxReply = 64 << 20
	maxHello = 1 << 20
)

type session struct {
	fr     *frame.Reader // reads messages; writes are framed into cw
	cw     *corkWriter
	closer func() error // closes the transport
	mu     sync.Mutex   // one exchange in flight: a collector polls sequentially
	nextID uint64
	id     uint64 // the server's session-id
	broken error  // set once the stream is out of step
}

// corkWriter holds what the framer flushes while a batch of RPCs is being
// written, so the batch leaves in one write: one TLS record or SSH
// channel packet, one system call, one wake-up of the agent.
type corkWriter struct {
	w   io.Writer
	buf []byte
}

func (c *corkWriter) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *corkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.w.Write(c.buf)
	if cap(c.buf) > 64<<10 {
		c.buf = nil // do not keep a large request's buffer
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// openSession exchanges hellos over the stream r/w and switches to
// chunked framing when both sides speak base:1.1. closer ends the
// transport; ctx bounds the exchange.
func openSession(ctx context.Context, r io.Reader, w io.Writer, closer func() error) (*session, error) {
	closer = sync.OnceValue(closer) // ctx, errors and Close may all close it
	stop := context.AfterFunc(ctx, func() { closer() })
	defer stop()
	cw := &corkWriter{w: w}
	s := &session{fr: frame.NewReader(r), cw: cw, closer: closer}
	err := s.writeMsg(`<hello xmlns="` + nsBase + `"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability><capability>urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>`)
	if err == nil {
		err = cw.flush()
	}
	if err != nil {
		closer()
		return nil, fmt.Errorf("write hello: %w", err)
	}
	var hello struct {
		XMLName   xml.Name `xml:"urn:ietf:params:xml:ns:netconf:base:1.0 hello"`
		SessionID uint64   `xml:"session-id"`
		Caps      []string `xml:"capabilities>capability"`
	}
	buf := getBuf()
	defer putBuf(buf)
	raw, err := s.readMsg((*buf)[:0], maxHello)
	*buf = raw
	if err == nil {
		err = xml.Unmarshal(raw, &hello)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		closer()
		return nil, fmt.Errorf("server hello: %w", err)
	}
	if hello.SessionID == 0 {
		closer()
		return nil, errors.New("server hello has no session-id")
	}
	s.id = hello.SessionID
	for _, c := range hello.Caps {
		if c == "urn:ietf:params:netconf:base:1.1" {
			s.fr.Upgrade()
			break
		}
	}
	return s, nil
}

// rpc wraps an operation in an <rpc> with the current message-id.
func (s *session) rpc(body string) string {
	return `<rpc xmlns="` + nsBase + `" message-id="` + strconv.FormatUint(s.nextID, 10) + `">` + body + `</rpc>`
}

// writeMsg frames one message into the cork buffer.
func (s *session) writeMsg(msg string) error {
	s.cw.buf = frame.Append(s.cw.buf, []byte(msg), s.fr.Chunked())
	return nil
}

// readMsg appends one whole message of at most limit bytes (framing
// included) to dst.
func (s *session) readMsg(dst []byte, limit int) ([]byte, error) {
	dst, err := s.fr.ReadMsg(dst, limit)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // the agent closed the session mid-exchange
	}
	return dst, err
}

// Replies are read into buffers that go back to bufPool once the caller
// has decoded them: a steady-state poll reads ~80 KB of log entries, and
// a fresh buffer grown for every reply was most of a poll's garbage.
var bufPool sync.Pool // of *[]byte

// maxPooled bounds a buffer kept for reuse: an incremental reply is far
// smaller; a full page of entries (a first poll) is not worth keeping.
const maxPooled = 1 << 20

func getBuf() *[]byte {
	if b, ok := bufPool.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

func putBuf(b *[]byte) {
	if cap(*b) <= maxPooled {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

// do sends one rpc whose operation is body and hands the reply's inner
// XML to use; the bytes are valid only until use returns.
func (s *session) do(ctx context.Context, body string, use func([]byte) error) error {
	return s.doAll(ctx, func(replies []reply) error {
		if replies[0].err != nil {
			return replies[0].err
		}
		return use(replies[0].inner)
	}, body)
}

// reply is one rpc-reply: its inner XML, or the rpc-error it carried.
type reply struct {
	inner []byte
	err   error
}

// doAll pipelines one rpc per body (RFC 6241 §4.2: the server answers in
// order) and hands the replies, in order, to use; their bytes are valid
// only until use returns. use runs outside the session lock, so it may
// run further exchanges. An error from the exchange means the session is
// unusable (it is then closed); an rpc-error is that reply's err. ctx
// ending closes the session.
func (s *session) doAll(ctx context.Context, use func([]reply) error, bodies ...string) error {
	buf := getBuf()
	defer putBuf(buf)
	replies, err := s.exchangeLocked(ctx, buf, bodies)
	if err != nil {
		return err
	}
	return use(replies)
}

func (s *session) exchangeLocked(ctx context.Context, buf *[]byte, bodies []string) ([]reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return nil, s.broken
	}
	stop := context.AfterFunc(ctx, func() { s.closer() })
	defer stop()
	out, err := s.exchange(buf, bodies)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		s.broken = fmt.Errorf("netconf session closed: %w", err)
		s.closer()
		return nil, err
	}
	return out, nil
}

// exchange writes the rpcs in one batch and reads every reply into buf.
func (s *session) exchange(buf *[]byte, bodies []string) ([]reply, error) {
	first := s.nextID + 1
	for _, body := range bodies {
		s.nextID++
		if err := s.writeMsg(s.rpc(body)); err != nil {
			return nil, err
		}
	}
	if err := s.cw.flush(); err != nil {
		return nil, err
	}
	// All replies go into one buffer; they are sliced once it stops
	// growing.
	ends := make([]int, len(bodies))
	for k := range bodies {
		var err error
		if *buf, err = s.readMsg(*buf, maxReply); err != nil {
			return nil, err
		}
		ends[k] = len(*buf)
	}
	// Every reply is in: an idle session holds no read buffer.
	s.fr.Release()
	out := make([]reply, len(bodies))
	start := 0
	for k := range bodies {
		msg := (*buf)[start:ends[k]:ends[k]]
		start = ends[k]
		inner, err := parseReply(msg, first+uint64(k))
		if err != nil {
			return nil, err
		}
		out[k].inner = inner
		// Error replies are rare: decode those fully.
		if isRPCError(inner) {
			var r nc.Reply
			if err := xml.Unmarshal(msg, &r); err != nil {
				return nil, fmt.Errorf("rpc-reply: %w", err)
			}
			if err := r.Err(); err != nil {
				out[k] = reply{err: &RPCError{Err: err, Errors: r.Errors}}
			}
		}
	}
	return out, nil
}

// isRPCError reports whether a reply's content holds rpc-errors. RFC
// 6241's schema puts them before any other content; the last element is
// checked too, for servers that append them. Looking at the ends instead
// of searching the whole reply matters for long log replies.
func isRPCError(inner []byte) bool {
	if bytes.HasSuffix(bytes.TrimRight(inner, " \t\r\n"), []byte("rpc-error>")) {
		return true
	}
	s := scanner{b: inner}
	for {
		kind, tok, err := s.next()
		if err != nil || kind == tokEOF || kind == tokEnd {
			return false
		}
		if kind == tokStart {
			return string(tok) == "rpc-error"
		}
	}
}

// close sends close-session and closes the transport without waiting for
// the <ok/>: nothing would be done with it, and the wait is a round trip
// on every poll that does not keep its session. The agent ends the
// session on either.
func (s *session) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken == nil {
		s.nextID++
		if s.writeMsg(s.rpc("<close-session/>")) == nil {
			s.cw.flush()
		}
		s.broken = errors.New("netconf session closed")
	}
	return s.closer()
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

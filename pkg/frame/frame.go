// Package frame reads and writes NETCONF messages on a stream (RFC
// 6242): end-of-message framing ("]]>]]>", for base:1.0 and the hellos)
// and chunked framing (§4.2, base:1.1). It is shared by the agent and the
// collector, both of which read what an untrusted peer sends, so it holds
// to the ABNF exactly: a chunk-size is 1 to 4294967295, written in at most
// ten digits without a leading zero, and every byte of the framing counts
// toward the message limit (a message of one-byte chunks is four times
// its data). nemith/netconf v0.0.2's framer, used before, read unbounded
// digits and overflowed ("#18446744073709551617" read as a one-byte
// chunk).
package frame

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
)

// Errors.
var (
	// ErrTooBig means a message exceeded the limit; the stream cannot be
	// read further (the rest of the message is not consumed).
	ErrTooBig = errors.New("netconf message exceeds the size limit")
	// ErrFraming means the bytes are not RFC 6242 framing.
	ErrFraming = errors.New("malformed netconf framing")
)

const (
	eom           = "]]>]]>"
	maxChunkSize  = 4294967295
	maxSizeDigits = 10
)

// Reader reads messages from a stream.
type Reader struct {
	src     io.Reader
	br      *bufio.Reader // nil while released
	chunked bool
}

// readBufSize is the read buffer of a stream being read.
const readBufSize = 32 << 10

// readBufs are the read buffers of streams between messages (Release): a
// collector keeps thousands of idle sessions, whose buffers were most of
// a kept session's memory.
var readBufs sync.Pool // of *bufio.Reader

// NewReader reads from r.
func NewReader(r io.Reader) *Reader { return &Reader{src: r} }

// Release gives the read buffer back while nothing is buffered (between
// messages, when the peer sent nothing ahead); the next read takes one
// again.
func (r *Reader) Release() {
	if r.br != nil && r.br.Buffered() == 0 {
		r.br.Reset(nil)
		readBufs.Put(r.br)
		r.br = nil
	}
}

func (r *Reader) buf() *bufio.Reader {
	if r.br == nil {
		if br, ok := readBufs.Get().(*bufio.Reader); ok {
			br.Reset(r.src)
			r.br = br
		} else {
			r.br = bufio.NewReaderSize(r.src, readBufSize)
		}
	}
	return r.br
}

// Upgrade switches to chunked framing, once both hellos are exchanged
// with base:1.1.
func (r *Reader) Upgrade() { r.chunked = true }

// Chunked reports whether chunked framing is in use.
func (r *Reader) Chunked() bool { return r.chunked }

// ReadMsg appends the next message to dst and returns it; the message
// with its framing may be at most limit bytes. io.EOF means the stream
// ended between messages.
func (r *Reader) ReadMsg(dst []byte, limit int) ([]byte, error) {
	r.buf()
	if r.chunked {
		return r.readChunked(dst, limit)
	}
	return r.readEOM(dst, limit)
}

func (r *Reader) readEOM(dst []byte, limit int) ([]byte, error) {
	start := len(dst)
	for {
		b, err := r.br.ReadSlice('>')
		if len(dst)-start+len(b) > limit {
			return dst, fmt.Errorf("%w (%d bytes)", ErrTooBig, limit)
		}
		dst = append(dst, b...)
		if bytes.HasSuffix(dst[start:], []byte(eom)) {
			return dst[:len(dst)-len(eom)], nil
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case err == io.EOF && len(dst) == start:
			return dst, io.EOF
		case err == io.EOF:
			return dst, fmt.Errorf("%w: stream ends inside a message", ErrFraming)
		default:
			return dst, err
		}
	}
}

func (r *Reader) readChunked(dst []byte, limit int) ([]byte, error) {
	used := 0 // bytes of the message, framing included
	for chunks := 0; ; chunks++ {
		// LF HASH, then either HASH LF (end-of-chunks) or a chunk-size.
		if err := r.expect('\n', chunks == 0); err != nil {
			return dst, err
		}
		if err := r.expect('#', false); err != nil {
			return dst, err
		}
		used += 2
		c, err := r.br.ReadByte()
		if err != nil {
			return dst, eof(err)
		}
		used++
		if c == '#' {
			if err := r.expect('\n', false); err != nil {
				return dst, err
			}
			if chunks == 0 {
				return dst, fmt.Errorf("%w: a message has at least one chunk", ErrFraming)
			}
			return dst, nil
		}
		// chunk-size = 1*DIGIT1 0*DIGIT, at most 4294967295.
		if c < '1' || c > '9' {
			return dst, fmt.Errorf("%w: chunk size starts with %q", ErrFraming, c)
		}
		size := uint64(c - '0')
		digits := 1
		for {
			c, err = r.br.ReadByte()
			if err != nil {
				return dst, eof(err)
			}
			used++
			if c == '\n' {
				break
			}
			if c < '0' || c > '9' {
				return dst, fmt.Errorf("%w: %q in a chunk size", ErrFraming, c)
			}
			if digits++; digits > maxSizeDigits {
				return dst, fmt.Errorf("%w: chunk size longer than %d digits", ErrFraming, maxSizeDigits)
			}
			size = size*10 + uint64(c-'0')
		}
		if size > maxChunkSize {
			return dst, fmt.Errorf("%w: chunk size %d exceeds %d", ErrFraming, size, uint64(maxChunkSize))
		}
		if uint64(used)+size > uint64(limit) {
			return dst, fmt.Errorf("%w (%d bytes)", ErrTooBig, limit)
		}
		used += int(size)
		// The buffer grows with what arrives, not with what the header
		// claims: a peer announcing a 4 GiB chunk must not get 4 GiB.
		for left := int(size); left > 0; {
			step := min(left, 64<<10)
			n := len(dst)
			dst = slices.Grow(dst, step)[:n+step]
			if _, err := io.ReadFull(r.br, dst[n:]); err != nil {
				return dst[:n], eof(err)
			}
			left -= step
		}
	}
}

// expect reads one byte that must be want; at a message boundary (first)
// a clean end of stream is io.EOF.
func (r *Reader) expect(want byte, first bool) error {
	c, err := r.br.ReadByte()
	if err != nil {
		if first && err == io.EOF {
			return io.EOF
		}
		return eof(err)
	}
	if c != want {
		return fmt.Errorf("%w: %q where %q belongs", ErrFraming, c, want)
	}
	return nil
}

func eof(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: stream ends inside a message", ErrFraming)
	}
	return err
}

// Append appends msg with its framing to dst: chunked (one chunk) or
// end-of-message.
func Append(dst, msg []byte, chunked bool) []byte {
	if !chunked {
		return append(append(dst, msg...), eom...)
	}
	dst = append(strconv.AppendInt(append(dst, "\n#"...), int64(len(msg)), 10), '\n')
	return append(append(dst, msg...), "\n##\n"...)
}

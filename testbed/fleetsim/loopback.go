package fleetsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/openriv/riv/pkg/frame"
)

// Loopback is an in-process NETCONF stream to a device's server, without
// TLS or sockets: what the client writes is read as framed messages and
// each <rpc> is answered by the server (Server.Exchange, as User) on the
// writing goroutine; the replies are read back framed (RFC 6242, chunked
// after the hellos). It lets a benchmark run the collector's real client
// and verifier against the agent's real server and count their costs
// apart: DeviceTime is the time spent inside the device.
type Loopback struct {
	d       *Device
	in      bytes.Buffer
	fr      *frame.Reader
	out     bytes.Buffer
	hello   bool // the client's hello was read
	closed  atomic.Bool
	devTime atomic.Int64
}

// maxLoopMsg bounds one message the client writes, as the agent's
// default does.
const maxLoopMsg = 1 << 20

// Loopback opens an in-process stream to d: its server's hello is ready
// to be read.
func (d *Device) Loopback() *Loopback {
	lb := &Loopback{d: d}
	lb.fr = frame.NewReader(&lb.in)
	lb.out.WriteString(`<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>` +
		`<capability>urn:ietf:params:netconf:base:1.0</capability><capability>urn:ietf:params:netconf:base:1.1</capability>` +
		`</capabilities><session-id>1</session-id></hello>]]>]]>`)
	return lb
}

// DeviceTime is the total time the device spent answering.
func (lb *Loopback) DeviceTime() time.Duration { return time.Duration(lb.devTime.Load()) }

// Write takes whole messages (a client writes its RPCs in batches) and
// answers each.
func (lb *Loopback) Write(p []byte) (int, error) {
	if lb.closed.Load() {
		return 0, io.ErrClosedPipe
	}
	t0 := time.Now()
	defer func() { lb.devTime.Add(int64(time.Since(t0))) }()
	lb.in.Write(p)
	for {
		msg, err := lb.fr.ReadMsg(nil, maxLoopMsg)
		if errors.Is(err, io.EOF) {
			return len(p), nil
		}
		if err != nil {
			lb.closed.Store(true)
			return 0, fmt.Errorf("loopback: %w", err)
		}
		if !lb.hello {
			lb.hello = true
			if !bytes.Contains(msg, []byte("urn:ietf:params:netconf:base:1.1")) {
				lb.closed.Store(true)
				return 0, errors.New("loopback: the client does not speak base:1.1")
			}
			lb.fr.Upgrade()
			continue
		}
		reply := lb.d.Server.Exchange(context.Background(), User, msg)
		if len(reply) > 0 {
			lb.out.Write(frame.Append(nil, reply, true))
		}
	}
}

// Read returns the replies written so far; with none pending, the peer
// is waiting for nothing and the stream has ended.
func (lb *Loopback) Read(p []byte) (int, error) {
	if lb.out.Len() == 0 {
		return 0, io.EOF
	}
	return lb.out.Read(p)
}

// Close ends the stream.
func (lb *Loopback) Close() error {
	lb.closed.Store(true)
	return nil
}

package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpmutil"
)

// maxResponse bounds a TPM response (TPM2 responses are at most a few KiB;
// a peer announcing more is not a TPM).
const maxResponse = 64 << 10

// sockTPM speaks the TPM command protocol over a stream socket (swtpm's
// server socket, unix or TCP): one command, then exactly one response whose
// length is in its 10-byte header. swtpm serves one connection at a time,
// so the connection is kept for the TPM's lifetime.
type sockTPM struct {
	conn net.Conn
}

func dialSocket(network, addr string) (*sockTPM, error) {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial swtpm %s %s: %w", network, addr, err)
	}
	return &sockTPM{conn: c}, nil
}

func (s *sockTPM) Send(cmd []byte) ([]byte, error) {
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("write command: %w", err)
	}
	var hdr [10]byte
	if _, err := io.ReadFull(s.conn, hdr[:]); err != nil {
		return nil, fmt.Errorf("read response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:])
	if size < 10 || size > maxResponse {
		return nil, fmt.Errorf("response size %d out of range", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr[:])
	if _, err := io.ReadFull(s.conn, rsp[10:]); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return rsp, nil
}

func (s *sockTPM) SetDeadline(t time.Time) error { return s.conn.SetDeadline(t) }
func (s *sockTPM) Close() error                  { return s.conn.Close() }

// retrying resends a command the TPM answered with TPM_RC_RETRY,
// TPM_RC_YIELDED or TPM_RC_TESTING (Part 2 §6.6.3: "try again"), which
// swtpm and real TPMs do after startup and under load.
type retrying struct {
	transport.TPMCloser
}

func (r retrying) Send(cmd []byte) ([]byte, error) {
	for i := 0; ; i++ {
		rsp, err := r.TPMCloser.Send(cmd)
		if err != nil || len(rsp) < 10 || i == 20 {
			return rsp, err
		}
		switch binary.BigEndian.Uint32(rsp[6:]) {
		case 0x922, 0x908, 0x90A:
			time.Sleep(time.Duration(i+1) * 5 * time.Millisecond)
			continue
		}
		return rsp, nil
	}
}

func (r retrying) SetDeadline(t time.Time) error {
	if d, ok := r.TPMCloser.(interface{ SetDeadline(time.Time) error }); ok {
		return d.SetDeadline(t)
	}
	return nil
}

// simInUse makes a second Open("sim") fail instead of blocking: the
// go-tpm-tools simulator is one global per process.
var simInUse atomic.Bool

// ErrSimulatorInUse is returned when the in-process simulator is open already.
var ErrSimulatorInUse = errors.New("the in-process TPM simulator is already open in this process")

type simTPM struct {
	sim *simulator.Simulator
}

func (s *simTPM) Send(cmd []byte) ([]byte, error) { return tpmutil.RunCommandRaw(s.sim, cmd) }
func (s *simTPM) Close() error {
	defer simInUse.Store(false)
	return s.sim.Close()
}

// openTransport opens a TPM by spec:
//
//	sim                      the in-process simulator (go-tpm-tools, ms-tpm-20-ref)
//	swtpm:/path/to/sock      swtpm on a unix socket (also swtpm:unix:/path)
//	swtpm:HOST:PORT          swtpm on TCP
//	/dev/tpmrm0 (any path)   a kernel TPM device, or a unix socket
func openTransport(spec string) (transport.TPMCloser, *simulator.Simulator, error) {
	switch {
	case spec == "sim" || spec == "simulator":
		if !simInUse.CompareAndSwap(false, true) {
			return nil, nil, ErrSimulatorInUse
		}
		s, err := simulator.Get()
		if err != nil {
			simInUse.Store(false)
			return nil, nil, fmt.Errorf("start simulator: %w", err)
		}
		return &simTPM{sim: s}, s, nil
	case strings.HasPrefix(spec, "swtpm:"):
		rest := strings.TrimPrefix(spec, "swtpm:")
		rest = strings.TrimPrefix(rest, "unix:")
		if strings.HasPrefix(rest, "tcp:") {
			rest = strings.TrimPrefix(rest, "tcp:")
		} else if strings.HasPrefix(rest, "/") || strings.HasPrefix(rest, ".") {
			s, err := dialSocket("unix", rest)
			return s, nil, err
		}
		if _, _, err := net.SplitHostPort(rest); err != nil {
			return nil, nil, fmt.Errorf("swtpm address %q: want a socket path or HOST:PORT", rest)
		}
		s, err := dialSocket("tcp", rest)
		return s, nil, err
	case spec == "":
		return nil, nil, errors.New("no TPM given (want sim, swtpm:ADDR or a device path)")
	}
	st, err := os.Stat(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("open TPM %s: %w", spec, err)
	}
	if st.Mode()&os.ModeSocket != 0 {
		s, err := dialSocket("unix", spec)
		return s, nil, err
	}
	t, err := transport.OpenTPM(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("open TPM %s: %w", spec, err)
	}
	return t, nil, nil
}

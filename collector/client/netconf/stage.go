package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// DefaultStageTimeout bounds each stage of opening a session when the
// Dialer sets none: long enough for a loaded router's TPM-backed SSH or
// TLS handshake, short enough that a device which accepts TCP and says
// nothing is reported in seconds rather than after the overall deadline.
const DefaultStageTimeout = 10 * time.Second

// Dialer opens sessions with a deadline for each stage: the TCP
// connection, the SSH or TLS handshake (with the netconf subsystem), and
// the NETCONF hello.
type Dialer struct {
	StageTimeout time.Duration // default DefaultStageTimeout
}

func (d Dialer) timeout() time.Duration {
	if d.StageTimeout > 0 {
		return d.StageTimeout
	}
	return DefaultStageTimeout
}

// StageError says which stage of reaching a device failed. A device whose
// session fails in a stage was not reached: no evidence was exchanged.
type StageError struct {
	Stage   string        // "TCP connection to ADDR", "SSH handshake", "TLS handshake", "NETCONF hello"
	Timeout time.Duration // set when the stage ran out of time
	Err     error
}

func (e *StageError) Error() string {
	if e.Timeout > 0 {
		return fmt.Sprintf("no %s within %s", e.Stage, seconds(e.Timeout))
	}
	return e.Stage + ": " + e.Err.Error()
}

func (e *StageError) Unwrap() error { return e.Err }

// Unreachable says whether err is a failure to reach the device or
// open a NETCONF session with it (rather than a failure of the evidence).
func Unreachable(err error) bool {
	var se *StageError
	return errors.As(err, &se)
}

func seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%d s", d/time.Second)
	}
	return d.String()
}

// stage runs f under the stage's own deadline, reporting the stage to the
// context's trace first.
func (d Dialer) stage(ctx context.Context, name string, f func(context.Context) error) error {
	Progress(ctx, name)
	sctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	err := f(sctx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() == nil && errors.Is(sctx.Err(), context.DeadlineExceeded):
		return &StageError{Stage: name, Timeout: d.timeout(), Err: context.DeadlineExceeded}
	case ctx.Err() != nil:
		err = ctx.Err()
	}
	return &StageError{Stage: name, Err: err}
}

// dial is the TCP stage of either transport.
func (d Dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	var conn net.Conn
	err := d.stage(ctx, "TCP connection to "+addr, func(ctx context.Context) (err error) {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		return err
	})
	return conn, err
}

type traceKey struct{}

// WithTrace returns a context whose sessions report each stage they
// enter — dialling, handshakes, hello, each RPC exchange — to stage, as
// net/http/httptrace reports a request's. rivctl shows them as progress
// on a terminal.
func WithTrace(ctx context.Context, stage func(string)) context.Context {
	return context.WithValue(ctx, traceKey{}, stage)
}

// Progress reports a stage to the context's trace, if it has one.
func Progress(ctx context.Context, stage string) {
	if f, ok := ctx.Value(traceKey{}).(func(string)); ok && f != nil {
		f(stage)
	}
}

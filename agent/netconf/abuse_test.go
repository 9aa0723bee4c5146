package netconf_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openriv/riv/agent/netconf"
	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/internal/testref"
)

// logBuf collects log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// abuseServer is a second NETCONF server on the device's attester, with
// its own limits and log, serving SSH on a listener the test chooses.
type abuseServer struct {
	d      *device.Device
	srv    *netconf.Server
	log    *logBuf
	addr   string
	signer ssh.Signer
}

func newAbuseServer(t *testing.T, lim netconf.Limits, wrap func(net.Listener) net.Listener) *abuseServer {
	t.Helper()
	d := startDevice(t)
	lb := &logBuf{}
	srv, err := netconf.New(netconf.Config{Attester: d.Attester, Limits: lim, Logger: slog.New(slog.NewTextHandler(lb, nil)),
		NACM: netconf.NACM{Groups: map[string][]string{"v": {d.User}}, Rules: []netconf.Rule{{Group: "v", Operation: "*", Action: "permit"}}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := ssh.NewPublicKey(d.SSHClientKey.Public())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		srv.ServeSSH(ctx, ln, netconf.SSHConfig{HostKey: hk, AuthorizedKeys: map[string][]ssh.PublicKey{d.User: {pub}}, HandshakeTimeout: 5 * time.Second})
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	signer, _ := ssh.NewSignerFromKey(d.SSHClientKey)
	return &abuseServer{d: d, srv: srv, log: lb, addr: addr, signer: signer}
}

// dial opens an SSH connection from local (a 127.0.0.0/8 address, "" for
// any).
func (a *abuseServer) dial(t *testing.T, local string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	t.Helper()
	if cfg == nil {
		cfg = &ssh.ClientConfig{}
	}
	cfg.User, cfg.Auth, cfg.HostKeyCallback, cfg.Timeout = a.d.User, []ssh.AuthMethod{ssh.PublicKeys(a.signer)}, ssh.InsecureIgnoreHostKey(), 5*time.Second
	dl := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		dl.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := dl.Dial("tcp", a.addr)
	if err != nil {
		return nil, err
	}
	sc, chans, reqs, err := ssh.NewClientConn(c, a.addr, cfg)
	if err != nil {
		c.Close()
		return nil, err
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

// netconfSession opens the netconf subsystem on c and reads the hello.
func netconfSession(t *testing.T, c *ssh.Client) (io.WriteCloser, *bufio.Reader, error) {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		return nil, nil, err
	}
	w, _ := sess.StdinPipe()
	r, _ := sess.StdoutPipe()
	if err := sess.RequestSubsystem("netconf"); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(r)
	if m := readMsg(t, br); !strings.Contains(m, "<hello") {
		return nil, nil, fmt.Errorf("no server hello: %q", m)
	}
	return w, br, nil
}

// flakyListener fails its first Accepts the way a process out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if f.fails > 0 {
		f.fails--
		f.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

// TestAcceptErrorsDoNotEndListener is item E1: accept() failing with
// EMFILE is retried with backoff and logged; the listener serves again.
func TestAcceptErrorsDoNotEndListener(t *testing.T) {
	a := newAbuseServer(t, netconf.Limits{}, func(ln net.Listener) net.Listener { return &flakyListener{Listener: ln, fails: 6} })
	c, err := a.dial(t, "", nil)
	if err != nil {
		t.Fatalf("after accept errors: %v", err)
	}
	defer c.Close()
	if _, _, err := netconfSession(t, c); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.log.String(), "accept failed; retrying") || !strings.Contains(a.log.String(), "too many open files") {
		t.Errorf("accept errors not logged:\n%s", a.log.String())
	}
}

// TestStartupLimits is item E1's cap: connections that do not
// authenticate hold at most MaxStartupsPerSource slots from one address;
// the rest are closed at once, and a client from elsewhere still gets in.
func TestStartupLimits(t *testing.T) {
	a := newAbuseServer(t, netconf.Limits{MaxStartups: 20, MaxStartupsPerSource: 3}, nil)
	var silent []net.Conn
	for range 8 {
		c, err := net.Dial("tcp", a.addr)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	// The server closes the connections past the cap without a banner.
	closed := 0
	for _, c := range silent {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if errors.Is(err, io.EOF) && n == 0 {
			closed++
		}
	}
	if closed != 5 {
		t.Errorf("%d of 8 silent connections from one address closed, want 5 (cap 3)", closed)
	}
	c, err := a.dial(t, "127.0.0.2", nil)
	if err != nil {
		t.Fatalf("client from another address: %v", err)
	}
	c.Close()
	if !strings.Contains(a.log.String(), "too many unauthenticated connections") {
		t.Errorf("dropped connections not logged:\n%s", a.log.String())
	}
}

// TestPostAuthLimits is item E4: sessions per user, SSH channels per
// connection, and a connection that never opens the netconf subsystem.
func TestPostAuthLimits(t *testing.T) {
	a := newAbuseServer(t, netconf.Limits{MaxSessionsPerUser: 2, MaxChannelsPerConn: 2, SubsystemTimeout: 500 * time.Millisecond}, nil)
	c, err := a.dial(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 2 {
		if _, _, err := netconfSession(t, c); err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
	}
	if _, err := c.NewSession(); err == nil {
		t.Error("a third channel on one connection was accepted (cap 2)")
	}
	c2, err := a.dial(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, _, err := netconfSession(t, c2); err == nil {
		t.Error("a third session of one user was served (cap 2)")
	}
	// Authenticated, but no subsystem: cut off.
	c3, err := a.dial(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c3.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("a connection without a netconf subsystem was kept open")
		c3.Close()
	}
}

// TestFramingAbuse is item E3 at the agent: a chunk size past 2^64 or a
// run of zeros is malformed framing, answered and the session ended at
// once, not read as a one-byte chunk or held open.
func TestFramingAbuse(t *testing.T) {
	a := newAbuseServer(t, netconf.Limits{}, nil)
	for _, junk := range []string{"\n#18446744073709551617\n<rpc/>\n##\n", "\n#" + strings.Repeat("0", 5<<20)} {
		c, err := a.dial(t, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		w, br, err := netconfSession(t, c)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(w, `<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities><capability>urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>]]>]]>`)
		go io.WriteString(w, junk)
		start := time.Now()
		reply, _ := io.ReadAll(br)
		if !strings.Contains(string(reply), "malformed-message") || time.Since(start) > 5*time.Second {
			t.Errorf("%.30q: reply %.200q after %v", junk, reply, time.Since(start))
		}
		c.Close()
	}
}

// TestFilterLinearAndBounded is item E5: a subtree filter whose text comes
// in 100,000 pieces parses in linear time, and a filter of more than 4096
// elements is refused.
func TestFilterLinearAndBounded(t *testing.T) {
	d := startDevice(t)
	pieces := strings.Repeat("t<!---->", 100000)
	start := time.Now()
	r := exchangeT(t, d, `<get><filter type="subtree"><rats-support-structures xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"><tpms><tpm><name>`+pieces+`</name></tpm></tpms></rats-support-structures></filter></get>`)
	if took := time.Since(start); took > 3*time.Second || !strings.Contains(r, "<data") {
		t.Errorf("filter of 100000 text pieces: %v, %.200s", took, r)
	}
	r = exchangeT(t, d, `<get><filter type="subtree">`+strings.Repeat(`<keystore xmlns="urn:ietf:params:xml:ns:yang:ietf-keystore"/>`, 5000)+`</filter></get>`)
	if !strings.Contains(r, "invalid-value") || !strings.Contains(r, "4096") {
		t.Errorf("filter of 5000 elements: %.300s", r)
	}
}

// TestPeerLogsRateLimited is item E6: a flood of failed handshakes logs a
// bounded number of lines and counts the rest.
func TestPeerLogsRateLimited(t *testing.T) {
	a := newAbuseServer(t, netconf.Limits{MaxStartups: 1000, MaxStartupsPerSource: 1000}, nil)
	for range 200 {
		c, err := net.Dial("tcp", a.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, "GET / HTTP/1.0\r\n\r\n")
		c.(*net.TCPConn).CloseWrite() // the handshake fails at once
		io.Copy(io.Discard, c)
		c.Close()
	}
	time.Sleep(1100 * time.Millisecond)
	c, _ := net.Dial("tcp", a.addr)
	fmt.Fprint(c, "garbage\r\n")
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c)
	c.Close()
	time.Sleep(100 * time.Millisecond)
	lines := strings.Count(a.log.String(), "ssh handshake failed")
	if lines > 40 || !strings.Contains(a.log.String(), "suppressed_lines=") {
		t.Errorf("200 failed handshakes logged %d lines (suppressed count present: %v)", lines, strings.Contains(a.log.String(), "suppressed_lines="))
	}
}

// TestSSHAlgorithms is item E7: only SHA-2 and better is offered — a
// client limited to diffie-hellman-group14-sha1, hmac-sha1 or hmac-sha1-96
// cannot connect — and ssh-audit finds no SHA-1 algorithm.
func TestSSHAlgorithms(t *testing.T) {
	a := newAbuseServer(t, netconf.Limits{}, nil)
	for _, cfg := range []ssh.ClientConfig{
		{Config: ssh.Config{KeyExchanges: []string{"diffie-hellman-group14-sha1"}}},
		{Config: ssh.Config{MACs: []string{"hmac-sha1"}, Ciphers: []string{"aes128-ctr"}}},
		{Config: ssh.Config{MACs: []string{"hmac-sha1-96"}, Ciphers: []string{"aes128-ctr"}}},
	} {
		if c, err := a.dial(t, "", &cfg); err == nil {
			c.Close()
			t.Errorf("client offering only %v %v connected", cfg.KeyExchanges, cfg.MACs)
		}
	}
	audit := testref.NeedTool(t, "ssh-audit")
	host, port, _ := net.SplitHostPort(a.addr)
	out, _ := exec.Command(audit, "-n", "-p", port, host).CombinedOutput()
	for _, bad := range []string{"group14-sha1", "hmac-sha1", "ssh-rsa ", "diffie-hellman-group1-"} {
		if strings.Contains(string(out), bad) {
			t.Errorf("ssh-audit lists %s:\n%s", bad, out)
		}
	}
	if !strings.Contains(string(out), "curve25519-sha256") {
		t.Errorf("ssh-audit output unexpected:\n%s", out)
	}
}

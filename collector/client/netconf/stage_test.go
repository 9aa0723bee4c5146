package netconf

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// silent accepts connections and, after what greet does, says nothing
// (the device of issue 11 F.6: it takes TCP and never answers).
func silent(t *testing.T, greet func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			if greet != nil {
				go greet(c)
			}
		}
	}()
	return ln.Addr().String()
}

func selfSigned(t *testing.T) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dev"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestStageDeadlines: each stage of reaching a device fails on its own
// deadline with the stage named, well before the overall one, and counts
// as unreachable.
func TestStageDeadlines(t *testing.T) {
	_, userKey, _ := ed25519.GenerateKey(rand.Reader)
	_, hostKey, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, _ := ssh.NewSignerFromKey(hostKey)
	cert := selfSigned(t)
	refused := func() string {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}()

	sshSilentAfterSubsystem := func(c net.Conn) {
		cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
		cfg.AddHostKey(hostSigner)
		_, chans, reqs, err := ssh.NewServerConn(c, cfg)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			ch, creqs, _ := nc.Accept()
			go func() {
				for r := range creqs {
					r.Reply(r.Type == "subsystem", nil)
				}
			}()
			_ = ch // the netconf subsystem is open; no hello ever comes
		}
	}
	tlsSilentAfterHandshake := func(c net.Conn) {
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		s.Handshake()
	}

	d := Dialer{StageTimeout: 300 * time.Millisecond}
	sshDial := func(addr string) error { _, err := d.DialSSH(context.Background(), addr, "riv", userKey); return err }
	tlsDial := func(addr string) error {
		_, err := d.DialTLS(context.Background(), addr, &tls.Config{InsecureSkipVerify: true})
		return err
	}
	cases := []struct {
		name string
		dial func(string) error
		addr string
		want string
	}{
		{"ssh refused", sshDial, refused, "TCP connection to " + refused + ": "},
		{"ssh silent", sshDial, silent(t, nil), "no SSH handshake within 300ms"},
		{"ssh no hello", sshDial, silent(t, sshSilentAfterSubsystem), "no NETCONF hello within 300ms"},
		{"tls silent", tlsDial, silent(t, nil), "no TLS handshake within 300ms"},
		{"tls no hello", tlsDial, silent(t, tlsSilentAfterHandshake), "no NETCONF hello within 300ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := tc.dial(tc.addr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if !Unreachable(err) {
				t.Errorf("%v is not reported as unreachable", err)
			}
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("took %v", el)
			}
		})
	}
	if got := (&StageError{Stage: "NETCONF hello", Timeout: DefaultStageTimeout}).Error(); got != "no NETCONF hello within 10 s" {
		t.Errorf("default message %q", got)
	}
}

// TestTraceStages: a traced dial reports its stages in order.
func TestTraceStages(t *testing.T) {
	var stages []string
	ctx := WithTrace(context.Background(), func(s string) { stages = append(stages, s) })
	addr := silent(t, nil)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	(Dialer{StageTimeout: 100 * time.Millisecond}).DialSSH(ctx, addr, "riv", key)
	if want := []string{"TCP connection to " + addr, "SSH handshake"}; strings.Join(stages, "|") != strings.Join(want, "|") {
		t.Errorf("stages %q, want %q", stages, want)
	}
}

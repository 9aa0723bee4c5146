package netconf

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHConfig configures NETCONF over SSH (RFC 6242).
type SSHConfig struct {
	// HostKey signs the SSH handshake: the IDevID key, in the TPM.
	HostKey crypto.Signer
	// AuthorizedKeys maps a user name to the public keys it may log in with.
	// Passwords are not accepted.
	AuthorizedKeys map[string][]ssh.PublicKey
	// HandshakeTimeout bounds the SSH handshake (default 10 s).
	HandshakeTimeout time.Duration
}

// ServeSSH accepts NETCONF-over-SSH sessions on ln until ctx ends.
func (s *Server) ServeSSH(ctx context.Context, ln net.Listener, c SSHConfig) error {
	signer, err := ssh.NewSignerFromSigner(c.HostKey)
	if err != nil {
		return fmt.Errorf("netconf ssh: host key: %w", err)
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			for _, k := range c.AuthorizedKeys[meta.User()] {
				if string(k.Marshal()) == string(key.Marshal()) {
					return &ssh.Permissions{}, nil
				}
			}
			return nil, errors.New("unknown key")
		},
		MaxAuthTries: 3,
	}
	cfg.AddHostKey(signer)
	return acceptLoop(ctx, ln, func(conn net.Conn) {
		conn.SetDeadline(time.Now().Add(c.HandshakeTimeout))
		sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
		if err != nil {
			s.cfg.Logger.Info("ssh handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
			conn.Close()
			return
		}
		conn.SetDeadline(time.Time{})
		defer sc.Close()
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			if nc.ChannelType() != "session" {
				nc.Reject(ssh.UnknownChannelType, "only session channels")
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			go s.sshChannel(ctx, ch, creqs, sc.User(), conn)
		}
	})
}

// sshChannel waits for the netconf subsystem request, then serves it.
func (s *Server) sshChannel(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request, user string, conn net.Conn) {
	for req := range reqs {
		ok := req.Type == "subsystem" && len(req.Payload) >= 4 && string(req.Payload[4:]) == "netconf"
		req.Reply(ok, nil)
		if ok {
			go ssh.DiscardRequests(reqs)
			s.serve(ctx, ch, user, conn.(deadliner))
			return
		}
	}
	ch.Close()
}

package netconf

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net"
	"sync"
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
	// KeysFor, when set, replaces AuthorizedKeys: it is asked at each
	// login, so a reload changes the keys without ending any session.
	KeysFor func(user string) []ssh.PublicKey
	// HandshakeTimeout bounds the SSH handshake (default 10 s).
	HandshakeTimeout time.Duration
}

// Algorithms offered over SSH: SHA-2 and better only, as current OpenSSH
// (no diffie-hellman-group14-sha1, hmac-sha1 or hmac-sha1-96, which
// x/crypto/ssh still offers by default; no ssh-rsa SHA-1 signatures).
var (
	sshKeyExchanges = []string{ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeCurve25519, "curve25519-sha256@libssh.org",
		ssh.KeyExchangeECDHP256, ssh.KeyExchangeECDHP384, ssh.KeyExchangeECDHP521, ssh.KeyExchangeDH16SHA512}
	sshCiphers = []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305,
		ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR}
	sshMACs            = []string{ssh.HMACSHA256ETM, ssh.HMACSHA512ETM, ssh.HMACSHA256, ssh.HMACSHA512}
	sshPublicKeyAlgs   = []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512}
	sshHostKeyRSAAlgos = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
)

// ServeSSH accepts NETCONF-over-SSH sessions on ln until ctx ends.
func (s *Server) ServeSSH(ctx context.Context, ln net.Listener, c SSHConfig) error {
	signer, err := ssh.NewSignerFromSigner(c.HostKey)
	if err != nil {
		return fmt.Errorf("netconf ssh: host key: %w", err)
	}
	if signer.PublicKey().Type() == ssh.KeyAlgoRSA {
		if signer, err = ssh.NewSignerWithAlgorithms(signer.(ssh.AlgorithmSigner), sshHostKeyRSAAlgos); err != nil {
			return fmt.Errorf("netconf ssh: host key: %w", err)
		}
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	cfg := &ssh.ServerConfig{
		Config: ssh.Config{KeyExchanges: sshKeyExchanges, Ciphers: sshCiphers, MACs: sshMACs},
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			keys := c.AuthorizedKeys[meta.User()]
			if c.KeysFor != nil {
				keys = c.KeysFor(meta.User())
			}
			for _, k := range keys {
				if string(k.Marshal()) == string(key.Marshal()) {
					return &ssh.Permissions{}, nil
				}
			}
			return nil, errors.New("unknown key")
		},
		PublicKeyAuthAlgorithms: sshPublicKeyAlgs,
		MaxAuthTries:            3,
	}
	cfg.AddHostKey(signer)
	return s.acceptLoop(ctx, "netconf-ssh", ln, func(conn net.Conn, release func()) {
		conn.SetDeadline(time.Now().Add(c.HandshakeTimeout))
		sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
		release()
		if err != nil {
			s.quiet.Info("ssh handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
			conn.Close()
			return
		}
		conn.SetDeadline(time.Time{})
		defer sc.Close()
		go ssh.DiscardRequests(reqs)
		// An authenticated connection that opens no netconf subsystem
		// holds a descriptor and memory for nothing: it is closed.
		var started sync.Once
		idle := time.AfterFunc(s.cfg.Limits.SubsystemTimeout, func() {
			s.quiet.Info("ssh connection without a netconf subsystem closed", "remote", conn.RemoteAddr().String(), "user", sc.User())
			sc.Close()
		})
		defer idle.Stop()
		var mu sync.Mutex
		open := 0
		for nc := range chans {
			if nc.ChannelType() != "session" {
				nc.Reject(ssh.UnknownChannelType, "only session channels")
				continue
			}
			mu.Lock()
			full := open >= s.cfg.Limits.MaxChannelsPerConn
			if !full {
				open++
			}
			mu.Unlock()
			if full {
				nc.Reject(ssh.ResourceShortage, fmt.Sprintf("at most %d channels per connection", s.cfg.Limits.MaxChannelsPerConn))
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			go func() {
				s.sshChannel(ctx, ch, creqs, peer{user: sc.User(), transport: "netconf-ssh", addr: conn.RemoteAddr(), dl: conn}, func() {
					started.Do(func() { idle.Stop() })
				})
				mu.Lock()
				open--
				mu.Unlock()
			}()
		}
	})
}

// sshChannel waits for the netconf subsystem request, then serves it.
func (s *Server) sshChannel(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request, p peer, started func()) {
	timer := time.AfterFunc(s.cfg.Limits.SubsystemTimeout, func() { ch.Close() })
	defer timer.Stop()
	for req := range reqs {
		ok := req.Type == "subsystem" && len(req.Payload) >= 4 && string(req.Payload[4:]) == "netconf"
		req.Reply(ok, nil)
		if ok {
			timer.Stop()
			started()
			go ssh.DiscardRequests(reqs)
			s.serve(ctx, ch, p)
			return
		}
	}
	ch.Close()
}

// Package daemon runs the agent's servers around one attester: NETCONF
// over SSH and TLS, RESTCONF and SNMPv3, with the device's identity, its
// users and access control. `riv-agent serve` builds it from the config
// file and the simulated device of `riv-agent dev` from its throwaway
// keys; both get the same servers, reloads and drain.
package daemon

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"

	"golang.org/x/crypto/ssh"

	"github.com/openriv/riv/agent/netconf"
	"github.com/openriv/riv/agent/restconf"
	"github.com/openriv/riv/agent/snmp"
)

// Listen addresses; an empty one means the server does not run.
type Listen struct {
	NetconfSSH, NetconfTLS, RESTCONF, SNMP string
}

// Access is what a reload may change without ending a session: who logs
// in with which SSH keys, what NACM lets them do, and the SNMP users.
type Access struct {
	SSHKeys   map[string][]ssh.PublicKey
	NACM      netconf.NACM
	SNMPUsers []snmp.User
}

// Options configure the daemon.
type Options struct {
	// NETCONF configures the NETCONF server (Attester required); its
	// NACM and RESTCONF fields are set from Access and Listen.
	NETCONF netconf.Config
	// Identity is the certificate chain TLS presents and whose key signs
	// the SSH handshake: the IDevID (or LDevID), its key in the TPM.
	Identity tls.Certificate
	// ClientCAs verify TLS client certificates; CertToName maps them to
	// users (RFC 7589 §7).
	ClientCAs  *x509.CertPool
	CertToName []netconf.CertToName
	Access     Access
	// SNMP configures the SNMPv3 agent; its Attester and Users are set
	// here.
	SNMP   snmp.Config
	Listen Listen
	// AgentX is the socket of an AgentX master (net-snmp snmpd's
	// agentXSocket: "tcp:HOST:PORT" or a Unix socket path) the SNMP
	// engine also serves RIV-ATTESTATION-MIB through; empty: none.
	AgentX string
	Logger *slog.Logger
}

// Daemon is the running servers.
type Daemon struct {
	NETCONF *netconf.Server
	SNMP    *snmp.Server // nil when SNMP is off
	// The addresses listened on ("" for a server that is off).
	SSHAddr, TLSAddr, RESTCONFAddr, SNMPAddr string

	keys   atomic.Pointer[map[string][]ssh.PublicKey]
	cancel context.CancelFunc
	done   chan struct{}
}

// Start opens the listeners and serves until Close or Shutdown. Nothing
// stays open when it fails.
func Start(o Options) (*Daemon, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	signer, ok := o.Identity.PrivateKey.(crypto.Signer)
	if !ok || o.Identity.Leaf == nil {
		return nil, errors.New("daemon: the identity needs its certificate and a signing key")
	}
	d := &Daemon{done: make(chan struct{})}
	d.keys.Store(&o.Access.SSHKeys)
	nc := o.NETCONF
	nc.NACM = o.Access.NACM
	nc.Logger = o.Logger
	if o.Listen.RESTCONF != "" {
		nc.RESTCONF = restconf.Capabilities
	}
	var err error
	if d.NETCONF, err = netconf.New(nc); err != nil {
		return nil, err
	}
	var opened []io.Closer
	fail := func(err error) (*Daemon, error) {
		for _, c := range opened {
			c.Close()
		}
		return nil, err
	}
	listen := func(name, addr string) (net.Listener, string, error) {
		if addr == "" {
			return nil, "", nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", name, err)
		}
		opened = append(opened, ln)
		return ln, ln.Addr().String(), nil
	}
	sshLn, a, err := listen("netconf_ssh", o.Listen.NetconfSSH)
	if err != nil {
		return fail(err)
	}
	d.SSHAddr = a
	tlsLn, a, err := listen("netconf_tls", o.Listen.NetconfTLS)
	if err != nil {
		return fail(err)
	}
	d.TLSAddr = a
	rcLn, a, err := listen("restconf", o.Listen.RESTCONF)
	if err != nil {
		return fail(err)
	}
	d.RESTCONFAddr = a
	var snmpConn net.PacketConn
	if o.Listen.SNMP != "" || o.AgentX != "" {
		if o.Listen.SNMP != "" {
			if snmpConn, err = net.ListenPacket("udp", o.Listen.SNMP); err != nil {
				return fail(fmt.Errorf("snmp: %w", err))
			}
			opened = append(opened, snmpConn)
			d.SNMPAddr = snmpConn.LocalAddr().String()
		}
		sc := o.SNMP
		sc.Attester, sc.Users, sc.AgentXOnly = nc.Attester, o.Access.SNMPUsers, o.Listen.SNMP == ""
		if sc.Logger == nil {
			sc.Logger = o.Logger
		}
		if d.SNMP, err = snmp.New(sc); err != nil {
			return fail(err)
		}
	}
	tlsCfg := netconf.TLSConfig{Certificate: o.Identity, ClientCAs: o.ClientCAs, CertToName: o.CertToName}
	var rc *restconf.Server
	if rcLn != nil {
		if rc, err = restconf.New(restconf.Config{NETCONF: d.NETCONF, TLS: tlsCfg, Logger: o.Logger}); err != nil {
			return fail(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	var runs []func() error
	if sshLn != nil {
		sc := netconf.SSHConfig{HostKey: signer, KeysFor: func(user string) []ssh.PublicKey { return (*d.keys.Load())[user] }}
		runs = append(runs, func() error { return d.NETCONF.ServeSSH(ctx, sshLn, sc) })
	}
	if tlsLn != nil {
		runs = append(runs, func() error { return d.NETCONF.ServeTLS(ctx, tlsLn, tlsCfg) })
	}
	if rc != nil {
		runs = append(runs, func() error { return rc.Serve(ctx, rcLn) })
	}
	if snmpConn != nil {
		runs = append(runs, func() error { return d.SNMP.Serve(ctx, snmpConn) })
	}
	if o.AgentX != "" {
		runs = append(runs, func() error { return d.SNMP.AgentX(ctx, o.AgentX) })
	}
	errc := make(chan error, len(runs))
	for _, run := range runs {
		go func() {
			err := run()
			if err != nil && ctx.Err() == nil {
				o.Logger.Error("server stopped", "err", err)
			}
			errc <- err
		}()
	}
	go func() {
		defer close(d.done)
		for range runs {
			<-errc
		}
	}()
	return d, nil
}

// Reload changes users, access control and SNMP users. Sessions stay
// open; what they may do next follows the new NACM at once.
func (d *Daemon) Reload(a Access) error {
	if d.SNMP != nil {
		if err := d.SNMP.SetUsers(a.SNMPUsers); err != nil {
			return err
		}
	}
	d.keys.Store(&a.SSHKeys)
	d.NETCONF.SetNACM(a.NACM)
	return nil
}

// Shutdown drains — new connections are refused, RPCs being answered
// finish until ctx ends — then stops every server.
func (d *Daemon) Shutdown(ctx context.Context) error {
	err := d.NETCONF.Drain(ctx)
	d.Close()
	return err
}

// Close stops every server at once and waits for them.
func (d *Daemon) Close() {
	d.cancel()
	<-d.done
}

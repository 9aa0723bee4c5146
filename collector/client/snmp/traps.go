package snmp

import (
	"errors"
	"fmt"
	"log"
	"net"
	"sync"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/openriv/riv/pkg/mibdef"
)

// Traps receives the SNMPv3 traps (authPriv) of the devices the collector
// polls over SNMP, and tells which device sent which notification. A trap
// is authenticated with the device's user, its keys localized to the
// device's engine ID (a trap's authoritative engine is its sender, RFC
// 3414 §3.1.1), learned when the collector first reached it: a trap from
// an engine it has not polled, or that does not authenticate, is dropped.
type Traps struct {
	l *gosnmp.TrapListener

	mu      sync.Mutex
	table   *gosnmp.SnmpV3SecurityParametersTable
	devices map[string]string // engine ID → device
	params  map[string]bool   // device + engine ID registered
}

// Notification is one notification a device sent.
type Notification struct {
	Device string
	OID    mibdef.OID // snmpTrapOID.0: rivTpmReset, rivPcrExtended, rivLogGrown, ...
}

// snmpTrapOID0 is SNMPv2-MIB's snmpTrapOID.0.
const snmpTrapOID0 = ".1.3.6.1.6.3.1.1.4.1.0"

// ListenTraps receives traps on addr (HOST:PORT, UDP) and calls on for
// each one from a known device, in its own goroutine.
func ListenTraps(addr string, on func(Notification)) (*Traps, error) {
	t := &Traps{table: gosnmp.NewSnmpV3SecurityParametersTable(gosnmp.NewLogger(log.New(discard{}, "", 0))), devices: map[string]string{}, params: map[string]bool{}}
	params := &gosnmp.GoSNMP{Version: gosnmp.Version3, SecurityModel: gosnmp.UserSecurityModel, MsgFlags: gosnmp.AuthPriv, Timeout: 2 * time.Second,
		TrapSecurityParametersTable: t.table, Logger: gosnmp.NewLogger(log.New(discard{}, "", 0))}
	t.l = gosnmp.NewTrapListener()
	t.l.Params = params
	t.l.OnNewTrap = func(p *gosnmp.SnmpPacket, from *net.UDPAddr) {
		usm, ok := p.SecurityParameters.(*gosnmp.UsmSecurityParameters)
		if !ok || p.MsgFlags&gosnmp.AuthPriv != gosnmp.AuthPriv {
			return // authPriv only
		}
		t.mu.Lock()
		dev, ok := t.devices[usm.AuthoritativeEngineID]
		t.mu.Unlock()
		if !ok {
			return
		}
		for _, v := range p.Variables {
			if v.Name == snmpTrapOID0 && v.Type == gosnmp.ObjectIdentifier {
				if s, ok := v.Value.(string); ok {
					if o, ok := parseOID(s); ok {
						go on(Notification{Device: dev, OID: o})
					}
				}
			}
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- t.l.Listen(addr) }()
	select {
	case <-t.l.Listening():
	case err := <-errc:
		return nil, fmt.Errorf("snmp traps: %s: %w", addr, err)
	case <-time.After(5 * time.Second):
		return nil, fmt.Errorf("snmp traps: %s: not listening after 5 s", addr)
	}
	return t, nil
}

// Add lets a device's traps in: its engine ID (Client.EngineID) and user.
func (t *Traps) Add(device string, engineID []byte, c Credentials) error {
	if len(engineID) < 5 || len(engineID) > 32 {
		return errors.New("snmp traps: an engine ID of 5-32 octets")
	}
	key := device + "\x00" + string(engineID)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.params[key] {
		return nil
	}
	sp := &gosnmp.UsmSecurityParameters{UserName: c.User, AuthoritativeEngineID: string(engineID),
		AuthenticationProtocol: gosnmp.SHA256, AuthenticationPassphrase: c.AuthKey, PrivacyProtocol: gosnmp.AES, PrivacyPassphrase: c.PrivKey,
		Logger: gosnmp.NewLogger(log.New(discard{}, "", 0))}
	if err := t.table.Add(c.User, sp); err != nil {
		return fmt.Errorf("snmp traps: %w", err)
	}
	t.params[key] = true
	t.devices[string(engineID)] = device
	return nil
}

// Close stops receiving.
func (t *Traps) Close() { t.l.Close() }

// EngineID is the agent's engine ID, as discovered when the session
// started.
func (c *Client) EngineID() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if usm, ok := c.g.SecurityParameters.(*gosnmp.UsmSecurityParameters); ok {
		return []byte(usm.AuthoritativeEngineID)
	}
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

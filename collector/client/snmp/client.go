// Package snmp is the collector's SNMPv3 client for RIV-ATTESTATION-MIB
// (mibs/): USM at authPriv (HMAC-SHA-256 and AES-128) through gosnmp,
// which also discovers the agent's engine. A challenge is a row of
// rivChallengeTable created with createAndGo; its quote is read from the
// fragments of rivQuoteTable; the logs are walked in rivEventTable and
// rivEventDataTable from the last entry the verifier holds. Everything
// read is untrusted: the verifier binds it to the quote as it does what
// NETCONF returns.
package snmp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/openriv/riv/collector/evidence"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/mibdef"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
)

// Credentials are an SNMPv3 user at authPriv: SHA-256 and AES are the
// only protocols (the agent speaks no other).
type Credentials struct {
	User                  string
	AuthProtocol, AuthKey string // "SHA-256"
	PrivProtocol, PrivKey string // "AES"
}

// Dialer reaches agents.
type Dialer struct {
	// Timeout is one request's wait for its response (default 2 s);
	// Retries its retransmissions (default 2).
	Timeout time.Duration
	Retries int
	// QuoteTimeout bounds the wait for a challenge's quote (default 30 s:
	// a hardware TPM behind a queue).
	QuoteTimeout time.Duration
}

// Client is one agent's SNMP session. It is safe for one poll at a time
// and serializes calls.
type Client struct {
	mu sync.Mutex
	g  *gosnmp.GoSNMP
	d  Dialer
}

// Limits on what one agent may make the client hold.
const (
	maxEntries   = 1 << 20  // entries of one log
	maxLogBytes  = 64 << 20 // digests and data of one log
	maxQuotePart = 4096     // a TPMS_ATTEST or TPMT_SIGNATURE
	maxCerts     = 16
	maxCertBytes = 16 << 10
	bulk         = 24 // max-repetitions of a GETBULK
)

// Dial opens a session to the agent at addr (HOST:PORT, UDP) and checks
// that it serves RIV-ATTESTATION-MIB. An agent that does not answer, or
// answers without the MIB, is unreachable; one that refuses the user is
// an error too (errors.Is evidence.ErrRefused).
func (d Dialer) Dial(ctx context.Context, addr string, c Credentials) (*Client, error) {
	if c.AuthProtocol != "SHA-256" || c.PrivProtocol != "AES" {
		return nil, fmt.Errorf("snmp: %s/%s: only SHA-256 and AES (authPriv) are supported", c.AuthProtocol, c.PrivProtocol)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("snmp: %q: %w", addr, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("snmp: port %q", port)
	}
	if d.Timeout <= 0 {
		d.Timeout = 2 * time.Second
	}
	if d.Retries <= 0 {
		d.Retries = 2
	}
	if d.QuoteTimeout <= 0 {
		d.QuoteTimeout = 30 * time.Second
	}
	g := &gosnmp.GoSNMP{
		Target: host, Port: uint16(p), Transport: "udp", Version: gosnmp.Version3,
		Timeout: d.Timeout, Retries: d.Retries, MaxRepetitions: bulk, Context: ctx,
		SecurityModel: gosnmp.UserSecurityModel, MsgFlags: gosnmp.AuthPriv,
		SecurityParameters: &gosnmp.UsmSecurityParameters{UserName: c.User,
			AuthenticationProtocol: gosnmp.SHA256, AuthenticationPassphrase: c.AuthKey,
			PrivacyProtocol: gosnmp.AES, PrivacyPassphrase: c.PrivKey},
	}
	if err := g.Connect(); err != nil {
		return nil, fmt.Errorf("snmp: %s: %w", addr, err)
	}
	cl := &Client{g: g, d: d}
	pkt, err := cl.get(ctx, oid(mibdef.TpmName.Child(0)))
	if err != nil {
		g.Conn.Close()
		return nil, fmt.Errorf("snmp: %s: %w", addr, err)
	}
	if v := pkt.Variables[0]; v.Type != gosnmp.OctetString {
		g.Conn.Close()
		return nil, fmt.Errorf("snmp: %s does not serve RIV-ATTESTATION-MIB (rivTpmName is %v)", addr, v.Type)
	}
	return cl, nil
}

// Close ends the session.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.g.Conn.Close()
}

// Error is an SNMP error-status in a response, or a challenge the agent
// could not quote.
type Error struct {
	Status gosnmp.SNMPError
	Index  int
	Msg    string // rivChallengeError
}

func (e *Error) Error() string {
	if e.Msg != "" {
		return "the agent's quote failed: " + e.Msg
	}
	return fmt.Sprintf("the agent answered %v (varbind %d)", e.Status, e.Index)
}

// Is makes every Error evidence.ErrRefused, and a full challenge table or
// a busy TPM queue also evidence.ErrBusy, which the verifier retries.
func (e *Error) Is(target error) bool {
	switch target {
	case evidence.ErrRefused:
		return true
	case evidence.ErrBusy:
		return e.Status == gosnmp.ResourceUnavailable || strings.HasPrefix(e.Msg, "resource-denied")
	}
	return false
}

func oid(o mibdef.OID) string {
	var b strings.Builder
	for _, n := range o {
		b.WriteByte('.')
		b.WriteString(strconv.FormatUint(uint64(n), 10))
	}
	return b.String()
}

// parseOID reads gosnmp's dotted form.
func parseOID(s string) (mibdef.OID, bool) {
	var o mibdef.OID
	for _, p := range strings.Split(strings.TrimPrefix(s, "."), ".") {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return nil, false
		}
		o = append(o, uint32(n))
	}
	return o, true
}

// below returns the sub-identifiers of o after prefix p.
func below(o, p mibdef.OID) ([]uint32, bool) {
	if len(o) <= len(p) || !slices.Equal(o[:len(p)], p) {
		return nil, false
	}
	return o[len(p):], true
}

// do runs one request with ctx and checks its error-status.
func (c *Client) do(ctx context.Context, f func() (*gosnmp.SnmpPacket, error)) (*gosnmp.SnmpPacket, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.g.Context = ctx
	pkt, err := f()
	if err != nil {
		return nil, err
	}
	if pkt.Error != gosnmp.NoError {
		return nil, &Error{Status: pkt.Error, Index: int(pkt.ErrorIndex)}
	}
	return pkt, nil
}

func (c *Client) get(ctx context.Context, oids ...string) (*gosnmp.SnmpPacket, error) {
	pkt, err := c.do(ctx, func() (*gosnmp.SnmpPacket, error) { return c.g.Get(oids) })
	if err == nil && len(pkt.Variables) != len(oids) {
		return nil, fmt.Errorf("%d varbinds for %d OIDs", len(pkt.Variables), len(oids))
	}
	return pkt, err
}

// walk calls f for each instance below root, in order, with GETBULK.
func (c *Client) walk(ctx context.Context, root mibdef.OID, from mibdef.OID, f func(sub []uint32, v gosnmp.SnmpPDU) error) error {
	cur := oid(from)
	for {
		pkt, err := c.do(ctx, func() (*gosnmp.SnmpPacket, error) { return c.g.GetBulk([]string{cur}, 0, bulk) })
		if err != nil {
			return err
		}
		if len(pkt.Variables) == 0 {
			return errors.New("an empty GETBULK response")
		}
		for _, v := range pkt.Variables {
			o, ok := parseOID(v.Name)
			if !ok {
				return fmt.Errorf("varbind name %q", v.Name)
			}
			sub, in := below(o, root)
			if !in || v.Type == gosnmp.EndOfMibView {
				return nil
			}
			if last, _ := parseOID(cur); slices.Compare(o, last) <= 0 {
				return fmt.Errorf("the agent walked back from %s to %s", cur, v.Name)
			}
			if err := f(sub, v); err != nil {
				return err
			}
			cur = v.Name
		}
	}
}

func octets(v gosnmp.SnmpPDU) ([]byte, error) {
	b, ok := v.Value.([]byte)
	if v.Type != gosnmp.OctetString || !ok {
		return nil, fmt.Errorf("%s: %v, want an OCTET STRING", v.Name, v.Type)
	}
	return b, nil
}

func unsigned(v gosnmp.SnmpPDU) (uint64, error) {
	switch v.Type {
	case gosnmp.Gauge32, gosnmp.Uinteger32, gosnmp.Counter32, gosnmp.Integer:
		n := gosnmp.ToBigInt(v.Value)
		if n.Sign() < 0 || !n.IsUint64() {
			return 0, fmt.Errorf("%s: %v out of range", v.Name, n)
		}
		return n.Uint64(), nil
	}
	return 0, fmt.Errorf("%s: %v, want a number", v.Name, v.Type)
}

var logNames = map[uint32]string{1: "bios", 2: "ima", 3: "netequip_boot"}

func logCode(t string) (uint32, bool) {
	for c, n := range logNames {
		if n == t {
			return c, true
		}
	}
	return 0, false
}

// Support reads the certificates (from their fragments), the TPM's name,
// its banks (the rivPcrTable's) and the logs it keeps. The MIB carries
// no software inventory.
func (c *Client) Support(ctx context.Context) (*evidence.Support, error) {
	pkt, err := c.get(ctx, oid(mibdef.TpmName.Child(0)))
	if err != nil {
		return nil, err
	}
	name, err := octets(pkt.Variables[0])
	if err != nil {
		return nil, err
	}
	s := &evidence.Support{TPMs: []evidence.TPM{{Name: string(name)}}}
	type cert struct {
		name, typ string
		der       []byte
	}
	certs := map[uint32]*cert{}
	at := func(n uint32) (*cert, error) {
		if certs[n] == nil {
			if len(certs) == maxCerts {
				return nil, fmt.Errorf("more than %d certificates", maxCerts)
			}
			certs[n] = &cert{}
		}
		return certs[n], nil
	}
	certTable := mibdef.RIVAttestationMIB.Child(1, 3, 1)
	err = c.walk(ctx, certTable, certTable, func(sub []uint32, v gosnmp.SnmpPDU) error {
		if len(sub) != 2 || (sub[0] != 2 && sub[0] != 3) {
			return nil
		}
		ce, err := at(sub[1])
		if err != nil {
			return err
		}
		b, err := octets(v)
		if err != nil {
			return err
		}
		if sub[0] == 2 {
			ce.name = string(b)
		} else {
			ce.typ = string(b)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rivCertTable: %w", err)
	}
	frags := mibdef.CertFragmentData
	err = c.walk(ctx, frags, frags, func(sub []uint32, v gosnmp.SnmpPDU) error {
		ce := certs[sub[0]]
		b, err := octets(v)
		if err != nil || ce == nil || len(sub) != 2 {
			return fmt.Errorf("certificate fragment %v: %v", sub, err)
		}
		if len(ce.der)+len(b) > maxCertBytes {
			return fmt.Errorf("certificate %d longer than %d octets", sub[0], maxCertBytes)
		}
		ce.der = append(ce.der, b...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rivCertFragmentTable: %w", err)
	}
	for _, n := range slices.Sorted(mapKeys(certs)) {
		ce := certs[n]
		x, err := x509.ParseCertificate(ce.der)
		if err != nil {
			return nil, fmt.Errorf("certificate %q: %w", ce.name, err)
		}
		s.Certificates = append(s.Certificates, evidence.Certificate{Name: ce.name, Type: ce.typ, Cert: x, TPM: string(name)})
	}
	banks := map[alg.ID]bool{}
	err = c.walk(ctx, mibdef.PcrValue, mibdef.PcrValue, func(sub []uint32, v gosnmp.SnmpPDU) error {
		if len(sub) == 2 && !banks[alg.ID(sub[0])] {
			banks[alg.ID(sub[0])] = true
			s.Banks = append(s.Banks, alg.ID(sub[0]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rivPcrTable: %w", err)
	}
	err = c.walk(ctx, mibdef.LogEntries, mibdef.LogEntries, func(sub []uint32, v gosnmp.SnmpPDU) error {
		if n, ok := logNames[sub[0]]; ok && len(sub) == 1 {
			s.LogTypes = append(s.LogTypes, n)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rivLogTable: %w", err)
	}
	return s, nil
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Logs reads the entries of one log after event-number after (nil: all)
// and the device's up-time.
func (c *Client) Logs(ctx context.Context, logType string, after *uint64) (*eventlog.Log, uint32, error) {
	code, ok := logCode(logType)
	if !ok {
		return nil, 0, fmt.Errorf("log type %q has no rivLogType", logType)
	}
	l := &eventlog.Log{Format: eventlog.FormatIMA}
	if logType == "bios" {
		l.Format = eventlog.FormatTCG
	}
	var events []eventlog.Event
	byNum := map[uint32]int{}
	type row struct {
		pcr, typ, dataLen int64
		tmpl              string
		digests           []byte
		cols              int
	}
	rows := map[uint32]*row{}
	var order []uint32
	size := 0
	for _, col := range []uint32{mibdef.EventPcr, mibdef.EventType, mibdef.EventTemplate, mibdef.EventDigests, mibdef.EventDataLength} {
		root := mibdef.EventEntry.Child(col, code)
		from := root
		if after != nil {
			if *after >= 1<<32-1 {
				return l, 0, nil
			}
			from = root.Child(uint32(*after))
		}
		err := c.walk(ctx, root, from, func(sub []uint32, v gosnmp.SnmpPDU) error {
			if len(sub) != 1 {
				return fmt.Errorf("rivEventTable index %v", sub)
			}
			n := sub[0]
			r := rows[n]
			if r == nil {
				if col != mibdef.EventPcr {
					return nil // an entry added since the first column was read: the next poll has it
				}
				if len(rows) == maxEntries {
					return fmt.Errorf("more than %d entries", maxEntries)
				}
				r = &row{}
				rows[n] = r
				order = append(order, n)
			}
			r.cols++
			var err error
			var u uint64
			switch col {
			case mibdef.EventPcr:
				if v.Type != gosnmp.Integer {
					return fmt.Errorf("%s: %v", v.Name, v.Type)
				}
				r.pcr = int64(gosnmp.ToBigInt(v.Value).Int64())
			case mibdef.EventType:
				u, err = unsigned(v)
				r.typ = int64(u)
			case mibdef.EventTemplate:
				var b []byte
				b, err = octets(v)
				r.tmpl = string(b)
			case mibdef.EventDigests:
				r.digests, err = octets(v)
				size += len(r.digests)
			case mibdef.EventDataLength:
				u, err = unsigned(v)
				r.dataLen = int64(u)
				size += int(min(u, maxLogBytes+1))
			}
			if err == nil && size > maxLogBytes {
				err = fmt.Errorf("the log holds more than %d octets", maxLogBytes)
			}
			return err
		})
		if err != nil {
			return nil, 0, fmt.Errorf("%s log: %w", logType, err)
		}
	}
	for _, n := range order {
		r := rows[n]
		if r.cols != 5 {
			continue // read after the first columns: next poll
		}
		if r.pcr < -1 || r.pcr > 31 || r.typ > 1<<32-1 {
			return nil, 0, fmt.Errorf("%s log entry %d: PCR %d, type %d", logType, n, r.pcr, r.typ)
		}
		ds, err := parseDigests(r.digests)
		if err != nil {
			return nil, 0, fmt.Errorf("%s log entry %d: %w", logType, n, err)
		}
		e := eventlog.Event{Seq: int(n), PCR: int(r.pcr), IndexType: 1, Type: uint32(r.typ), Digests: ds}
		if l.Format == eventlog.FormatIMA && r.tmpl == "" {
			return nil, 0, fmt.Errorf("%s log entry %d: no IMA template", logType, n)
		}
		byNum[n] = len(events)
		events = append(events, e)
		events[len(events)-1].IMA = &eventlog.IMAEntry{Template: r.tmpl} // data below
	}
	// The data, from the fragments of the entries read.
	dataRoot := mibdef.EventData.Child(code)
	from := dataRoot
	if after != nil {
		from = dataRoot.Child(uint32(*after), 1<<32-1)
	}
	err := c.walk(ctx, dataRoot, from, func(sub []uint32, v gosnmp.SnmpPDU) error {
		if len(sub) != 2 {
			return fmt.Errorf("rivEventDataTable index %v", sub)
		}
		i, ok := byNum[sub[0]]
		if !ok {
			return nil // an entry not read above
		}
		b, err := octets(v)
		if err != nil {
			return err
		}
		e := &events[i]
		if int64(len(e.Data)+len(b)) > rows[sub[0]].dataLen {
			return fmt.Errorf("entry %d: more data than its rivEventDataLength %d", sub[0], rows[sub[0]].dataLen)
		}
		e.Data = append(e.Data, b...)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("%s log data: %w", logType, err)
	}
	bankSet := map[alg.ID]bool{}
	for i := range events {
		e := &events[i]
		n := uint32(e.Seq)
		if int64(len(e.Data)) != rows[n].dataLen {
			return nil, 0, fmt.Errorf("%s log entry %d: %d octets of data, rivEventDataLength says %d", logType, n, len(e.Data), rows[n].dataLen)
		}
		if l.Format == eventlog.FormatIMA {
			ent, err := eventlog.DecodeIMATemplate(e.IMA.Template, e.Data)
			if err != nil {
				return nil, 0, fmt.Errorf("%s log entry %d: %w", logType, n, err)
			}
			e.IMA = ent
		} else {
			e.IMA = nil
		}
		for _, d := range e.Digests {
			bankSet[d.Alg] = true
		}
	}
	l.Events = events
	finishBanks(l, bankSet)
	pkt, err := c.get(ctx, oid(mibdef.UpTime.Child(0)))
	if err != nil {
		return nil, 0, err
	}
	up, err := unsigned(pkt.Variables[0])
	if err != nil {
		return nil, 0, err
	}
	return l, uint32(min(up, 1<<32-1)), nil
}

// finishBanks sets the log's banks as the NETCONF decoder does: for a TCG
// log only those every extending event carries; and its startup locality.
func finishBanks(l *eventlog.Log, set map[alg.ID]bool) {
	for _, b := range []alg.ID{alg.SHA1, alg.SHA256, alg.SHA384, alg.SHA512, alg.SM3_256} {
		if !set[b] {
			continue
		}
		complete := true
		for i := range l.Events {
			if l.Format == eventlog.FormatTCG && eventlog.EventType(l.Events[i].Type) != eventlog.EvNoAction && l.Events[i].Digest(b) == nil {
				complete = false
				break
			}
		}
		if complete {
			l.Banks = append(l.Banks, b)
		}
	}
	for i := range l.Events {
		e := &l.Events[i]
		if l.Format == eventlog.FormatTCG && eventlog.EventType(e.Type) == eventlog.EvNoAction && e.PCR == 0 && bytes.HasPrefix(e.Data, []byte("StartupLocality\x00")) && len(e.Data) == 17 {
			l.StartupLocality = e.Data[16]
		}
	}
}

// parseDigests reads rivEventDigests: a TPML_DIGEST_VALUES, big-endian.
func parseDigests(b []byte) ([]eventlog.Digest, error) {
	if len(b) < 4 {
		return nil, errors.New("rivEventDigests shorter than its count")
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if n > 8 {
		return nil, fmt.Errorf("%d digests", n)
	}
	out := make([]eventlog.Digest, 0, n)
	for range n {
		if len(b) < 2 {
			return nil, errors.New("rivEventDigests truncated")
		}
		a := alg.ID(binary.BigEndian.Uint16(b))
		sz := a.Size()
		if sz == 0 || len(b) < 2+sz {
			return nil, fmt.Errorf("digest of algorithm %v truncated or unknown", a)
		}
		out = append(out, eventlog.Digest{Alg: a, Value: slices.Clone(b[2 : 2+sz])})
		b = b[2+sz:]
	}
	if len(b) != 0 {
		return nil, errors.New("octets after the digests")
	}
	return out, nil
}

// Collect creates a challenge row, waits for its quote, reads it, removes
// the row, then reads each log.
func (c *Client) Collect(ctx context.Context, nonce []byte, sel []pcr.Selection, logs []evidence.LogRequest) ([]evidence.Quote, []evidence.LogResult, error) {
	q, err := c.challenge(ctx, nonce, sel)
	if err != nil {
		return nil, nil, err
	}
	var out []evidence.LogResult
	for _, r := range logs {
		l, up, err := c.Logs(ctx, r.Type, r.After)
		out = append(out, evidence.LogResult{Log: l, UpTime: up, Err: err})
	}
	return []evidence.Quote{*q}, out, nil
}

func (c *Client) challenge(ctx context.Context, nonce []byte, sel []pcr.Selection) (*evidence.Quote, error) {
	var b [4]byte
	rand.Read(b[:])
	idx := binary.BigEndian.Uint32(b[:])&(1<<31-1) | 1
	col := func(n uint32) string { return oid(mibdef.ChallengeEntry.Child(n, idx)) }
	_, err := c.do(ctx, func() (*gosnmp.SnmpPacket, error) {
		return c.g.Set([]gosnmp.SnmpPDU{
			{Name: col(mibdef.ChallengeNonce), Type: gosnmp.OctetString, Value: nonce},
			{Name: col(mibdef.ChallengeSelection), Type: gosnmp.OctetString, Value: quote.AppendSelection(nil, sel)},
			{Name: col(mibdef.ChallengeRowStatus), Type: gosnmp.Integer, Value: mibdef.RowCreateAndGo},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("challenge: %w", err)
	}
	defer func() {
		// The row goes; it would age out otherwise.
		c.do(context.WithoutCancel(ctx), func() (*gosnmp.SnmpPacket, error) {
			return c.g.Set([]gosnmp.SnmpPDU{{Name: col(mibdef.ChallengeRowStatus), Type: gosnmp.Integer, Value: mibdef.RowDestroy}})
		})
	}()
	deadline := time.Now().Add(c.d.QuoteTimeout)
	wait := 5 * time.Millisecond
	var up uint64
	var certName string
	for {
		pkt, err := c.get(ctx, col(mibdef.ChallengeState), col(mibdef.ChallengeError), col(mibdef.ChallengeCertName), oid(mibdef.UpTime.Child(0)))
		if err != nil {
			return nil, fmt.Errorf("challenge: %w", err)
		}
		state, err := unsigned(pkt.Variables[0])
		if err != nil {
			return nil, fmt.Errorf("challenge: %w", err)
		}
		if state == mibdef.StateFailed {
			msg, _ := octets(pkt.Variables[1])
			return nil, &Error{Msg: string(msg)}
		}
		if state == mibdef.StateReady {
			name, _ := octets(pkt.Variables[2])
			certName = string(name)
			up, _ = unsigned(pkt.Variables[3])
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("challenge: no quote after %v", c.d.QuoteTimeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
	var parts [3][]byte
	root := mibdef.QuoteData.Child(idx)
	err = c.walk(ctx, root, root, func(sub []uint32, v gosnmp.SnmpPDU) error {
		if len(sub) != 2 || sub[0] < 1 || sub[0] > 2 {
			return fmt.Errorf("rivQuoteTable index %v", sub)
		}
		b, err := octets(v)
		if err != nil {
			return err
		}
		if len(parts[sub[0]])+len(b) > maxQuotePart {
			return fmt.Errorf("a quote part longer than %d octets", maxQuotePart)
		}
		parts[sub[0]] = append(parts[sub[0]], b...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	pkt, err := c.get(ctx, col(mibdef.ChallengeAttestLength), col(mibdef.ChallengeSignatureLength))
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	for i, p := range []int{mibdef.QuoteAttest, mibdef.QuoteSignature} {
		if n, err := unsigned(pkt.Variables[i]); err != nil || n != uint64(len(parts[p])) || n == 0 {
			return nil, fmt.Errorf("quote part %d: %d octets read, the row says %d (%v)", p, len(parts[p]), n, err)
		}
	}
	return &evidence.Quote{CertificateName: certName, Attest: parts[mibdef.QuoteAttest], Sig: parts[mibdef.QuoteSignature], UpTime: uint32(min(up, 1<<32-1))}, nil
}

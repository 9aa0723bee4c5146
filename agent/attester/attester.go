// Package attester implements the RFC 9684 (ietf-tpm-remote-attestation)
// semantics on top of pkg/tpm and the device's event logs, independent of
// the transport: the NETCONF, RESTCONF and SNMP servers all call it.
//
// It answers tpm20-challenge-response-attestation with the TPM's
// TPMS_ATTEST and TPMT_SIGNATURE unchanged, log-retrieval with the log
// entries the selector asks for, and serves rats-support-structures.
// Input that the module's must-statements forbid is answered with an
// RPCError carrying the module's own error-message.
package attester

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
	"github.com/openriv/riv/pkg/tpm"
)

// LogType is an attested_event_log_type identity of RFC 9684.
type LogType string

// Log types.
const (
	LogBIOS     LogType = "bios"
	LogIMA      LogType = "ima"
	LogNetequip LogType = "netequip_boot"
)

// TPM is what the attester asks of a TPM: *tpm.TPM (the in-process
// simulator, swtpm or a kernel device), or the fleet simulator's software
// TPM (agent/sim/softtpm), which encodes the same structures.
type TPM interface {
	Banks(ctx context.Context) ([]alg.ID, error)
	ReadPCRs(ctx context.Context, sel []pcr.Selection) (pcr.Values, error)
	ReadClock(ctx context.Context) (quote.ClockInfo, error)
	Quote(ctx context.Context, key *tpm.Key, nonce []byte, sel []pcr.Selection) (attest, sig []byte, err error)
}

// CertType is the certificate type enumeration of RFC 9684.
type CertType string

// Certificate types.
const (
	CertEK  CertType = "endorsement-certificate"
	CertIAK CertType = "initial-attestation-certificate"
	CertLAK CertType = "local-attestation-certificate"
)

// Certificate is a TPM certificate the attester exposes.
type Certificate struct {
	Name string
	Type CertType
	Cert *x509.Certificate
	// Key is the TPM key behind an attestation certificate (IAK, LAK).
	Key *tpm.Key
	// KeystoreRef names the ietf-keystore asymmetric-key holding it.
	KeystoreRef string
}

// Entries is a log as the device currently holds it, with the time each
// entry was appended (for log-selector timestamps).
type Entries struct {
	Log   *eventlog.Log
	Times []time.Time
}

// Source provides the device's logs.
type Source interface {
	Log(ctx context.Context, t LogType) (*Entries, error)
}

// Config describes the attester.
type Config struct {
	TPM           TPM
	TPMName       string // e.g. "tpm0"
	Manufacturer  string
	HardwareBased bool
	Certificates  []Certificate
	Logs          Source
	// LogTypes are the logs this device keeps (default bios and
	// netequip_boot): they are the features of ietf-tpm-remote-attestation
	// it announces, and the only log types log-retrieval serves.
	LogTypes []LogType
	// BootTime is when the device booted (for up-time).
	BootTime time.Time
	// QuotesPerSecond and QuoteBurst limit each client's TPM2_Quote calls
	// (default 20 and 40): a real TPM takes 100–800 ms per quote.
	QuotesPerSecond float64
	QuoteBurst      int
	// MaxQueuedPerClient and MaxQueued bound the quotes waiting for the
	// TPM, per client (default 4) and in all (default 64). Clients take
	// turns (see queue).
	MaxQueuedPerClient, MaxQueued int
	// MaxLogEntries caps one log-retrieval reply (default 10000).
	MaxLogEntries int
	// Node is the compute node of the TPM above (RFC 9684 compute-nodes:
	// the control card), named when the device has LineCards.
	Node Node
	// LineCards are the device's further TPMs, one per line card or
	// second control card, each on its own compute node: the device then
	// implements the mtpm feature, a challenge may name the certificates
	// of the TPMs it wants quotes from, and log-retrieval the TPMs whose
	// logs it wants.
	LineCards []Card
}

// Node is a compute node of a composite device.
type Node struct {
	ID, Name, Location string
}

// Card is one further TPM of the device with its own keys and logs.
type Card struct {
	Node          Node
	TPM           TPM
	TPMName       string
	Manufacturer  string
	HardwareBased bool
	Certificates  []Certificate
	Logs          Source
	LogTypes      []LogType
	BootTime      time.Time
}

// unit is one TPM of the device as the attester serves it.
type unit struct {
	Card
	banks []alg.ID
}

// Attester answers RFC 9684 requests.
type Attester struct {
	cfg   Config
	banks []alg.ID
	units []*unit // the TPM of cfg first, then the line cards'
	now   func() time.Time

	queue    *queue
	mu       sync.Mutex
	inflight map[string]*call
}

type call struct {
	done chan struct{}
	res  []Response
	err  error
}

// New checks cfg and reads the TPM's allocated banks.
func New(ctx context.Context, cfg Config) (*Attester, error) {
	if cfg.TPM == nil || cfg.Logs == nil {
		return nil, errors.New("attester: TPM and log source are required")
	}
	if cfg.TPMName == "" {
		cfg.TPMName = "tpm0"
	}
	if cfg.QuotesPerSecond == 0 {
		cfg.QuotesPerSecond = 20
	}
	if cfg.QuoteBurst == 0 {
		cfg.QuoteBurst = 40
	}
	if cfg.MaxQueuedPerClient == 0 {
		cfg.MaxQueuedPerClient = 4
	}
	if cfg.MaxQueued == 0 {
		cfg.MaxQueued = 64
	}
	if cfg.MaxLogEntries == 0 {
		cfg.MaxLogEntries = 10000
	}
	if len(cfg.LogTypes) == 0 {
		cfg.LogTypes = []LogType{LogBIOS, LogNetequip}
	}
	for _, t := range cfg.LogTypes {
		switch t {
		case LogBIOS, LogIMA, LogNetequip:
		default:
			return nil, fmt.Errorf("attester: unknown log type %q", t)
		}
	}
	if cfg.BootTime.IsZero() {
		cfg.BootTime = time.Now()
	}
	ak := 0
	for _, c := range cfg.Certificates {
		if c.Type != CertEK && c.Key != nil {
			ak++
		}
	}
	if ak == 0 {
		return nil, errors.New("attester: no attestation-key certificate with its TPM key")
	}
	banks, err := cfg.TPM.Banks(ctx)
	if err != nil {
		return nil, fmt.Errorf("attester: %w", err)
	}
	a := &Attester{cfg: cfg, banks: banks, now: time.Now, inflight: map[string]*call{}}
	a.units = []*unit{{Card: Card{Node: cfg.Node, TPM: cfg.TPM, TPMName: cfg.TPMName, Manufacturer: cfg.Manufacturer, HardwareBased: cfg.HardwareBased,
		Certificates: cfg.Certificates, Logs: cfg.Logs, LogTypes: cfg.LogTypes, BootTime: cfg.BootTime}, banks: banks}}
	if len(cfg.LineCards) > 0 && cfg.Node.ID == "" {
		return nil, errors.New("attester: a device with line cards names the compute node of its first TPM (Config.Node)")
	}
	names, nodes, certs := map[string]bool{cfg.TPMName: true}, map[string]bool{cfg.Node.ID: true}, map[string]bool{}
	for _, c := range cfg.Certificates {
		certs[c.Name] = true
	}
	for i, c := range cfg.LineCards {
		switch {
		case c.TPM == nil || c.Logs == nil:
			return nil, fmt.Errorf("attester: line card %d: TPM and log source are required", i)
		case c.TPMName == "" || names[c.TPMName]:
			return nil, fmt.Errorf("attester: line card %d: TPM name %q is empty or taken", i, c.TPMName)
		case c.Node.ID == "" || nodes[c.Node.ID]:
			return nil, fmt.Errorf("attester: line card %d: compute node %q is empty or taken", i, c.Node.ID)
		}
		names[c.TPMName], nodes[c.Node.ID] = true, true
		hasAK := false
		for _, cert := range c.Certificates {
			if certs[cert.Name] {
				// certificate-name is unique on the device: it alone
				// names the TPM a challenge wants.
				return nil, fmt.Errorf("attester: line card %s: certificate name %q is taken", c.TPMName, cert.Name)
			}
			certs[cert.Name] = true
			hasAK = hasAK || (cert.Type != CertEK && cert.Key != nil)
		}
		if !hasAK {
			return nil, fmt.Errorf("attester: line card %s: no attestation-key certificate with its TPM key", c.TPMName)
		}
		for _, t := range c.LogTypes {
			if t != LogBIOS && t != LogIMA && t != LogNetequip {
				return nil, fmt.Errorf("attester: line card %s: unknown log type %q", c.TPMName, t)
			}
		}
		if c.BootTime.IsZero() {
			c.BootTime = cfg.BootTime
		}
		b, err := c.TPM.Banks(ctx)
		if err != nil {
			return nil, fmt.Errorf("attester: line card %s: %w", c.TPMName, err)
		}
		a.units = append(a.units, &unit{Card: c, banks: b})
	}
	a.queue = newQueue(cfg.QuotesPerSecond, cfg.QuoteBurst, cfg.MaxQueuedPerClient, cfg.MaxQueued, func() time.Time { return a.now() })
	return a, nil
}

// Keeps reports whether the device keeps logs of type t (on any TPM).
func (a *Attester) Keeps(t LogType) bool {
	for _, u := range a.units {
		if slices.Contains(u.LogTypes, t) {
			return true
		}
	}
	return false
}

// LogTypes are the log types the device keeps on any of its TPMs, in
// the order of the first TPM's, then the line cards'.
func (a *Attester) LogTypes() []LogType {
	var out []LogType
	for _, u := range a.units {
		for _, t := range u.LogTypes {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// MultiTPM reports whether the device has several TPMs (the mtpm
// feature).
func (a *Attester) MultiTPM() bool { return len(a.units) > 1 }

// TPMInfo describes one TPM for rats-support-structures.
type TPMInfo struct {
	Name          string
	Node          Node
	Manufacturer  string
	HardwareBased bool
	Banks         []alg.ID
	Certificates  []Certificate
}

// TPMs lists the device's TPMs: the first one's, then the line cards'.
func (a *Attester) TPMs() []TPMInfo {
	out := make([]TPMInfo, len(a.units))
	for i, u := range a.units {
		out[i] = TPMInfo{Name: u.TPMName, Node: u.Node, Manufacturer: u.Manufacturer, HardwareBased: u.HardwareBased, Banks: u.banks, Certificates: u.Certificates}
	}
	return out
}

// Banks returns the PCR banks a challenge may select
// (attester-supported-algos): those every TPM of the device allocates.
func (a *Attester) Banks() []alg.ID {
	if len(a.units) < 2 {
		return a.banks
	}
	var out []alg.ID
	for _, b := range a.banks {
		if a.supports(b) {
			out = append(out, b)
		}
	}
	return out
}

// Config returns the configuration (read-only use).
func (a *Attester) Config() *Config { return &a.cfg }

func (a *Attester) upTime() uint32 { return a.upTimeOf(a.units[0]) }

func (a *Attester) upTimeOf(u *unit) uint32 {
	d := a.now().Sub(u.BootTime)
	if d < 0 {
		return 0
	}
	return uint32(d / time.Second)
}

// RPCError is an rpc-error (RFC 6241 §4.3) the transport renders.
type RPCError struct {
	Type    string // "application" or "protocol"
	Tag     string // "invalid-value", "operation-failed", "resource-denied", ...
	Message string
	Path    string // error-path, an instance identifier
	AppTag  string
	// Info are the error-info children (RFC 6241 §4.3, App. A): for
	// example bad-element naming the element a missing-element error is
	// about.
	Info []ErrorInfo
}

// ErrorInfo is one child of error-info; NS empty means the NETCONF base
// namespace.
type ErrorInfo struct {
	Name, NS, Value string
}

func (e *RPCError) Error() string { return e.Tag + ": " + e.Message }

func invalid(path, msg string) *RPCError {
	return &RPCError{Type: "application", Tag: "invalid-value", Path: path, Message: msg}
}

// Error messages of RFC 9684's must-statements, verbatim.
const (
	msgHashAlgo = "This platform does not support tpm20-hash-algo"
	msgAIKCert  = "Not an available TPM2.0 AIK certificate."
)

// Challenge is the input of tpm20-challenge-response-attestation.
type Challenge struct {
	Nonce            []byte
	Selection        []pcr.Selection
	CertificateNames []string
	// Client names who asks (the authenticated user, over any transport
	// and session): the unit of fairness and rate limiting at the TPM.
	Client string
}

// Response is one tpm20-attestation-response entry.
type Response struct {
	CertificateName string
	TPMName         string // the TPM that quoted (for the transport's logs; not in the reply)
	QuoteData       []byte // TPMS_ATTEST, as the TPM returned it
	QuoteSignature  []byte // TPMT_SIGNATURE, as the TPM returned it
	UpTime          uint32
	UnsignedPCRs    pcr.Values
}

const pathChallenge = "/tpm:tpm20-challenge-response-attestation/tpm:tpm20-attestation-challenge"

// Attest quotes the selected PCRs with every requested attestation key.
// Identical concurrent challenges are coalesced into one TPM call.
func (a *Attester) Attest(ctx context.Context, ch Challenge) ([]Response, error) {
	if len(ch.Nonce) == 0 {
		return nil, &RPCError{Type: "application", Tag: "missing-element", Path: pathChallenge + "/tpm:nonce-value", Message: "nonce-value is required"}
	}
	// TPM2B_DATA holds at most a TPMT_HA: 2 + 64 bytes (Part 2 §10.4.3).
	if len(ch.Nonce) > 64 {
		return nil, invalid(pathChallenge+"/tpm:nonce-value", fmt.Sprintf("nonce-value of %d bytes exceeds the TPM's 64", len(ch.Nonce)))
	}
	if len(ch.Selection) == 0 {
		return nil, &RPCError{Type: "application", Tag: "missing-element", Path: pathChallenge + "/tpm:tpm20-pcr-selection", Message: "tpm20-pcr-selection is required"}
	}
	for _, s := range ch.Selection {
		if !a.supports(s.Bank) {
			return nil, invalid(pathChallenge+"/tpm:tpm20-pcr-selection/tpm:tpm20-hash-algo", msgHashAlgo)
		}
		for _, p := range s.PCRs {
			if p < 0 || p > 31 {
				return nil, invalid(pathChallenge+"/tpm:tpm20-pcr-selection/tpm:pcr-index", fmt.Sprintf("pcr-index %d is out of range 0-31", p))
			}
		}
	}
	keys, err := a.akCerts(ch.CertificateNames)
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%x|%v|%v", ch.Nonce, ch.Selection, ch.CertificateNames)
	a.mu.Lock()
	if c, ok := a.inflight[key]; ok {
		a.mu.Unlock()
		select {
		case <-c.done:
			return c.res, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &call{done: make(chan struct{})}
	a.inflight[key] = c
	a.mu.Unlock()

	release, err := a.queue.acquire(ctx, ch.Client)
	if err != nil {
		c.err = err
		if _, busy := err.(errBusy); busy {
			c.err = &RPCError{Type: "application", Tag: "resource-denied", Message: err.Error()}
		}
	} else {
		c.res, c.err = a.quote(ctx, ch, keys)
		release()
	}
	a.mu.Lock()
	delete(a.inflight, key)
	a.mu.Unlock()
	close(c.done)
	return c.res, c.err
}

// supports reports whether every TPM of the device allocates bank b
// (attester-supported-algos is one list for the device).
func (a *Attester) supports(b alg.ID) bool {
	for _, u := range a.units {
		if !slices.Contains(u.banks, b) {
			return false
		}
	}
	return true
}

// akKey is an attestation key and the TPM holding it.
type akKey struct {
	Certificate
	u *unit
}

// akCerts resolves certificate-name entries to attestation keys; none
// means every attestation-key certificate of every TPM.
func (a *Attester) akCerts(names []string) ([]akKey, error) {
	var out []akKey
	// A name given twice is one quote: certificate-name is unique in the
	// output.
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		found := false
		for _, u := range a.units {
			for _, c := range u.Certificates {
				if c.Name == n && c.Type != CertEK && c.Key != nil {
					out = append(out, akKey{c, u})
					found = true
				}
			}
		}
		if !found {
			return nil, invalid(pathChallenge+"/tpm:certificate-name", msgAIKCert)
		}
	}
	if len(names) == 0 {
		for _, u := range a.units {
			for _, c := range u.Certificates {
				if c.Type != CertEK && c.Key != nil {
					out = append(out, akKey{c, u})
				}
			}
		}
	}
	return out, nil
}

func (a *Attester) quote(ctx context.Context, ch Challenge, keys []akKey) ([]Response, error) {
	var out []Response
	for _, k := range keys {
		attest, sig, err := k.u.TPM.Quote(ctx, k.Key, ch.Nonce, ch.Selection)
		if err != nil {
			return nil, &RPCError{Type: "application", Tag: "operation-failed", Message: "TPM2_Quote failed on " + k.u.TPMName + ": " + err.Error()}
		}
		vals, err := k.u.TPM.ReadPCRs(ctx, ch.Selection)
		if err != nil {
			return nil, &RPCError{Type: "application", Tag: "operation-failed", Message: "TPM2_PCR_Read failed on " + k.u.TPMName + ": " + err.Error()}
		}
		out = append(out, Response{CertificateName: k.Name, TPMName: k.u.TPMName, QuoteData: attest, QuoteSignature: sig, UpTime: a.upTimeOf(k.u), UnsignedPCRs: vals})
	}
	return out, nil
}

// LogSelector is one log-selector entry.
type LogSelector struct {
	Names []string // TPM names; empty means all
	// At most one of these is set (the index-type choice).
	LastEntryValue  []byte
	LastIndexNumber *uint64
	Timestamp       *time.Time
	// Quantity limits the entries returned (log-entry-quantity).
	Quantity *uint16
}

// NodeLog is one node-data entry of the log-retrieval output.
type NodeLog struct {
	Name   string
	UpTime uint32
	Type   LogType
	Log    *eventlog.Log // Events are the selected entries; Seq is the event-number
}

const pathLogSelector = "/tpm:log-retrieval/tpm:log-selector"

// RetrieveLogs answers log-retrieval: for each selector, the entries of
// the requested log after the given entry value, index or time, up to the
// quantity asked (and MaxLogEntries).
func (a *Attester) RetrieveLogs(ctx context.Context, t LogType, sels []LogSelector) ([]NodeLog, error) {
	if !a.Keeps(t) {
		return nil, invalid("/tpm:log-retrieval/tpm:log-type", fmt.Sprintf("log-type %q is not a log this device keeps", t))
	}
	if len(sels) == 0 {
		sels = []LogSelector{{}}
	}
	entries := map[*unit]*Entries{}
	var out []NodeLog
	for _, s := range sels {
		// A name no TPM has selects nothing (the selection is an AND).
		for _, u := range a.selected(s.Names) {
			if !slices.Contains(u.LogTypes, t) {
				continue
			}
			if _, dup := entries[u]; dup {
				// node-data is unique by name: one selector per TPM.
				return nil, invalid(pathLogSelector, fmt.Sprintf("two log-selectors select the TPM %s", u.TPMName))
			}
			ent := entries[u]
			if ent == nil {
				var err error
				if ent, err = u.Logs.Log(ctx, t); err != nil {
					return nil, &RPCError{Type: "application", Tag: "operation-failed", Message: fmt.Sprintf("%s log of %s unavailable: %v", t, u.TPMName, err)}
				}
				entries[u] = ent
			}
			nl, err := a.selectEntries(u, t, ent, s)
			if err != nil {
				return nil, err
			}
			out = append(out, nl)
		}
	}
	return out, nil
}

// selected are the TPMs a log-selector's names choose: those named, or
// with none every hardware-based TPM (RFC 9684) — every TPM when none is
// (a testbed of software TPMs).
func (a *Attester) selected(names []string) []*unit {
	var out []*unit
	for _, u := range a.units {
		if slices.Contains(names, u.TPMName) || (len(names) == 0 && u.HardwareBased) {
			out = append(out, u)
		}
	}
	if len(names) == 0 && len(out) == 0 {
		return a.units
	}
	return out
}

// selectEntries applies one selector to a TPM's log.
func (a *Attester) selectEntries(u *unit, t LogType, ent *Entries, s LogSelector) (NodeLog, error) {
	start := 0
	switch {
	case s.LastIndexNumber != nil:
		start = indexAfter(ent.Log.Events, *s.LastIndexNumber)
	case s.LastEntryValue != nil:
		i := entryAfter(ent.Log.Events, s.LastEntryValue)
		if i < 0 {
			return NodeLog{}, invalid(pathLogSelector+"/tpm:last-entry-value", "no log entry has that value")
		}
		start = i
	case s.Timestamp != nil:
		start = len(ent.Log.Events)
		for i, tm := range ent.Times {
			if tm.After(*s.Timestamp) {
				start = i
				break
			}
		}
	}
	n := len(ent.Log.Events) - start
	if s.Quantity != nil && int(*s.Quantity) < n {
		n = int(*s.Quantity)
	}
	if n > a.cfg.MaxLogEntries {
		n = a.cfg.MaxLogEntries
	}
	l := *ent.Log
	l.Events = ent.Log.Events[start : start+n]
	return NodeLog{Name: u.TPMName, UpTime: a.upTimeOf(u), Type: t, Log: &l}, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// indexAfter returns the position of the first event whose number is
// greater than n.
func indexAfter(ev []eventlog.Event, n uint64) int {
	for i := range ev {
		if uint64(ev[i].Seq) > n {
			return i
		}
	}
	return len(ev)
}

// entryAfter returns the position after the last event one of whose
// digests equals v, or -1.
func entryAfter(ev []eventlog.Event, v []byte) int {
	for i := len(ev) - 1; i >= 0; i-- {
		for _, d := range ev[i].Digests {
			if string(d.Value) == string(v) {
				return i + 1
			}
		}
	}
	return -1
}

// Status is the device state a monitoring view (the SNMP MIB) reports:
// unsigned, for noticing change cheaply; appraisal needs a quote.
type Status struct {
	PCRs   pcr.Values // PCRs 0-23 of every allocated bank
	Clock  quote.ClockInfo
	UpTime uint32
	Logs   []LogStatus
}

// LogStatus is the length and last digest of one log.
type LogStatus struct {
	Type       LogType
	Entries    int
	LastDigest []byte // first digest of the last entry; nil when empty
}

// Status reads the PCRs and clock from the TPM and summarises the logs.
// A log that cannot be read is left out.
func (a *Attester) Status(ctx context.Context) (*Status, error) {
	var sel []pcr.Selection
	all := make([]int, 24)
	for i := range all {
		all[i] = i
	}
	for _, b := range a.banks {
		sel = append(sel, pcr.Selection{Bank: b, PCRs: all})
	}
	vals, err := a.cfg.TPM.ReadPCRs(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("read PCRs: %w", err)
	}
	clock, err := a.cfg.TPM.ReadClock(ctx)
	if err != nil {
		return nil, fmt.Errorf("read clock: %w", err)
	}
	st := &Status{PCRs: vals, Clock: clock, UpTime: a.upTime()}
	for _, t := range a.cfg.LogTypes {
		ent, err := a.cfg.Logs.Log(ctx, t)
		if err != nil || ent == nil || ent.Log == nil {
			continue
		}
		ls := LogStatus{Type: t, Entries: len(ent.Log.Events)}
		if n := len(ent.Log.Events); n > 0 && len(ent.Log.Events[n-1].Digests) > 0 {
			ls.LastDigest = ent.Log.Events[n-1].Digests[0].Value
		}
		st.Logs = append(st.Logs, ls)
	}
	return st, nil
}

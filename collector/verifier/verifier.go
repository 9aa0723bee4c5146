// Package verifier is the collector's appraisal pipeline for one device:
// connect and authenticate it by its IDevID, challenge it with a fresh
// nonce, fetch its logs (incrementally), verify identity, quote, replay
// and reference values, and turn the outcome into an AR4SI trustworthiness
// vector and a signed EAR. Bad evidence is a result; an error means the
// verifier could not do its job (the device unreachable, say).
package verifier

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
	"github.com/openriv/riv/pkg/rim"
)

// Session is what the verifier needs from a transport.
type Session interface {
	Certificates(ctx context.Context) ([]netconf.Certificate, []alg.ID, error)
	Logs(ctx context.Context, logType string, after *uint64) (*eventlog.Log, uint32, error)
	// Collect is the challenge, then Logs for each request, pipelined.
	Collect(ctx context.Context, nonce []byte, sel []pcr.Selection, logs []netconf.LogRequest) ([]netconf.Quote, []netconf.LogResult, error)
}

var _ Session = (*netconf.Client)(nil)

// Policy holds the trust inputs.
type Policy struct {
	Name string // appraisal policy id, e.g. "riv-default"
	// Anchors are the manufacturer CAs for IDevID/IAK.
	Anchors *x509.CertPool
	// RIMs are the verified vendor reference values.
	RIMs *rim.Index
	// Banks to quote, in preference order; the first supported is used.
	Banks []alg.ID
}

// Verifier appraises devices and signs results.
type Verifier struct {
	Policy Policy
	Key    crypto.Signer // EAR signing key (ECDSA P-256 or P-384)
	// Build names the verifier in ear.verifier-id.
	Build string
	// Reuse keeps each device's NETCONF session open between polls
	// (re-dialling when it broke), instead of reconnecting every time.
	Reuse bool
	conns map[string]*pooled

	// ClaimProfile selects the EAR claim names: "veraison" (default,
	// veraison/ear's "ear.status", ...) or "draft-03"
	// (draft-ietf-rats-ear-03's "ear_status", ...).
	ClaimProfile string

	mu    sync.Mutex
	state map[string]*deviceState
	// verified caches identity verdicts by certificate pair: chain
	// building with P-384 CA signatures costs milliseconds, and a device's
	// certificates change once in years. An entry holds until the
	// earliest NotAfter of the pair.
	verified map[[64]byte]cachedIdentity
}

type cachedIdentity struct {
	res   *identity.Result
	until time.Time
}

type deviceState struct {
	resetCount, restartCount uint32
	// The bios log kept, its replay into biosBank, and what its
	// appraisal found against bootRIMs (nil: not appraised since the log
	// or the bank changed); the log only grows until the next reboot,
	// usually not at all.
	bios     *eventlog.Log
	biosBank alg.ID
	biosVals pcr.Values
	boot     *Result
	bootRIMs *rim.Index
	// The netequip_boot log is not kept: it grows for as long as the
	// device runs, so each poll replays and appraises only the new
	// entries, continuing from what was verified before.
	ne netequipState
	// The device's certificates, refetched when the transport presents
	// another key than the cached IDevID's, after a reboot, or hourly.
	certs     []netconf.Certificate
	banks     []alg.ID
	certsTime time.Time
}

// certRefresh is how long a device's certificate list is reused.
const certRefresh = time.Hour

// New returns a verifier.
func New(p Policy, key crypto.Signer) *Verifier {
	if len(p.Banks) == 0 {
		p.Banks = []alg.ID{alg.SHA256}
	}
	if p.Name == "" {
		p.Name = "riv-default"
	}
	return &Verifier{Policy: p, Key: key, Build: "riv-collector", state: map[string]*deviceState{}, verified: map[[64]byte]cachedIdentity{}}
}

// Result is one appraisal.
type Result struct {
	Device  string
	Serial  string
	Status  ear.TrustTier
	Vector  ear.TrustVector
	Reasons []string
	// Rebooted is set when the device rebooted since the last appraisal:
	// logs were fetched from the start, history is kept.
	Rebooted bool
	Clock    quote.ClockInfo
	EAR      []byte // signed JWT
	Time     time.Time
}

// claim records a trust claim for one vector component, keeping the worst.
func (r *Result) claim(set *ear.TrustClaim, c ear.TrustClaim, reason string) {
	if tierOf(c) > tierOf(*set) || *set == ear.NoClaim {
		*set = c
	}
	if reason != "" {
		r.Reasons = append(r.Reasons, reason)
	}
}

func tierOf(c ear.TrustClaim) int {
	switch {
	case c.IsContraindicated():
		return 3
	case c.IsWarning():
		return 2
	case c.IsAffirming():
		return 1
	}
	return 0
}

// Appraise runs the whole flow against one device session; transport
// binding is the caller's: pass the key the transport authenticated (SSH
// host key or TLS leaf key) as peerKey.
func (v *Verifier) Appraise(ctx context.Context, device string, s Session, peerKey crypto.PublicKey) (*Result, error) {
	r := &Result{Device: device, Time: time.Now()}
	tv := &r.Vector

	// 1. Identity: IDevID and IAK certificates, paired and chained.
	certs, banks, err := v.certificates(ctx, device, s, peerKey)
	if err != nil {
		return nil, fmt.Errorf("%s: certificates: %w", device, err)
	}
	var idCert, akCert *x509.Certificate
	for _, c := range certs {
		switch c.Type {
		case "initial-attestation-certificate", "local-attestation-certificate":
			if akCert == nil {
				akCert = c.Cert
			}
		case "":
			if c.Cert.KeyUsage&x509.KeyUsageDigitalSignature != 0 && idCert == nil {
				idCert = c.Cert
			}
		}
	}
	if akCert == nil {
		r.claim(&tv.InstanceIdentity, ear.UnrecognizedInstanceClaim, "instance-identity: the device lists no attestation-key certificate")
		return v.finish(r, nil)
	}
	ir := v.verifyPair(idCert, akCert)
	r.Serial = ir.Serial
	if !ir.OK {
		for _, reason := range ir.Reasons {
			r.claim(&tv.InstanceIdentity, ear.UntrustworthyInstanceClaim, "instance-identity: "+reason)
		}
	} else if idCert != nil && peerKey != nil && !samePub(idCert.PublicKey, peerKey) {
		r.claim(&tv.InstanceIdentity, ear.UntrustworthyInstanceClaim, "instance-identity: the transport was authenticated with a key that is not the IDevID's")
	} else {
		r.claim(&tv.InstanceIdentity, ear.TrustworthyInstanceClaim, "")
		r.claim(&tv.Hardware, ear.GenuineHardwareClaim, "")
	}

	// 2. A fresh challenge.
	bank := alg.Null
	for _, b := range v.Policy.Banks {
		for _, s := range banks {
			if b == s && bank == alg.Null {
				bank = b
			}
		}
	}
	if bank == alg.Null {
		r.claim(&tv.InstanceIdentity, ear.UnexpectedEvidenceClaim, fmt.Sprintf("the TPM allocates none of the banks %v", v.Policy.Banks))
		return v.finish(r, nil)
	}
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	sel := []pcr.Selection{{Bank: bank, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}}
	// The logs are asked for in the same round trip, from where the last
	// poll left off; if the quote shows a reboot they are fetched again
	// from the start.
	v.mu.Lock()
	biosAfter, neAfter := v.state[device].after(bank, v.Policy.RIMs)
	v.mu.Unlock()
	reqs := []netconf.LogRequest{{Type: "bios", After: biosAfter}, {Type: "netequip_boot", After: neAfter}}
	quotes, logs, err := s.Collect(ctx, nonce, sel, reqs)
	if err != nil {
		return nil, fmt.Errorf("%s: challenge: %w", device, err)
	}
	q := quotes[0]
	a, err := quote.ParseAttest(q.Attest)
	if err != nil {
		r.claim(&tv.InstanceIdentity, ear.CryptoValidationFailedClaim, "quote: "+err.Error())
		return v.finish(r, nonce)
	}
	sig, err := quote.ParseSignature(q.Sig)
	if err != nil {
		r.claim(&tv.InstanceIdentity, ear.CryptoValidationFailedClaim, "quote signature: "+err.Error())
		return v.finish(r, nonce)
	}
	// Signature, nonce and selection first; the PCR digest after replay.
	if _, err := quote.VerifyParsed(akCert.PublicKey, a, sig, quote.Options{Nonce: nonce, Selection: sel}); err != nil {
		r.claim(&tv.InstanceIdentity, ear.CryptoValidationFailedClaim, "quote: "+err.Error())
		return v.finish(r, nonce)
	}
	r.Clock = a.ClockInfo

	// 3. Logs, incrementally unless the device rebooted.
	v.mu.Lock()
	st := v.state[device]
	if st == nil || st.resetCount != a.ClockInfo.ResetCount || st.restartCount != a.ClockInfo.RestartCount {
		r.Rebooted = st != nil && st.resetCount != ^uint32(0)
		// Logs start over; certificates are refetched on the next poll.
		st = &deviceState{resetCount: a.ClockInfo.ResetCount, restartCount: a.ClockInfo.RestartCount}
		v.state[device] = st
	}
	v.mu.Unlock()
	biosAfter, neAfter = st.after(bank, v.Policy.RIMs)
	if neAfter == nil {
		// Nothing verified yet for this bank and these RIMs.
		st.ne = netequipState{bank: bank}
	}
	// What was collected is used when it starts where this state needs
	// it to; otherwise (first poll, reboot) the log is fetched again.
	get := func(k int, after *uint64) (*eventlog.Log, error) {
		if sameAfter(after, reqs[k].After) {
			return logs[k].Log, logs[k].Err
		}
		l, _, err := s.Logs(ctx, reqs[k].Type, after)
		return l, err
	}
	newBios, err := get(0, biosAfter)
	if err != nil {
		return nil, fmt.Errorf("%s: bios log: %w", device, err)
	}
	bios := newBios
	if st.bios != nil && len(newBios.Events) == 0 {
		bios = st.bios // the usual case: the boot log ended long ago
	} else if st.bios != nil {
		c := *st.bios
		c.Events = append(append([]eventlog.Event(nil), st.bios.Events...), newBios.Events...)
		bios = &c
	}
	ne, err := get(1, neAfter)
	if err != nil {
		return nil, fmt.Errorf("%s: netequip_boot log: %w", device, err)
	}

	// 4. Replay both logs to the quoted PCRs.
	bv, err := st.biosReplay(bios, bank)
	if err != nil {
		r.claim(&tv.Executables, ear.UnexpectedEvidenceClaim, "bios log: "+err.Error())
		return v.finish(r, nonce)
	}
	nv, err := st.ne.replay(ne, bank)
	if err != nil {
		r.claim(&tv.Executables, ear.UnexpectedEvidenceClaim, "netequip_boot log: "+err.Error())
		return v.finish(r, nonce)
	}
	// vals holds, per selected PCR, the netequip replay, else the bios
	// replay, else the reset value.
	vals := pcr.Values{}
	merge := func(nv pcr.Values) {
		for _, i := range sel[0].PCRs {
			val := nv.Get(bank, i)
			if val == nil {
				val = bv.Get(bank, i)
			}
			if val == nil {
				val = pcr.Initial(bank, i)
			}
			vals.Set(bank, i, val)
		}
	}
	// The signature was verified above; what is left is whether the
	// replayed values hash to the quoted PCR digest.
	quoted := func() bool {
		d, derr := quote.PCRDigest(sig.Hash, sel, vals)
		return derr == nil && bytes.Equal(d, a.Quote.PCRDigest)
	}
	merge(nv)
	ok := quoted()
	if !ok {
		// Entries measured between the quote and the log retrieval are
		// in the log but not in the quote: accept the longest prefix the
		// quote covers; the rest is fetched again next poll.
		if k, pv := st.ne.coveredPrefix(ne, bank, func(nv pcr.Values) bool {
			merge(nv)
			return quoted()
		}); k >= 0 {
			ne.Events, nv, ok = ne.Events[:k], pv, true
		}
		merge(nv)
	}
	if !ok {
		reason := "the logs do not replay to the quoted PCRs"
		if diff := vals.Diff(q.Unsigned); len(diff) > 0 {
			reason += " (" + strings.Join(diff, "; ") + ")"
		}
		r.claim(&tv.Executables, ear.ContraindicatedRuntimeClaim, reason)
		return v.finish(r, nonce)
	}
	if bios != st.bios || bank != st.biosBank {
		st.boot = nil
	}
	st.bios, st.biosVals, st.biosBank = bios, bv, bank
	st.ne.advance(ne, nv, bank, v.Policy.RIMs)

	// 5. Reference values and policy.
	r.merge(v.bootFindings(st, bios, bank))
	v.appraiseNetequip(r, &st.ne)
	return v.finish(r, nonce)
}

// certificates returns the device's certificate list, from the cache
// while it is fresh and the transport key still matches its IDevID.
func (v *Verifier) certificates(ctx context.Context, device string, s Session, peerKey crypto.PublicKey) ([]netconf.Certificate, []alg.ID, error) {
	v.mu.Lock()
	st := v.state[device]
	var certs []netconf.Certificate
	var banks []alg.ID
	if st != nil && time.Since(st.certsTime) < certRefresh {
		certs, banks = st.certs, st.banks
	}
	v.mu.Unlock()
	if certs != nil && peerKey != nil {
		for _, c := range certs {
			if c.Type == "" && samePub(c.Cert.PublicKey, peerKey) {
				return certs, banks, nil
			}
		}
	}
	certs, banks, err := s.Certificates(ctx)
	if err != nil {
		return nil, nil, err
	}
	v.mu.Lock()
	if st := v.state[device]; st != nil {
		st.certs, st.banks, st.certsTime = certs, banks, time.Now()
	} else {
		v.state[device] = &deviceState{certs: certs, banks: banks, certsTime: time.Now(), resetCount: ^uint32(0)}
	}
	v.mu.Unlock()
	return certs, banks, nil
}

// verifyPair checks the identity pair, from the cache when the same
// certificates were verified before and are still valid.
func (v *Verifier) verifyPair(id, ak *x509.Certificate) *identity.Result {
	var k [64]byte
	if id != nil {
		h := sha256.Sum256(id.Raw)
		copy(k[:32], h[:])
	}
	h := sha256.Sum256(ak.Raw)
	copy(k[32:], h[:])
	now := time.Now()
	v.mu.Lock()
	c, ok := v.verified[k]
	v.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.res
	}
	r := identity.VerifyPair(id, ak, identity.VerifyOptions{Roots: v.Policy.Anchors, Now: now})
	until := ak.NotAfter
	if id != nil && id.NotAfter.Before(until) {
		until = id.NotAfter
	}
	v.mu.Lock()
	v.verified[k] = cachedIdentity{res: r, until: until}
	v.mu.Unlock()
	return r
}

// verifiedChain reports whether leaf (with intermediates) chains to the
// anchors for purpose, caching a success until the leaf expires.
func (v *Verifier) verifiedChain(certs []*x509.Certificate, purpose x509.ExtKeyUsage) error {
	var k [64]byte
	h := sha256.Sum256(certs[0].Raw)
	copy(k[:32], h[:])
	k[32] = byte(purpose) + 1
	now := time.Now()
	v.mu.Lock()
	c, ok := v.verified[k]
	v.mu.Unlock()
	if ok && now.Before(c.until) && now.After(certs[0].NotBefore) {
		return nil
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: v.Policy.Anchors, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{purpose}}); err != nil {
		return err
	}
	v.mu.Lock()
	v.verified[k] = cachedIdentity{until: certs[0].NotAfter}
	v.mu.Unlock()
	return nil
}

// after returns where the next poll's log retrievals start: after the
// last bios event kept, and after the last netequip entry verified for
// this bank and these RIMs (nil: from the start).
func (st *deviceState) after(bank alg.ID, rims *rim.Index) (bios, ne *uint64) {
	if st == nil {
		return nil, nil
	}
	if st.bios != nil && len(st.bios.Events) > 0 {
		n := uint64(st.bios.Events[len(st.bios.Events)-1].Seq)
		bios = &n
	}
	if st.ne.bank == bank && st.ne.rims == rims && st.ne.seen {
		n := st.ne.last
		ne = &n
	}
	return bios, ne
}

func sameAfter(a, b *uint64) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

// biosReplay replays the bios log into bank, reusing the last replay
// while the log is the one kept.
func (st *deviceState) biosReplay(bios *eventlog.Log, bank alg.ID) (pcr.Values, error) {
	if bios == st.bios && bank == st.biosBank && st.biosVals != nil {
		return st.biosVals, nil
	}
	return bios.Replay(eventlog.ReplayOptions{Banks: []alg.ID{bank}})
}

// bootFindings appraises the kept bios log (event anomalies, RIMs,
// firmware configuration) into a partial result. The findings depend only
// on the log, the bank and the RIMs, so they are kept until one changes.
func (v *Verifier) bootFindings(st *deviceState, bios *eventlog.Log, bank alg.ID) *Result {
	if st.boot != nil && st.bootRIMs == v.Policy.RIMs {
		return st.boot
	}
	br := &Result{}
	bios.CheckDigests(bank)
	for _, e := range bios.Events {
		if e.Anomaly != "" {
			br.claim(&br.Vector.Executables, ear.ContraindicatedRuntimeClaim, fmt.Sprintf("bios event %d (PCR %d): %s", e.Seq, e.PCR, e.Anomaly))
		}
	}
	v.appraiseBoot(br, bios, bank)
	st.boot, st.bootRIMs = br, v.Policy.RIMs
	return br
}

// merge adds a partial result's claims and reasons, as if its claims had
// been made on r.
func (r *Result) merge(p *Result) {
	dst, src := vectorClaims(&r.Vector), vectorClaims(&p.Vector)
	for i, c := range src {
		if *c != ear.NoClaim {
			r.claim(dst[i], *c, "")
		}
	}
	r.Reasons = append(r.Reasons, p.Reasons...)
}

// vectorClaims lists a trust vector's claims, in field order.
func vectorClaims(v *ear.TrustVector) [8]*ear.TrustClaim {
	return [8]*ear.TrustClaim{&v.InstanceIdentity, &v.Configuration, &v.Executables, &v.FileSystem, &v.Hardware, &v.RuntimeOpaque, &v.StorageOpaque, &v.SourcedData}
}

func (v *Verifier) appraiseBoot(r *Result, l *eventlog.Log, bank alg.ID) {
	tv := &r.Vector
	bad := false
	for _, e := range l.Events {
		switch eventlog.EventType(e.Type) {
		case eventlog.EvEFIPlatformFirmwareBlob, eventlog.EvEFIBootServicesApp, eventlog.EvEFIBootServicesDriver:
		case eventlog.EvPlatformConfigFlags:
			if bytes.Contains(e.Data, []byte("debug=on")) {
				r.claim(&tv.Configuration, ear.UnsupportableConfigClaim, fmt.Sprintf("configuration: PCR %d event %d: firmware debug mode is on", e.PCR, e.Seq))
			}
			continue
		default:
			continue
		}
		d := e.Digest(bank)
		m := v.Policy.RIMs.Lookup(bank, d)
		what := describeBoot(&e)
		if len(m) == 0 {
			r.claim(&tv.Executables, ear.ContraindicatedRuntimeClaim, fmt.Sprintf("executables: PCR %d event %d (%s) digest %x is in no signed RIM", e.PCR, e.Seq, what, d[:8]))
			bad = true
			continue
		}
		if sup := v.Policy.RIMs.SupersededBy(m[0].TagID); len(sup) > 0 {
			r.claim(&tv.Executables, ear.UnsafeRuntimeClaim, fmt.Sprintf("executables: PCR %d event %d (%s) is %s %s, superseded by a newer signed RIM (rollback)", e.PCR, e.Seq, what, m[0].Name, m[0].Ver))
			bad = true
		}
	}
	if sb := l.SecureBoot(); !sb.Enabled {
		r.claim(&tv.Configuration, ear.UnsafeConfigClaim, "configuration: Secure Boot is off")
	}
	if tv.Configuration == ear.NoClaim {
		r.claim(&tv.Configuration, ear.ApprovedConfigClaim, "")
	}
	if !bad {
		r.claim(&tv.Executables, ear.ApprovedBootClaim, "")
	}
}

func describeBoot(e *eventlog.Event) string {
	if eventlog.EventType(e.Type) == eventlog.EvEFIPlatformFirmwareBlob {
		return "platform firmware"
	}
	// UEFI_IMAGE_LOAD_EVENT: the device path's UTF-16 file name follows
	// the 32-byte header; show it when it decodes.
	if len(e.Data) > 40 {
		var name []rune
		for i := 36; i+1 < len(e.Data); i += 2 {
			c := rune(e.Data[i]) | rune(e.Data[i+1])<<8
			if c == 0 {
				break
			}
			if c < 32 || c > 126 {
				name = nil
				break
			}
			name = append(name, c)
		}
		if len(name) > 0 {
			return string(name)
		}
	}
	return e.TypeName()
}

func (v *Verifier) appraiseNetequip(r *Result, st *netequipState) {
	tv := &r.Vector
	if len(st.unknown) > 0 {
		r.claim(&tv.FileSystem, ear.UnrecognizedFilesClaim, "file-system: not in any signed RIM: "+st.unknownFiles())
		r.claim(&tv.Executables, ear.UnrecognizedRuntimeClaim, "")
		return
	}
	r.claim(&tv.FileSystem, ear.ApprovedFilesClaim, "")
}

// finish sets the status from the vector and signs the EAR.
func (v *Verifier) finish(r *Result, nonce []byte) (*Result, error) {
	ar := ear.NewAttestationResult("tpm0", v.Build, "openriv")
	ap := ar.Submods["tpm0"]
	*ap.TrustVector = r.Vector
	policy := v.Policy.Name
	ap.AppraisalPolicyID = &policy
	ar.UpdateStatusFromTrustVector()
	r.Status = *ap.Status
	if nonce != nil {
		n := fmt.Sprintf("%x", nonce)
		ar.Nonce = &n
	}
	if v.Key != nil {
		claims, err := ar.MarshalJSON()
		if err == nil && v.ClaimProfile == "draft-03" {
			claims, err = draft03(claims)
		}
		var tok []byte
		if err == nil {
			tok, err = signJWT(claims, v.Key)
		}
		if err != nil {
			return nil, fmt.Errorf("sign EAR: %w", err)
		}
		r.EAR = tok
	}
	return r, nil
}

func samePub(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// draft03 renames the claims to draft-ietf-rats-ear-03's names: dots and
// hyphens in "ear." names become underscores.
func draft03(claims []byte) ([]byte, error) {
	var rename func(v any) any
	rename = func(v any) any {
		switch m := v.(type) {
		case map[string]any:
			out := make(map[string]any, len(m))
			for k, x := range m {
				if strings.HasPrefix(k, "ear.") {
					k = strings.NewReplacer(".", "_", "-", "_").Replace(k)
				} else if strings.Contains(k, "-") && !strings.Contains(k, ".") {
					k = strings.ReplaceAll(k, "-", "_")
				}
				out[k] = rename(x)
			}
			return out
		}
		return v
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(claims))
	d.UseNumber() // iat stays an integer
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return json.Marshal(rename(m))
}

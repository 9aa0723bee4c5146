// Package verifier is the collector's appraisal pipeline for one device:
// connect and authenticate it by its IDevID, challenge it with a fresh
// nonce, fetch its logs (incrementally), verify identity, quote, replay
// and reference values, and turn the outcome into an AR4SI trustworthiness
// vector and a signed EAR. Bad evidence is a result; an error means the
// verifier could not do its job (the device unreachable, say).
//
// Appraise runs the steps of the RFC 9683 flow in order, each its own
// function: identity (certificates and the transport key), challenge
// (nonce, quote, clock), logs (fetched after the quote), replay (every
// value re-derived from the data it covers and matched to the quoted PCR
// digest), reference values (signed RIMs, PCR CoRIMs, support RIMs) and
// policy (configuration, rollback, unknown files), then the result.
// Nothing a device reports is used before the quote binds it.
package verifier

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/client/snmp"
	"github.com/openriv/riv/collector/evidence"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
	"github.com/openriv/riv/pkg/rim"
)

// Session is what the verifier needs from a transport: any client of
// collector/client (NETCONF today; RESTCONF and SNMP to come) that returns
// the transport-neutral evidence types. Appraisal never sees the protocol.
type Session = evidence.Session

// Policy holds the trust inputs.
type Policy struct {
	Name string // appraisal policy id, e.g. "riv-default"
	// Anchors are the manufacturer CAs for IDevID/IAK.
	Anchors *x509.CertPool
	// OwnerAnchors are the owner's CAs for LDevID/LAK (RFC 9683 §2.2:
	// an operator may enrol its own identity and attestation keys). A
	// device whose transport identity chains to them is appraised with
	// its LDevID/LAK pair; nil accepts only IDevID/IAK.
	OwnerAnchors *x509.CertPool
	// RIMs are the verified vendor reference values.
	RIMs *rim.Index
	// RIMAnchors are the vendor CAs that sign RIMs. With them, the RIMs a
	// device carries (riv-software-inventory) are fetched, verified
	// against them and added to the reference values (RFC 9683 Step 0B);
	// nil fetches none.
	RIMAnchors *x509.CertPool
	// Banks to quote, in preference order; the first the TPM allocates is
	// used, or with MultiBank every one it allocates.
	Banks     []alg.ID
	MultiBank bool
	// ConfigFiles are the measured configuration files (default
	// DefaultConfigFiles): a runtime entry for one of them is appraised
	// under the AR4SI configuration claim, against signed RIMs and
	// ConfigAllow, instead of as an executable.
	ConfigFiles []string
	// ConfigAllow is the operator's allow-list of configuration digests.
	ConfigAllow []AllowedConfig
	// RequireSecureBoot makes a boot without Secure Boot contraindicated
	// (AR4SI configuration 96, unsupportable) rather than a warning.
	RequireSecureBoot bool
	// NoUnknownFiles makes a run-time file that no signed RIM lists (or
	// an IMA measurement violation) contraindicated (AR4SI file-system
	// 96) rather than a warning.
	NoUnknownFiles bool
}

// DefaultConfigFiles is where a RIV router keeps its startup
// configuration.
var DefaultConfigFiles = []string{"/etc/riv/startup-config"}

// AllowedConfig is one approved configuration digest; an empty Path
// allows the digest for every configuration file.
type AllowedConfig struct {
	Path   string
	Alg    alg.ID
	Digest []byte
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
	// OnSNMP, when set, learns each SNMP agent's engine ID as a session
	// to it starts: the collector's trap receiver authenticates a
	// device's traps with keys localized to it.
	OnSNMP func(device string, engineID []byte, user snmp.Credentials)
	conns  map[string]*pooled

	// InventoryRecheck: see DefaultInventoryRecheck (0 means it).
	InventoryRecheck time.Duration
	// SupportRefresh is how long a device's certificates, TPMs and
	// inventory are reused between polls (0: an hour).
	SupportRefresh time.Duration

	// ClaimProfile selects the EAR claim names: "veraison" (default,
	// veraison/ear's "ear.status", ...) or "draft-03"
	// (draft-ietf-rats-ear-03's "ear_status", ...).
	ClaimProfile string

	mu    sync.Mutex
	state map[string]*deviceState
	// rims is Policy.RIMs with the in-band RIMs verified so far
	// (inband.go); rimSeen what was concluded of each fetched RIM.
	rims    *rim.Index
	rimSeen map[string]rimVerdict
	// verified caches identity verdicts by certificate pair: chain
	// building with P-384 CA signatures costs milliseconds, and a device's
	// certificates change once in years. An entry holds until the
	// earliest NotAfter of the pair.
	verified map[[64]byte]cachedIdentity
}

// New returns a verifier.
func New(p Policy, key crypto.Signer) *Verifier {
	if len(p.Banks) == 0 {
		p.Banks = []alg.ID{alg.SHA256}
	}
	if p.Name == "" {
		p.Name = "riv-default"
	}
	if p.ConfigFiles == nil {
		p.ConfigFiles = DefaultConfigFiles
	}
	if p.RIMs == nil {
		p.RIMs = rim.NewIndex()
	}
	return &Verifier{Policy: p, Key: key, Build: "riv-collector", state: map[string]*deviceState{}, verified: map[[64]byte]cachedIdentity{},
		rims: p.RIMs, rimSeen: map[string]rimVerdict{}}
}

// Result is one appraisal.
type Result struct {
	Device  string
	Serial  string
	Status  ear.TrustTier
	Vector  ear.TrustVector
	Reasons []string
	// Rebooted is set when the device rebooted (TPM Reset: resetCount
	// up) or restarted (TPM Restart: restartCount up) since the last
	// appraisal: re-attestation, with the logs fetched from the start and
	// the history kept. Restarted tells the two apart.
	Rebooted  bool
	Restarted bool
	Clock     quote.ClockInfo
	EAR       []byte // signed JWT
	// Evidence is the SHA-256 of the evidence bundle appraised (nil when
	// the poll ended before the quote).
	Evidence []byte
	// QuoteLatency is how long the device took to answer the challenge
	// (with the logs pipelined after it): the TPM's quote time, mostly.
	QuoteLatency time.Duration
	Time         time.Time
	// TPMs are the appraisals of each TPM of a device with several (RFC
	// 9684 mtpm: line cards), the identity's TPM first; the fields above
	// are then the device's aggregate: every claim the worst any TPM got,
	// and the reasons of each TPM prefixed with its name. One EAR submod
	// per TPM. Nil for a device with one TPM.
	TPMs []TPMResult
	// Inventory is the software the device lists (riv-software-inventory)
	// with, for each component, whether the verifier holds a verified
	// signed RIM of it: the RIM coverage. Nil when the device lists none.
	Inventory []Component

	set *attestationSet // what the verdict was reached on (its one TPM's)
}

// Component is one software component a device lists. Name and Version
// come from the signed RIM of its tag-id, never from the device's word;
// a component no signed RIM covers has only its tag-id.
type Component struct {
	TagID   string `json:"tag_id"`
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
	// RIMs is how many RIMs the device lists for it.
	RIMs int `json:"rims"`
	// Signed: the verifier holds a verified signed RIM with this tag-id.
	Signed bool `json:"signed"`
}

// maxInventory bounds the components a result lists (a device's list is
// its own word).
const maxInventory = 1024

// coverage is the device's inventory against the RIMs the verifier holds.
func coverage(inv []evidence.Component, idx *rim.Index) []Component {
	var out []Component
	for _, c := range inv[:min(len(inv), maxInventory)] {
		k := Component{TagID: c.TagID, RIMs: len(c.RIMs)}
		var t *rim.Tag
		if idx != nil {
			t = idx.Tag(c.TagID)
		}
		if t != nil {
			k.Name, k.Version, k.Signed = t.SoftwareName, t.SoftwareVersion, true
		}
		out = append(out, k)
	}
	return out
}

// TPMResult is the appraisal of one TPM of a device.
type TPMResult struct {
	Name    string
	Status  ear.TrustTier
	Vector  ear.TrustVector
	Reasons []string
	Clock   quote.ClockInfo

	set *attestationSet
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

// tierOf ranks a claim for claim: unexpected evidence ranks with the
// contraindicated claims and a verifier malfunction with the warnings,
// though AR4SI puts both in its "none" tier below affirming, so that
// neither is hidden by an affirming claim made earlier in the poll (the
// identity is affirmed before the banks are known).
func tierOf(c ear.TrustClaim) int {
	switch {
	case c == ear.UnexpectedEvidenceClaim:
		return 3
	case c == ear.VerifierMalfunctionClaim:
		return 2
	case c.IsContraindicated():
		return 3
	case c.IsWarning():
		return 2
	case c.IsAffirming():
		return 1
	}
	return 0
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

// poll is one appraisal in progress: what the steps hand each other.
type poll struct {
	v      *Verifier
	r      *Result
	device string
	s      Session
	st     *deviceState
	sup    *deviceSupport

	want Expected
	rims *rim.Index // the reference values of this appraisal
	// dev holds the claims about the device as a whole (its in-band RIMs,
	// its set of TPMs), apart from those about one of its TPMs.
	dev   *Result
	model string      // the device model its certificates name
	ak    *deviceCert // the attestation key the quote must be by
	tpm   string      // the TPM it is in (as the device names it)
	// The transport identity and how it was judged, for the line cards'
	// attestation keys.
	idCert *deviceCert
	roots  *x509.CertPool
	local  bool
	akType string
	akRef  string   // its certificate name
	banks  []alg.ID // quoted, in the order requested; banks[0] is appraised
	sel    []pcr.Selection
	nonce  []byte

	attest *quote.Attest
	sig    *quote.Signature
	quote  *evidence.Quote
	reqs   []evidence.LogRequest
	logs   []evidence.LogResult

	bios       *eventlog.Log            // the whole bios log, when it was fetched
	biosKept   bool                     // or: it did not change since the findings kept
	runtime    map[string]*eventlog.Log // new entries of each runtime log
	bv         pcr.Values               // bios replay
	rv         map[string]pcr.Values    // runtime replays, continuing the kept values
	quotedVals pcr.Values               // the quoted PCR values the logs replayed to
}

// Appraise runs the whole flow against one device session; transport
// binding is the caller's: pass the key the transport authenticated (SSH
// host key or TLS leaf key) as peerKey.
func (v *Verifier) Appraise(ctx context.Context, device string, s Session, peerKey crypto.PublicKey) (*Result, error) {
	return v.AppraiseAs(ctx, device, s, peerKey, Expected{})
}

// Expected is what the inventory says a device's identity names (empty:
// anything).
type Expected struct {
	Serial, Model string
}

// AppraiseAs is Appraise of a device whose identity must name want: a
// genuine device that is another one is untrustworthy.
func (v *Verifier) AppraiseAs(ctx context.Context, device string, s Session, peerKey crypto.PublicKey, want Expected) (*Result, error) {
	p := &poll{v: v, r: &Result{Device: device, Time: time.Now()}, device: device, s: s, dev: &Result{}, want: want}
	if err := p.identity(ctx, peerKey); err != nil {
		return nil, err
	}
	if p.ak == nil {
		return v.finish(p.r, nil)
	}
	p.inbandRIMs(ctx)
	p.rims = v.RIMIndex()
	p.r.Inventory = coverage(p.sup.Inventory, p.rims)
	cards := p.lineCards()
	if len(p.sup.TPMs) > 1 {
		if !p.scope(evidence.Scope{CertificateName: p.akRef, TPM: p.tpm}) {
			p.r.claim(&p.r.Vector.InstanceIdentity, ear.VerifierMalfunctionClaim, "instance-identity: the device has several TPMs and this transport cannot address one")
			p.r.merge(p.dev)
			return v.finish(p.r, nil)
		}
	}
	if err := p.appraiseTPM(ctx); err != nil {
		return nil, err
	}
	p.recheckInventory()
	p.rememberCards(cards)
	if len(p.sup.TPMs) < 2 {
		p.r.merge(p.dev)
		return v.finish(p.r, p.nonce)
	}
	// One appraisal per line card, each of its own TPM: its own quote,
	// logs, clock and kept state, against the same RIMs. A card whose
	// appraisal fails is a claim on that card; the others keep theirs.
	subs := []TPMResult{{Name: p.tpm, Vector: p.r.Vector, Reasons: p.r.Reasons, Clock: p.r.Clock, set: p.r.set}}
	for _, c := range cards {
		if err := c.appraiseCard(ctx); err != nil {
			c.r.claim(&c.r.Vector.InstanceIdentity, ear.UnrecognizedInstanceClaim,
				"instance-identity: the TPM could not be appraised: "+strings.ReplaceAll(err.Error(), "\x00", "/"))
		}
		subs = append(subs, TPMResult{Name: c.tpm, Vector: c.r.Vector, Reasons: c.r.Reasons, Clock: c.r.Clock, set: c.r.set})
		p.r.Rebooted = p.r.Rebooted || c.r.Rebooted
	}
	return v.finishTPMs(p.r, subs, p.dev, p.nonce)
}

// appraiseTPM is the appraisal of the poll's TPM: the challenge, its
// logs, their replay, reference values and run-time policy.
func (p *poll) appraiseTPM(ctx context.Context) error {
	ok, err := p.challenge(ctx)
	p.r.set = p.attestationSet(nil)
	if err != nil || !ok {
		return err
	}
	if ok, err = p.fetchLogs(ctx); err != nil {
		return err
	}
	if ok && p.replay() {
		p.r.set = p.attestationSet(p.quotedVals)
		p.referenceValues()
		p.runtimePolicy()
	}
	return nil
}

// challenge sends a fresh nonce for the policy's banks, with the log
// retrievals in the same round trip, and verifies the quote's signature,
// nonce, selection and clock; false means a claim ended the appraisal.
func (p *poll) challenge(ctx context.Context) (bool, error) {
	v, r, tv := p.v, p.r, &p.r.Vector
	for _, b := range v.Policy.Banks {
		if slices.Contains(p.sup.Banks, b) && !slices.Contains(p.banks, b) && (v.Policy.MultiBank || len(p.banks) == 0) {
			p.banks = append(p.banks, b)
		}
	}
	if len(p.banks) == 0 {
		r.claim(&tv.InstanceIdentity, ear.UnexpectedEvidenceClaim, fmt.Sprintf("the TPM allocates none of the banks %v", v.Policy.Banks))
		return false, nil
	}
	for _, b := range p.banks {
		p.sel = append(p.sel, pcr.Selection{Bank: b, PCRs: quotedPCRs})
	}
	// The logs are asked for in the same round trip, from where the last
	// poll left off; if the quote shows a reboot they are fetched again
	// from the start.
	v.mu.Lock()
	p.reqs = v.state[p.device].requests(p.sup, p.banks, p.rims)
	v.mu.Unlock()
	var quotes []evidence.Quote
	var logs []evidence.LogResult
	for attempt := 0; ; attempt++ {
		p.nonce = make([]byte, 32)
		if _, err := rand.Read(p.nonce); err != nil {
			return false, err
		}
		var err error
		t0 := time.Now()
		quotes, logs, err = p.s.Collect(ctx, p.nonce, p.sel, p.reqs)
		if err == nil {
			p.r.QuoteLatency = time.Since(t0)
			break
		}
		// A busy TPM (resource-denied: its quote queue or this client's
		// rate) is asked again after a backoff with jitter, so that the
		// collectors and operators sharing it do not retry in step.
		if !errors.Is(err, evidence.ErrBusy) || attempt == maxBusyRetries {
			return false, fmt.Errorf("%s: challenge: %w", p.device, err)
		}
		wait := busyBackoff << attempt
		wait += time.Duration(mrand.Int64N(int64(wait)))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return false, fmt.Errorf("%s: challenge: %w (the TPM was busy)", p.device, ctx.Err())
		}
	}
	p.logs = logs
	for i := range quotes {
		if quotes[i].CertificateName == p.akRef || (p.akRef == "" && i == 0) {
			p.quote = &quotes[i]
			break
		}
	}
	if p.quote == nil {
		r.claim(&tv.InstanceIdentity, ear.CryptoValidationFailedClaim, fmt.Sprintf("quote: the device returned no quote by its attestation key %q", p.akRef))
		return false, nil
	}
	var err error
	if p.attest, err = quote.ParseAttest(p.quote.Attest); err != nil {
		r.claim(&tv.InstanceIdentity, ear.CryptoValidationFailedClaim, "quote: "+err.Error())
		return false, nil
	}
	if p.sig, err = quote.ParseSignature(p.quote.Sig); err != nil {
		r.claim(&tv.InstanceIdentity, ear.CryptoValidationFailedClaim, "quote signature: "+err.Error())
		return false, nil
	}
	// Signature, nonce and selection first; the PCR digest after replay.
	if _, err := quote.VerifyParsed(p.ak.pub, p.attest, p.sig, quote.Options{Nonce: p.nonce, Selection: p.sel}); err != nil {
		r.claim(&tv.InstanceIdentity, ear.CryptoValidationFailedClaim, "quote: "+err.Error())
		return false, nil
	}
	r.Clock = p.attest.ClockInfo
	return p.clock(), nil
}

// A challenge refused with resource-denied is retried maxBusyRetries
// times, after busyBackoff, doubling, each with up to as much again of
// random jitter.
const (
	maxBusyRetries = 5
	busyBackoff    = 100 * time.Millisecond
)

// quotedPCRs are the PCRs every challenge selects: the firmware and boot
// PCRs of the TCG PC Client profile and PCR 10 of the runtime logs. Log
// events in other PCRs are not bound by the quote and not appraised.
var quotedPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}

// finish sets the status from the vector and signs the EAR.
func (v *Verifier) finish(r *Result, nonce []byte) (*Result, error) {
	ar := ear.NewAttestationResult("tpm0", v.Build, "openriv")
	r.Status = v.submod(ar.Submods["tpm0"], r.Vector)
	annotate(ar.Submods["tpm0"], r.set)
	r.Evidence = evidenceDigest(r.set)
	return v.sign(r, ar, nonce)
}

// finishTPMs is finish for a device with several TPMs: one submod per
// TPM, named by it, and the device's aggregate in r.
func (v *Verifier) finishTPMs(r *Result, subs []TPMResult, dev *Result, nonce []byte) (*Result, error) {
	ar := ear.NewAttestationResult(subs[0].Name, v.Build, "openriv")
	// The device's own findings first, then each TPM's, named.
	r.Reasons = slices.Clone(dev.Reasons)
	r.Vector = aggregate(subs)
	r.merge(&Result{Vector: dev.Vector})
	worst := ear.TrustTierAffirming
	for i := range subs {
		sm := ar.Submods[subs[i].Name]
		if sm == nil {
			sm = newSubmod()
			ar.Submods[subs[i].Name] = sm
		}
		subs[i].Status = v.submod(sm, subs[i].Vector)
		annotate(sm, subs[i].set)
		if tierRank(subs[i].Status) > tierRank(worst) {
			worst = subs[i].Status
		}
		for _, reason := range subs[i].Reasons {
			r.Reasons = append(r.Reasons, subs[i].Name+": "+reason)
		}
	}
	// The device's aggregate as a submod of its own: every claim the
	// worst a TPM got, and the worst status.
	agg := newSubmod()
	ar.Submods[deviceSubmod] = agg
	if st := v.submod(agg, r.Vector); tierRank(st) > tierRank(worst) {
		worst = st
	}
	*agg.Status = worst
	r.TPMs, r.Status = subs, worst
	sets := make([]*attestationSet, len(subs))
	for i := range subs {
		sets[i] = subs[i].set
	}
	r.Evidence = evidenceDigest(sets...)
	return v.sign(r, ar, nonce)
}

// deviceSubmod names the aggregate submod of a device with several TPMs.
const deviceSubmod = "device"

func newSubmod() *ear.Appraisal {
	st := ear.TrustTierNone
	return &ear.Appraisal{TrustVector: &ear.TrustVector{}, Status: &st}
}

// aggregate is the device's trust vector from its TPMs': for each
// component the worst warning or contraindication any TPM got; else no
// claim when some TPM made none (what one TPM never showed is not
// affirmed for the device); else the affirmation.
func aggregate(subs []TPMResult) ear.TrustVector {
	var out ear.TrustVector
	dst := vectorClaims(&out)
	for i := range dst {
		worst, none := ear.NoClaim, false
		for k := range subs {
			c := *vectorClaims(&subs[k].Vector)[i]
			if c == ear.NoClaim {
				none = true
				continue
			}
			if worst == ear.NoClaim || tierOf(c) > tierOf(worst) {
				worst = c
			}
		}
		if none && tierOf(worst) <= 1 {
			worst = ear.NoClaim
		}
		*dst[i] = worst
	}
	return out
}

// tierRank orders statuses from affirming to contraindicated, "none"
// (nothing could be affirmed) between affirming and warning.
func tierRank(t ear.TrustTier) int {
	switch t {
	case ear.TrustTierAffirming:
		return 0
	case ear.TrustTierNone:
		return 1
	case ear.TrustTierWarning:
		return 2
	}
	return 3
}

// submod sets a submod's trust vector, policy and status, and returns
// the status.
func (v *Verifier) submod(ap *ear.Appraisal, vec ear.TrustVector) ear.TrustTier {
	*ap.TrustVector = vec
	policy := v.Policy.Name
	ap.AppraisalPolicyID = &policy
	ap.UpdateStatusFromTrustVector()
	// AR4SI puts unexpected evidence (1) and a verifier malfunction (-1)
	// in the "none" tier, below affirming, so the tier of the vector
	// alone would affirm a device whose logs could not be replayed, or
	// whose appraisal ended before it judged what ran. RIV's status is
	// stricter: evidence a genuine agent never sends is contraindicated,
	// and affirming needs an affirmed identity and affirmed executables.
	st := *ap.Status
	for _, c := range vectorClaims(&vec) {
		switch *c {
		case ear.UnexpectedEvidenceClaim:
			st = ear.TrustTierContraindicated
		case ear.VerifierMalfunctionClaim:
			if st != ear.TrustTierContraindicated {
				st = ear.TrustTierNone
			}
		}
	}
	if st == ear.TrustTierAffirming && (!vec.InstanceIdentity.IsAffirming() || !vec.Executables.IsAffirming()) {
		st = ear.TrustTierNone
	}
	*ap.Status = st
	return st
}

// sign sets the EAR's nonce and signs it into r.EAR.
func (v *Verifier) sign(r *Result, ar *ear.AttestationResult, nonce []byte) (*Result, error) {
	if nonce != nil {
		n := fmt.Sprintf("%x", nonce)
		ar.Nonce = &n
	}
	if v.Key != nil {
		claims, err := earClaims(ar)
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

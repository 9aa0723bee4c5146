package verifier

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/veraison/ear"
	"golang.org/x/crypto/ssh"

	"github.com/openriv/riv/collector/client/netconf"
	"github.com/openriv/riv/collector/client/restconf"
	"github.com/openriv/riv/collector/client/snmp"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/endpoint"
	"github.com/openriv/riv/pkg/rim"
)

// Target is how to reach one device.
type Target struct {
	Name    string
	SSHAddr string
	SSHUser string
	SSHKey  crypto.Signer
	TLSAddr string
	// RESTCONF is the device's RESTCONF URL (https://HOST:PORT), reached
	// with TLS as TLSAddr; it is used when set.
	RESTCONF string
	TLS      *tls.Config // client certificate (NETCONF-TLS and RESTCONF)
	// SNMP is the agent's SNMPv3 address (HOST:PORT, UDP) with its USM
	// user, used when set. SNMP authenticates no device key: the
	// identity is the IDevID and IAK the device lists, bound to it by the
	// quote the IAK signs.
	SNMP     string
	SNMPUser snmp.Credentials
	// Serial and Model are what the device's identity must name (empty:
	// anything).
	Serial, Model string
	// Resume closes the session after each poll even when the verifier
	// keeps sessions (Reuse): the next poll reconnects, resuming TLS from
	// the session cache. For devices polled too seldom for an idle
	// session to be worth its memory, or to outlive the device's idle
	// timeout.
	Resume bool
	// StageTimeout bounds each stage of reaching the device (TCP, SSH or
	// TLS handshake, NETCONF hello); default netconf.DefaultStageTimeout.
	StageTimeout time.Duration
}

// AppraiseTarget dials the target (RESTCONF when RESTCONF is set, else
// NETCONF over TLS when TLSAddr is, else NETCONF over SSH) and appraises
// it, binding the transport to the IDevID: the SSH host key, or the TLS
// server certificate, must be the IDevID's key.
func (v *Verifier) AppraiseTarget(ctx context.Context, t Target) (*Result, error) {
	name := t.Name
	if name == "" {
		name = t.SSHAddr + t.TLSAddr + t.RESTCONF + t.SNMP
	}
	reuse := v.Reuse && !t.Resume
	if v.Reuse && t.Resume {
		// Kept before its interval outgrew poll.keep_sessions: closed.
		v.mu.Lock()
		pc := v.conns[name]
		delete(v.conns, name)
		v.mu.Unlock()
		if pc != nil {
			pc.c.Close()
		}
	}
	if reuse {
		v.mu.Lock()
		pc := v.conns[name]
		delete(v.conns, name)
		v.mu.Unlock()
		if pc != nil {
			r, err := v.AppraiseAs(ctx, name, pc.c, pc.peer, Expected{t.Serial, t.Model})
			if err == nil {
				v.keep(name, pc)
				return r, nil
			}
			// A dead or broken session: drop it and dial afresh.
			pc.c.Close()
		}
	}
	var c closer
	var peer crypto.PublicKey
	var err error
	if t.SNMP != "" {
		sc, err := (snmp.Dialer{Timeout: t.StageTimeout / 3}).Dial(ctx, t.SNMP, t.SNMPUser) // three tries per stage
		if err != nil {
			return nil, err
		}
		if v.OnSNMP != nil {
			v.OnSNMP(name, sc.EngineID(), t.SNMPUser)
		}
		c = sc
	} else if t.TLSAddr != "" || t.RESTCONF != "" {
		var leaf *x509.Certificate
		cfg := v.deviceTLS(t.TLS, &leaf)
		if t.RESTCONF != "" {
			var rc *restconf.Client
			rc, err = (restconf.Dialer{StageTimeout: t.StageTimeout}).Dial(ctx, t.RESTCONF, cfg)
			c = rc
		} else {
			var nc *netconf.Client
			nc, err = (netconf.Dialer{StageTimeout: t.StageTimeout}).DialTLS(ctx, t.TLSAddr, cfg)
			c = nc
		}
		if err != nil {
			var ie *identityError
			if errors.As(err, &ie) {
				// The device was reached and presented an identity that
				// does not verify: a verdict, not a failure to reach it.
				r := &Result{Device: name, Time: time.Now()}
				r.claim(&r.Vector.InstanceIdentity, ear.UntrustworthyInstanceClaim, "instance-identity: "+ie.Error())
				return v.finish(r, nil)
			}
			return nil, err
		}
		peer = leaf.PublicKey
	} else {
		nc, err := (netconf.Dialer{StageTimeout: t.StageTimeout}).DialSSH(ctx, t.SSHAddr, t.SSHUser, t.SSHKey)
		if err != nil {
			return nil, err
		}
		c, peer = nc, nc.HostKey
	}
	r, err := v.AppraiseAs(ctx, name, c, peer, Expected{t.Serial, t.Model})
	if reuse && err == nil {
		v.keep(name, &pooled{c: c, peer: peer})
	} else {
		c.Close()
	}
	return r, err
}

// closer is a transport's session: NETCONF, RESTCONF or SNMP.
type closer interface {
	Session
	Close() error
}

// deviceTLS is the TLS configuration for reaching a device: base's client
// certificate and session cache, the server certificate verified against
// the manufacturer anchors (or the owner's) by IDevID profile, its leaf
// stored in *leaf.
func (v *Verifier) deviceTLS(base *tls.Config, leaf **x509.Certificate) *tls.Config {
	cfg := base.Clone()
	if cfg == nil {
		// No client certificate: the device will refuse the session, and
		// says so.
		cfg = &tls.Config{}
	}
	cfg.RootCAs = v.Policy.Anchors
	cfg.ServerName = ""
	cfg.InsecureSkipVerify = true // verified below against the manufacturer anchors, by IDevID profile
	// VerifyConnection also runs for resumed sessions (where
	// VerifyPeerCertificate does not), so the IDevID check always holds.
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		certs := cs.PeerCertificates
		if len(certs) == 0 {
			return errors.New("no server certificate")
		}
		err := v.verifiedChain(certs, v.Policy.Anchors, x509.ExtKeyUsageServerAuth)
		if err != nil && v.Policy.OwnerAnchors != nil {
			// An owner-enrolled LDevID may identify the device instead.
			if v.verifiedChain(certs, v.Policy.OwnerAnchors, x509.ExtKeyUsageServerAuth) == nil {
				err = nil
			}
		}
		if err != nil {
			return &identityError{err}
		}
		// A session that reconnects (RESTCONF opens connections as it
		// needs them) must reach the same device.
		if *leaf != nil && !bytes.Equal((*leaf).Raw, certs[0].Raw) {
			return &identityError{errors.New("the device presented another certificate than at the start of the session")}
		}
		*leaf = certs[0]
		return nil
	}
	return cfg
}

// identityError is a TLS server certificate that is no IDevID (or
// LDevID) of a trusted manufacturer (or owner).
type identityError struct{ err error }

func (e *identityError) Error() string {
	return "the TLS server certificate is not an IDevID from a trusted manufacturer: " + e.err.Error()
}

// pooled is an open session kept between polls (Verifier.Reuse).
type pooled struct {
	c    closer
	peer crypto.PublicKey
}

func (v *Verifier) keep(name string, pc *pooled) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.conns == nil {
		v.conns = map[string]*pooled{}
	}
	if old := v.conns[name]; old != nil {
		old.c.Close()
	}
	v.conns[name] = pc
}

// Close closes the sessions kept for reuse.
func (v *Verifier) Close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for n, pc := range v.conns {
		pc.c.Close()
		delete(v.conns, n)
	}
}

// maxSupportRIM bounds a file read as a candidate support RIM.
const maxSupportRIM = 16 << 20

// LoadRIMs verifies every signed RIM in dir against the vendor anchors and
// indexes them: CoSWIDs (*.cose) by file hash, signed CoRIMs (*.corim) by
// their PCR reference values, and for each base RIM its support RIM, the
// file in dir whose hash the base RIM lists, as the reference event log.
// A RIM that does not verify, and a base RIM whose support RIM is not
// there, is an error: neither may silently shrink the reference values.
// It returns the index and the number of signed RIMs loaded.
func LoadRIMs(dir string, anchors *x509.CertPool) (*rim.Index, int, error) {
	return LoadRIMDirs([]string{dir}, anchors)
}

// LoadRIMDirs is LoadRIMs over several directories, into one index: a
// base RIM's support RIM may be in any of them.
func LoadRIMDirs(dirs []string, anchors *x509.CertPool) (*rim.Index, int, error) {
	idx := rim.NewIndex()
	n := 0
	var others []rimFile
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, 0, err
		}
		for _, ent := range ents {
			if !ent.Type().IsRegular() {
				continue
			}
			f := filepath.Join(dir, ent.Name())
			signed := filepath.Ext(f) == ".cose" || filepath.Ext(f) == ".corim"
			if !signed {
				if st, err := os.Stat(f); err != nil || st.Size() > maxSupportRIM {
					continue
				}
			}
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, 0, err
			}
			if !signed {
				others = append(others, rimFile{name: ent.Name(), raw: b})
				continue
			}
			if _, err := indexSigned(idx, rimFile{name: ent.Name(), raw: b}, anchors); err != nil {
				return nil, 0, fmt.Errorf("RIM %s: %w", f, err)
			}
			n++
		}
	}
	if err := attachSupports(idx, idx.Bases(), others); err != nil {
		return nil, 0, fmt.Errorf("%w (in %s)", err, strings.Join(dirs, ", "))
	}
	return idx, n, nil
}

// rimFile is a RIM's bytes and the name it came under.
type rimFile struct {
	name string
	raw  []byte
}

// indexSigned verifies a signed RIM against the vendor anchors and adds
// it to idx: a CoSWID by its file hashes, a CoRIM by its PCR reference
// values.
func indexSigned(idx *rim.Index, f rimFile, anchors *x509.CertPool) (*rim.Result, error) {
	r, err := rim.Verify(f.raw, rim.VerifyOptions{Roots: anchors})
	if err != nil {
		return nil, err
	}
	return r, indexVerified(idx, f, r)
}

// indexVerified adds a verified RIM to idx.
func indexVerified(idx *rim.Index, f rimFile, r *rim.Result) error {
	switch {
	case r.Tag != nil:
		if old := idx.Tag(r.Tag.TagID.String()); old != nil {
			// The same tag again adds nothing: a copy of the RIM, or one
			// re-signed with the same product, files and links. A tag-id
			// that names another product, other files or other links is
			// a supply-chain error, and what it lists vouches for nothing.
			if !sameReferences(old, r.Tag) {
				return fmt.Errorf("its tag-id %s is the id of another signed tag (%s %s) with other reference values", r.Tag.TagID.String(), old.SoftwareName, old.SoftwareVersion)
			}
			return nil
		}
		if err := idx.Add(r.Tag); err != nil {
			return err
		}
	case r.PCRRef != nil:
		ref := *r.PCRRef
		ref.Source = f.name
		idx.AddPCRs(ref)
	default:
		return fmt.Errorf("a signed %s payload is neither a CoSWID nor a CoRIM", r.Signed.ContentType)
	}
	return nil
}

// sameReferences reports whether two tags give the same reference
// values: product, payload files with their hashes (in any order),
// supersedes and patches links, and the TCG RIM binding (platform model,
// payload type).
func sameReferences(a, b *rim.Tag) bool {
	files := func(t *rim.Tag) []string {
		var out []string
		for _, f := range t.Files() {
			out = append(out, fmt.Sprintf("%s\x00%v\x00%x\x00%d", f.Path, f.Alg, f.Hash, f.Size))
		}
		slices.Sort(out)
		return out
	}
	if a.Product() != b.Product() || !slices.Equal(files(a), files(b)) {
		return false
	}
	for _, rel := range []string{"supersedes", "patches"} {
		la, _ := a.LinkedTags(rel)
		lb, _ := b.LinkedTags(rel)
		if !slices.Equal(la, lb) {
			return false
		}
	}
	if (a.RIM == nil) != (b.RIM == nil) {
		return false
	}
	if a.RIM == nil {
		return true
	}
	pt := func(r *rim.ReferenceMeasurement) int {
		if r.PayloadType == nil {
			return -1
		}
		return int(*r.PayloadType)
	}
	return a.RIM.PlatformModelName == b.RIM.PlatformModelName && pt(a.RIM) == pt(b.RIM)
}

// attachSupports gives each of bases (verified base RIMs in idx) its
// support RIMs: the candidates whose hashes it lists. A support RIM it
// lists that no candidate is is an error: it may not silently shrink the
// reference values.
func attachSupports(idx *rim.Index, bases []*rim.Tag, cands []rimFile) error {
	for _, base := range bases {
		done := map[string]bool{}
		for _, fh := range base.Files() {
			if !fh.Alg.IsHash() || done[fh.Path] {
				continue
			}
			done[fh.Path] = true
			found := false
			for _, c := range cands {
				if (fh.Size > 0 && int64(len(c.raw)) != fh.Size) || string(fh.Alg.Sum(c.raw)) != string(fh.Hash) {
					continue
				}
				if err := idx.AddSupport(base, fh.Path, c.name, c.raw); err != nil {
					return fmt.Errorf("support RIM %s: %w", c.name, err)
				}
				found = true
				break
			}
			if !found {
				return fmt.Errorf("base RIM %s (%s %s) lists the support RIM %s, which is in no file given", base.TagID.String(), base.SoftwareName, base.SoftwareVersion, fh.Path)
			}
		}
	}
	return nil
}

// PolicyOf is the policy an endpoints.json implies: its manufacturer
// (and owner) anchors, its RIM signer's anchor for the RIMs the device
// carries, and the RIMs of its directory when it names one; SHA-256 or
// SHA-384 quotes.
func PolicyOf(ep *Endpoints) (*Policy, error) {
	pool, err := LoadPool(ep.TrustAnchors)
	if err != nil {
		return nil, fmt.Errorf("manufacturer anchors: %w", err)
	}
	rimPool, err := LoadPool(ep.RIMSigner)
	if err != nil {
		return nil, fmt.Errorf("RIM anchors: %w", err)
	}
	// Local RIMs are optional: the RIMs a device carries are fetched from
	// it and verified against the same anchors.
	idx := rim.NewIndex()
	if ep.RIMs != "" {
		if idx, _, err = LoadRIMs(ep.RIMs, rimPool); err != nil {
			return nil, fmt.Errorf("RIMs: %w", err)
		}
	}
	pol := &Policy{Anchors: pool, RIMs: idx, RIMAnchors: rimPool, Banks: []alg.ID{alg.SHA256, alg.SHA384}}
	if ep.OwnerAnchors != "" {
		if pol.OwnerAnchors, err = LoadPool(ep.OwnerAnchors); err != nil {
			return nil, fmt.Errorf("owner anchors: %w", err)
		}
	}
	return pol, nil
}

// Endpoints is the endpoints.json contract.
type Endpoints = endpoint.Endpoints

// ReadEndpoints reads an endpoints.json.
func ReadEndpoints(path string) (*Endpoints, error) { return endpoint.Read(path) }

// LoadPool reads PEM certificates into a pool.
func LoadPool(path string) (*x509.CertPool, error) { return LoadPools([]string{path}) }

// LoadPools reads the PEM certificates of several files into one pool;
// each file must hold at least one.
func LoadPools(files []string) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if !p.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s: no PEM certificates", f)
		}
	}
	return p, nil
}

// LoadSSHKey reads an OpenSSH or PEM private key as a crypto.Signer.
func LoadSSHKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseSSHKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParseSSHKey parses an OpenSSH or PEM private key as a crypto.Signer.
func ParseSSHKey(b []byte) (crypto.Signer, error) {
	k, err := ssh.ParseRawPrivateKey(b)
	if err != nil {
		return nil, err
	}
	switch s := k.(type) {
	case crypto.Signer:
		return s, nil
	}
	return nil, errors.New("not a signing key")
}

// TargetOf builds the target for transport "ssh", "tls", "restconf" or
// "snmp".
func TargetOf(e *Endpoints, transport string) (Target, error) {
	t := Target{Name: e.Serial}
	switch transport {
	case "snmp":
		if e.SNMP == "" || e.SNMPUser == "" {
			return t, errors.New("the endpoints name no SNMP address and user")
		}
		t.SNMP, t.SNMPUser = e.SNMP, snmp.Credentials{User: e.SNMPUser, AuthProtocol: e.SNMPAuthProtocol, AuthKey: e.SNMPAuthKey, PrivProtocol: e.SNMPPrivProtocol, PrivKey: e.SNMPPrivKey}
	case "restconf":
		if e.RESTCONF == "" {
			return t, errors.New("the endpoints name no RESTCONF URL")
		}
		cert, err := tls.LoadX509KeyPair(e.TLSClientCert, e.TLSClientKey)
		if err != nil {
			return t, err
		}
		t.RESTCONF, t.TLS = e.RESTCONF, &tls.Config{Certificates: []tls.Certificate{cert}, ClientSessionCache: tls.NewLRUClientSessionCache(16)}
	case "tls":
		cert, err := tls.LoadX509KeyPair(e.TLSClientCert, e.TLSClientKey)
		if err != nil {
			return t, err
		}
		// A session cache makes each poll's reconnect a TLS 1.3 resumption.
		// Key exchange is Go's default, hybrid X25519MLKEM768: setting
		// CurvePreferences to X25519 saves ~130 µs of collector CPU per
		// handshake, but whether the evidence (it names every file the
		// device runs) needs post-quantum confidentiality is the
		// operator's call, not a default to trade for speed.
		t.TLSAddr, t.TLS = e.NetconfTLS, &tls.Config{Certificates: []tls.Certificate{cert}, ClientSessionCache: tls.NewLRUClientSessionCache(16)}
	default:
		k, err := LoadSSHKey(e.SSHPrivateKey)
		if err != nil {
			return t, err
		}
		t.SSHAddr, t.SSHUser, t.SSHKey = e.NetconfSSH, e.SSHUser, k
	}
	return t, nil
}

package netconf_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/agent/logsrc"
	"github.com/openriv/riv/agent/netconf"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
	"github.com/openriv/riv/pkg/tpm"
	"github.com/openriv/riv/pkg/tpm/tpmtest"
)

// The tests in this file check the RFC 9684 multi-TPM (feature mtpm) part
// of the agent end to end: a composite device whose control card's TPM is
// the in-process simulator and whose line cards each have their own swtpm,
// IAK, IAK certificate, measured boot and logs. Every reply is validated
// with yanglint against the official modules, as the server implements
// them (with mtpm when it has line cards).

const (
	mtpmNS  = `xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"`
	mtpmTAA = `xmlns:taa="urn:ietf:params:xml:ns:yang:ietf-tcg-algs"`
	// The error-message of RFC 9684's must on certificate-name, verbatim.
	msgNotAIK = "Not an available TPM2.0 AIK certificate."
)

// mtpmUnit is one TPM of the test device and what the test knows about
// it independently of the agent.
type mtpmUnit struct {
	name     string // TPM name (tpm0, lc1, ...)
	node     attester.Node
	tp       *tpm.TPM
	banks    []alg.ID
	iak      *tpm.Key
	iakCert  *x509.Certificate
	certName string // the IAK certificate's certificate-name
	boot     *router.Boot
	logs     *logsrc.Memory
}

// mtpmRig is a NETCONF server over an attester with the simulator's TPM
// and line cards on swtpm.
type mtpmRig struct {
	srv   *netconf.Server
	units []*mtpmUnit // tpm0, then lc1, lc2, ...
	user  string
	dir   string
	oper  string // the operational datastore (<get>), for the replies' leafrefs and musts
	n     int
}

// newMTPMRig builds a device with the given number of line cards; the
// TPMs named in hardware are hardware-based (the others are not).
func newMTPMRig(t *testing.T, cards int, hardware ...string) *mtpmRig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	now := time.Now()
	ca, err := identity.NewCA("RIV Test Manufacturer", now, 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := tpm.Open(ctx, "sim")
	if err != nil {
		t.Fatalf("open simulator: %v", err)
	}
	t.Cleanup(func() { tp.Close() })
	main := bootUnit(t, ctx, tp, "tpm0", attester.Node{ID: "control", Name: "control card", Location: "slot 0"},
		"2.0", "iak", tpm.ECCP256, ca, now)
	// An IDevID the device lists beside its IAK: a certificate of a
	// tpm20 TPM, so it passes the certificate-name must, but no
	// attestation key.
	idk, err := persistentTestKey(ctx, tp, tpm.KeySpec{Alg: tpm.ECCP256, Label: "IDevID"}, 0x81020001)
	if err != nil {
		t.Fatal(err)
	}
	idevid, err := ca.Issue(identity.IDevID, idk.Public.Key, identity.Device{Serial: "RTR-MTPM", Model: "rtr-1000", Organization: "RIV Test Networks"}, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := &mtpmRig{units: []*mtpmUnit{main}, user: "riv", dir: t.TempDir()}
	var lineCards []attester.Card
	for i := 1; i <= cards; i++ {
		// The second card allocates fewer banks than the others, as a
		// line card with another TPM would.
		var banks []string
		if i == 2 {
			banks = []string{"sha256"}
		}
		sw := tpmtest.StartSwtpm(t, banks...)
		ctp, err := tpm.Open(ctx, sw.Spec())
		if err != nil {
			t.Fatalf("open swtpm: %v", err)
		}
		t.Cleanup(func() { ctp.Close() }) // before swtpm stops (cleanups run last first)
		name := fmt.Sprintf("lc%d", i)
		// The second card's IAK is RSA: the device then signs with two
		// schemes, both in attester-supported-algos.
		ka := tpm.ECCP256
		if i == 2 {
			ka = tpm.RSA2048
		}
		// Each card boots its own image, so no two TPMs hold the same PCRs
		// and a quote or log can be told apart by its TPM.
		u := bootUnit(t, ctx, ctp, name, attester.Node{ID: name, Name: "line card " + name[2:], Location: "slot " + name[2:]},
			"lc-"+name+"-1.0", name+"-iak", ka, ca, now)
		r.units = append(r.units, u)
		lineCards = append(lineCards, attester.Card{
			Node: u.node, TPM: ctp, TPMName: name, Manufacturer: "swtpm (libtpms)", HardwareBased: slices.Contains(hardware, name),
			Certificates: []attester.Certificate{{Name: u.certName, Type: attester.CertIAK, Cert: u.iakCert, Key: u.iak, KeystoreRef: u.certName}},
			Logs:         u.logs, LogTypes: []attester.LogType{attester.LogBIOS, attester.LogNetequip}, BootTime: now,
		})
	}
	cfg := attester.Config{
		TPM: tp, TPMName: "tpm0", Manufacturer: "RIV simulated TPM", HardwareBased: slices.Contains(hardware, "tpm0"), Logs: main.logs, BootTime: now,
		LogTypes: []attester.LogType{attester.LogBIOS, attester.LogNetequip},
		Certificates: []attester.Certificate{
			{Name: main.certName, Type: attester.CertIAK, Cert: main.iakCert, Key: main.iak, KeystoreRef: main.certName},
			{Name: "idevid", Cert: idevid, KeystoreRef: "idevid"},
		},
		LineCards: lineCards,
	}
	if cards > 0 {
		cfg.Node = main.node
	}
	a, err := attester.New(ctx, cfg)
	if err != nil {
		t.Fatalf("attester.New: %v", err)
	}
	r.srv, err = netconf.New(netconf.Config{Attester: a, NACM: netconf.NACM{
		Groups: map[string][]string{"verifiers": {r.user}},
		Rules:  []netconf.Rule{{Group: "verifiers", Operation: "*", Action: "permit"}},
	}})
	if err != nil {
		t.Fatalf("netconf.New: %v", err)
	}
	_, get := r.exchange(`<get/>`)
	if strings.Contains(get, "<rpc-error>") {
		t.Fatalf("get: %s", get)
	}
	r.oper = filepath.Join(r.dir, "oper.xml")
	if err := os.WriteFile(r.oper, dataOf(t, []byte(get)), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// bootUnit runs a measured boot of an image into tp, serves its logs as
// the simulated device does (parsed from their binary form), and
// provisions a restricted IAK with a certificate from ca.
func bootUnit(t *testing.T, ctx context.Context, tp *tpm.TPM, name string, node attester.Node, version, certName string, ka tpm.KeyAlg, ca *identity.CA, now time.Time) *mtpmUnit {
	t.Helper()
	u := &mtpmUnit{name: name, node: node, tp: tp, certName: certName, logs: logsrc.NewMemory()}
	var err error
	if u.boot, err = router.BootImage(ctx, tp, router.DefaultImage(version)); err != nil {
		t.Fatalf("%s: boot: %v", name, err)
	}
	for typ, raw := range map[attester.LogType][]byte{attester.LogBIOS: u.boot.UEFILog, attester.LogNetequip: u.boot.NetequipLog} {
		l, err := eventlog.Parse(raw, eventlog.FormatAuto)
		if err != nil {
			t.Fatalf("%s: parse %s log: %v", name, typ, err)
		}
		u.logs.Set(typ, l, now)
	}
	if u.banks, err = tp.Banks(ctx); err != nil {
		t.Fatal(err)
	}
	if u.iak, err = persistentTestKey(ctx, tp, tpm.KeySpec{Alg: ka, Restricted: true, Label: "IAK"}, 0x81020000); err != nil {
		t.Fatalf("%s: IAK: %v", name, err)
	}
	dev := identity.Device{Serial: "RTR-MTPM-" + name, Model: "rtr-1000", Organization: "RIV Test Networks"}
	if u.iakCert, err = ca.Issue(identity.IAK, u.iak.Public.Key, dev, now, 0); err != nil {
		t.Fatal(err)
	}
	return u
}

// persistentTestKey is the key at handle, or a new one made persistent
// there (as provisioning leaves keys; the simulator may keep its NV
// between the tests of one process).
func persistentTestKey(ctx context.Context, tp *tpm.TPM, spec tpm.KeySpec, h uint32) (*tpm.Key, error) {
	if k, err := tp.ReadPublic(ctx, h, spec); err == nil && k.Public.Type == keyType(spec.Alg) {
		return k, nil
	}
	k, err := tp.CreateKey(ctx, spec)
	if err != nil {
		return nil, err
	}
	return tp.Persist(ctx, k, h)
}

func keyType(a tpm.KeyAlg) alg.ID {
	if a == tpm.RSA2048 {
		return alg.RSA
	}
	return alg.ECC
}

func (r *mtpmRig) unit(name string) *mtpmUnit {
	for _, u := range r.units {
		if u.name == name {
			return u
		}
	}
	return nil
}

func (r *mtpmRig) exchange(op string) (rpc, reply string) {
	r.n++
	rpc = fmt.Sprintf(`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="%d">%s</rpc>`, r.n, op)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return rpc, string(r.srv.Exchange(ctx, r.user, []byte(rpc)))
}

// call sends op and has yanglint validate the reply as the output of op,
// or, for a request yanglint would itself refuse (one the server answers
// with an rpc-error), of pair: a valid request of the same operation.
func (r *mtpmRig) call(t *testing.T, op, pair string) (string, mtpmReply) {
	t.Helper()
	rpc, reply := r.exchange(op)
	if pair != "" {
		rpc = fmt.Sprintf(`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="%d">%s</rpc>`, r.n, pair)
	}
	rf, pf := filepath.Join(r.dir, fmt.Sprintf("rpc%d.xml", r.n)), filepath.Join(r.dir, fmt.Sprintf("reply%d.xml", r.n))
	os.WriteFile(rf, []byte(rpc), 0o600)
	os.WriteFile(pf, []byte(reply), 0o600)
	r.yanglint(t, "-t", "nc-reply", "-R", rf, "-O", r.oper, pf)
	var rep mtpmReply
	if err := xml.Unmarshal([]byte(reply), &rep); err != nil {
		t.Fatalf("reply %s: %v", reply, err)
	}
	return reply, rep
}

func (r *mtpmRig) yanglint(t *testing.T, args ...string) {
	t.Helper()
	if out, err := yanglintSchema(t, r.srv.Schema(), args...); err != nil {
		t.Errorf("yanglint %v: %v\n%s", args, err, out)
	}
}

// mtpmReply is an rpc-reply of the RFC 9684 RPCs.
type mtpmReply struct {
	OK        *struct{}     `xml:"ok"`
	Errors    []mtpmError   `xml:"rpc-error"`
	Responses []mtpmQuote   `xml:"tpm20-attestation-response"`
	Nodes     []mtpmLogNode `xml:"system-event-logs>node-data"`
}

type mtpmError struct {
	Type       string `xml:"error-type"`
	Tag        string `xml:"error-tag"`
	AppTag     string `xml:"error-app-tag"`
	Path       string `xml:"error-path"`
	Message    string `xml:"error-message"`
	BadElement string `xml:"error-info>bad-element"`
}

type mtpmQuote struct {
	Cert     string `xml:"certificate-name"`
	Quote    string `xml:"quote-data"`
	Sig      string `xml:"quote-signature"`
	Unsigned []struct {
		Alg  string `xml:"tpm20-hash-algo"`
		Vals []struct {
			I int    `xml:"pcr-index"`
			V string `xml:"pcr-value"`
		} `xml:"pcr-values"`
	} `xml:"unsigned-pcr-values"`
}

type mtpmLogNode struct {
	Name string          `xml:"name"`
	BIOS []mtpmBIOSEntry `xml:"log-result>bios-event-logs>bios-event-entry"`
	Boot []mtpmBootEntry `xml:"log-result>boot-event-logs>boot-event-entry"`
}

type mtpmBIOSEntry struct {
	Seq     int    `xml:"event-number"`
	Type    uint32 `xml:"event-type"`
	PCR     int    `xml:"pcr-index"`
	Digests []struct {
		Alg    string   `xml:"hash-algo"`
		Values []string `xml:"digest"`
	} `xml:"digest-list"`
	Data string `xml:"event-data"`
}

type mtpmBootEntry struct {
	Seq          int    `xml:"event-number"`
	Template     string `xml:"ima-template"`
	FileName     string `xml:"filename-hint"`
	FileHash     string `xml:"filedata-hash"`
	FileHashAlg  string `xml:"filedata-hash-algorithm"`
	TemplateAlg  string `xml:"template-hash-algorithm"`
	TemplateHash string `xml:"template-hash"`
	PCR          int    `xml:"pcr-index"`
}

func (r mtpmReply) names() []string {
	var out []string
	for _, q := range r.Responses {
		out = append(out, q.Cert)
	}
	for _, n := range r.Nodes {
		out = append(out, n.Name)
	}
	return out
}

// taaHash maps an ietf-tcg-algs hash identity to a bank.
func taaHash(t *testing.T, v string) alg.ID {
	t.Helper()
	_, name, _ := strings.Cut(strings.TrimSpace(v), ":")
	switch name {
	case "TPM_ALG_SHA1":
		return alg.SHA1
	case "TPM_ALG_SHA256":
		return alg.SHA256
	case "TPM_ALG_SHA384":
		return alg.SHA384
	case "TPM_ALG_SHA512":
		return alg.SHA512
	}
	t.Fatalf("hash identity %q", v)
	return 0
}

func unb64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("base64 %q: %v", s, err)
	}
	return b
}

// readPCRs reads sel from u's TPM directly, not through the agent.
func (u *mtpmUnit) readPCRs(t *testing.T, sel []pcr.Selection) pcr.Values {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := u.tp.ReadPCRs(ctx, sel)
	if err != nil {
		t.Fatalf("%s: read PCRs: %v", u.name, err)
	}
	return v
}

func pcrRange(banks []alg.ID, idx ...int) []pcr.Selection {
	var sel []pcr.Selection
	for _, b := range banks {
		sel = append(sel, pcr.Selection{Bank: b, PCRs: idx})
	}
	return sel
}

// TestMultiTPMData: the operational data of a device with two line cards
// lists three compute nodes, names each TPM's compute node, lists each
// TPM's own banks, keeps each card's IAK certificate under that card's
// TPM (and its key in the keystore), announces feature mtpm in the YANG
// library, and validates with yanglint as a complete datastore with mtpm.
func TestMultiTPMData(t *testing.T) {
	r := newMTPMRig(t, 2)
	r.yanglint(t, "-t", "data", r.oper)

	var d struct {
		Nodes []struct {
			ID       string `xml:"node-id"`
			Name     string `xml:"node-name"`
			Location string `xml:"node-location"`
		} `xml:"rats-support-structures>compute-nodes>compute-node"`
		TPMs []struct {
			Name  string   `xml:"name"`
			Node  string   `xml:"compute-node"`
			Banks []string `xml:"tpm20-pcr-bank>tpm20-hash-algo"`
			Certs []struct {
				Name        string `xml:"name"`
				KeystoreRef string `xml:"keystore-ref"`
				Type        string `xml:"type"`
			} `xml:"certificates>certificate"`
		} `xml:"rats-support-structures>tpms>tpm"`
		Keys []struct {
			Name      string   `xml:"name"`
			PublicKey string   `xml:"public-key"`
			Certs     []string `xml:"certificates>certificate>name"`
		} `xml:"keystore>asymmetric-keys>asymmetric-key"`
		Library []libModule `xml:"yang-library>module-set>module"`
		Legacy  []libModule `xml:"modules-state>module"`
	}
	raw, _ := os.ReadFile(r.oper)
	if err := xml.Unmarshal([]byte("<data>"+string(raw)+"</data>"), &d); err != nil {
		t.Fatal(err)
	}

	type node struct{ ID, Name, Location string }
	var gotNodes, wantNodes []node
	for _, n := range d.Nodes {
		gotNodes = append(gotNodes, node{n.ID, n.Name, n.Location})
	}
	for _, u := range r.units {
		wantNodes = append(wantNodes, node{u.node.ID, u.node.Name, u.node.Location})
	}
	if diff := cmp.Diff(wantNodes, gotNodes); diff != "" {
		t.Errorf("compute-nodes (-want +got):\n%s", diff)
	}

	type tpmView struct {
		Name, Node string
		Banks      []string
		Certs      []string // name/keystore-ref/type
	}
	var gotTPMs, wantTPMs []tpmView
	for _, tp := range d.TPMs {
		v := tpmView{Name: tp.Name, Node: tp.Node, Banks: tp.Banks}
		for _, c := range tp.Certs {
			v.Certs = append(v.Certs, c.Name+"/"+c.KeystoreRef+"/"+c.Type)
		}
		gotTPMs = append(gotTPMs, v)
	}
	for _, u := range r.units {
		v := tpmView{Name: u.name, Node: u.node.ID, Certs: []string{u.certName + "/" + u.certName + "/initial-attestation-certificate"}}
		for _, b := range u.banks {
			v.Banks = append(v.Banks, "taa:TPM_ALG_"+strings.ToUpper(b.String()))
		}
		if u.name == "tpm0" {
			v.Certs = append(v.Certs, "idevid/idevid/")
		}
		wantTPMs = append(wantTPMs, v)
	}
	if diff := cmp.Diff(wantTPMs, gotTPMs); diff != "" {
		t.Errorf("tpms (-want +got):\n%s", diff)
	}

	// The keystore holds each card's IAK public key under the name its
	// certificate's keystore-ref gives: what a verifier checks quotes with.
	keys := map[string]string{}
	for _, k := range d.Keys {
		keys[k.Name] = k.PublicKey
		if len(k.Certs) != 1 || k.Certs[0] != k.Name {
			t.Errorf("asymmetric-key %s: certificates %v, want [%s]", k.Name, k.Certs, k.Name)
		}
	}
	for _, u := range r.units {
		spki, err := x509.MarshalPKIXPublicKey(u.iak.Public.Key)
		if err != nil {
			t.Fatal(err)
		}
		if got := keys[u.certName]; got != b64(spki) {
			t.Errorf("keystore %s public-key = %.40q, want %s's IAK %.40q", u.certName, got, u.name, b64(spki))
		}
	}

	for what, mods := range map[string][]libModule{"yang-library": d.Library, "modules-state": d.Legacy} {
		var feats []string
		for _, m := range mods {
			if m.Name == "ietf-tpm-remote-attestation" {
				feats = m.Features
			}
		}
		if !slices.Contains(feats, "mtpm") {
			t.Errorf("%s: ietf-tpm-remote-attestation features %v lack mtpm", what, feats)
		}
	}
	if m := r.srv.Schema().Module("ietf-tpm-remote-attestation"); m == nil || !slices.Contains(m.Features, "mtpm") {
		t.Errorf("the server's schema does not implement mtpm")
	}
}

// TestMultiTPMSupportedAlgos: attester-supported-algos is one list for
// the device. It names the signing schemes of every TPM's attestation
// keys, and the banks a challenge may ask for: the challenge's must holds
// for any bank listed, and a challenge without certificate-name is quoted
// by every TPM, so a bank is listed only if every TPM allocates it (the
// attester refuses the others, with the must's own error-message).
func TestMultiTPMSupportedAlgos(t *testing.T) {
	r := newMTPMRig(t, 2)
	var d struct {
		Signing []string `xml:"rats-support-structures>attester-supported-algos>tpm20-asymmetric-signing"`
		Hashes  []string `xml:"rats-support-structures>attester-supported-algos>tpm20-hash"`
	}
	raw, _ := os.ReadFile(r.oper)
	if err := xml.Unmarshal([]byte("<data>"+string(raw)+"</data>"), &d); err != nil {
		t.Fatal(err)
	}
	// ECDSA (tpm0, lc1) and RSASSA (lc2's RSA IAK).
	if diff := cmp.Diff([]string{"taa:TPM_ALG_ECDSA", "taa:TPM_ALG_RSASSA"}, d.Signing); diff != "" {
		t.Errorf("tpm20-asymmetric-signing (-want +got):\n%s", diff)
	}
	var common []string
	for _, b := range r.units[0].banks {
		all := true
		for _, u := range r.units[1:] {
			all = all && slices.Contains(u.banks, b)
		}
		if all {
			common = append(common, "taa:TPM_ALG_"+strings.ToUpper(b.String()))
		}
	}
	if diff := cmp.Diff(common, d.Hashes); diff != "" {
		t.Errorf("attester-supported-algos tpm20-hash (-want +got; banks %v):\n%s", r.banksByUnit(), diff)
	}
	for _, h := range d.Hashes {
		t.Run(h, func(t *testing.T) {
			op := `<tpm20-challenge-response-attestation ` + mtpmNS + `><tpm20-attestation-challenge><nonce-value>` + b64(newNonce(t)) +
				`</nonce-value><tpm20-pcr-selection><tpm20-hash-algo ` + mtpmTAA + `>` + h + `</tpm20-hash-algo><pcr-index>0</pcr-index></tpm20-pcr-selection>` +
				`</tpm20-attestation-challenge></tpm20-challenge-response-attestation>`
			_, rep := r.call(t, op, challengeOp(newNonce(t), []int{0}))
			if len(rep.Errors) > 0 || len(rep.Responses) != len(r.units) {
				t.Errorf("challenge in listed bank %s: %d responses, errors %+v; want one per TPM (%d)", h, len(rep.Responses), rep.Errors, len(r.units))
			}
		})
	}
}

func (r *mtpmRig) banksByUnit() map[string][]alg.ID {
	m := map[string][]alg.ID{}
	for _, u := range r.units {
		m[u.name] = u.banks
	}
	return m
}

// challengeOp is a tpm20-challenge-response-attestation of the sha256
// PCRs sel for the certificates named.
func challengeOp(nonce []byte, sel []int, certs ...string) string {
	var b strings.Builder
	b.WriteString(`<tpm20-challenge-response-attestation ` + mtpmNS + `><tpm20-attestation-challenge>`)
	b.WriteString(`<nonce-value>` + b64(nonce) + `</nonce-value>`)
	b.WriteString(`<tpm20-pcr-selection><tpm20-hash-algo ` + mtpmTAA + `>taa:TPM_ALG_SHA256</tpm20-hash-algo>`)
	for _, i := range sel {
		fmt.Fprintf(&b, `<pcr-index>%d</pcr-index>`, i)
	}
	b.WriteString(`</tpm20-pcr-selection>`)
	for _, c := range certs {
		b.WriteString(`<certificate-name>` + c + `</certificate-name>`)
	}
	b.WriteString(`</tpm20-attestation-challenge></tpm20-challenge-response-attestation>`)
	return b.String()
}

func newNonce(t *testing.T) []byte {
	t.Helper()
	n := make([]byte, 32)
	if _, err := rand.Read(n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkQuote verifies a response with u's IAK against u's PCRs read from
// u's TPM, checks the unsigned PCR values are u's, and that no other
// TPM's IAK verifies it.
func (r *mtpmRig) checkQuote(t *testing.T, q mtpmQuote, u *mtpmUnit, nonce []byte, idx []int) {
	t.Helper()
	sel := []pcr.Selection{{Bank: alg.SHA256, PCRs: idx}}
	want := u.readPCRs(t, sel)
	attest, sig := unb64(t, q.Quote), unb64(t, q.Sig)
	if _, err := quote.Verify(u.iak.Public.Key, attest, sig, quote.Options{Nonce: nonce, Selection: sel, PCRs: want}); err != nil {
		t.Errorf("%s: quote.Verify(%s's IAK, %s's PCRs) = %v, want nil", q.Cert, u.name, u.name, err)
	}
	for _, o := range r.units {
		if o == u {
			continue
		}
		if _, err := quote.Verify(o.iak.Public.Key, attest, sig, quote.Options{Nonce: nonce, Selection: sel}); err == nil {
			t.Errorf("%s: the quote verifies with %s's IAK too", q.Cert, o.name)
		}
	}
	got := pcr.Values{}
	for _, uv := range q.Unsigned {
		for _, v := range uv.Vals {
			got.Set(taaHash(t, uv.Alg), v.I, unb64(t, v.V))
		}
	}
	if !got.Equal(want) {
		t.Errorf("%s: unsigned-pcr-values differ from %s's PCRs: %v", q.Cert, u.name, got.Diff(want))
	}
}

// TestMultiTPMChallenge: a challenge naming a line card's certificate is
// quoted by that card's TPM alone; without certificate-name every TPM
// quotes; a name that is no TPM's certificate gets RFC 9684's
// error-message, and so does a certificate that is not an attestation
// key's.
func TestMultiTPMChallenge(t *testing.T) {
	r := newMTPMRig(t, 2)
	idx := []int{0, 4, 7, 10}
	lc1, lc2 := r.unit("lc1"), r.unit("lc2")
	// The PCRs of different images differ: a quote's PCR digest tells
	// the TPMs apart, not only its signature.
	sel := []pcr.Selection{{Bank: alg.SHA256, PCRs: idx}}
	if lc1.readPCRs(t, sel).Equal(r.units[0].readPCRs(t, sel)) || lc1.readPCRs(t, sel).Equal(lc2.readPCRs(t, sel)) {
		t.Fatal("the TPMs hold the same PCRs; the test cannot tell them apart")
	}

	t.Run("lc1", func(t *testing.T) {
		nonce := newNonce(t)
		reply, rep := r.call(t, challengeOp(nonce, idx, lc1.certName), "")
		if len(rep.Responses) != 1 || rep.Responses[0].Cert != lc1.certName {
			t.Fatalf("challenge for %s: responses %v, want exactly [%s]:\n%.1500s", lc1.certName, rep.names(), lc1.certName, reply)
		}
		r.checkQuote(t, rep.Responses[0], lc1, nonce, idx)
	})

	t.Run("lc1 and lc2", func(t *testing.T) {
		nonce := newNonce(t)
		reply, rep := r.call(t, challengeOp(nonce, idx, lc2.certName, lc1.certName), "")
		if diff := cmp.Diff([]string{lc2.certName, lc1.certName}, rep.names()); diff != "" {
			t.Fatalf("responses (-want +got):\n%s\n%.1500s", diff, reply)
		}
		r.checkQuote(t, rep.Responses[0], lc2, nonce, idx)
		r.checkQuote(t, rep.Responses[1], lc1, nonce, idx)
	})

	t.Run("every TPM", func(t *testing.T) {
		nonce := newNonce(t)
		reply, rep := r.call(t, challengeOp(nonce, idx), "")
		var want []string
		for _, u := range r.units {
			want = append(want, u.certName)
		}
		if diff := cmp.Diff(want, rep.names()); diff != "" {
			t.Fatalf("responses without certificate-name (-want +got):\n%s\n%.1500s", diff, reply)
		}
		for i, u := range r.units {
			r.checkQuote(t, rep.Responses[i], u, nonce, idx)
		}
	})

	// A request may name a certificate twice (certificate-name is not
	// configuration: its values need not be unique, and yanglint accepts
	// the request), but tpm20-attestation-response is unique by
	// certificate-name: one quote per certificate.
	t.Run("same certificate twice", func(t *testing.T) {
		nonce := newNonce(t)
		reply, rep := r.call(t, challengeOp(nonce, idx, lc1.certName, lc1.certName), "")
		if len(rep.Errors) > 0 {
			return // refusing is conformant too; the reply validated above
		}
		if !slices.Equal(rep.names(), []string{lc1.certName}) {
			t.Fatalf("responses %v, want [%s] once:\n%.600s", rep.names(), lc1.certName, reply)
		}
		r.checkQuote(t, rep.Responses[0], lc1, nonce, idx)
	})

	// The must on certificate-name (RFC 9684 §3.1.1.2): a certificate of
	// a TPM 2.0 TPM on the device. RFC 7950 §15.4: operation-failed,
	// must-violation, with the must's error-message.
	t.Run("unknown certificate", func(t *testing.T) {
		reply, rep := r.call(t, challengeOp(newNonce(t), idx, "lc9-iak"), challengeOp(newNonce(t), idx, lc1.certName))
		if len(rep.Errors) != 1 {
			t.Fatalf("challenge for lc9-iak: %.1500s", reply)
		}
		e := rep.Errors[0]
		got := mtpmError{Type: e.Type, Tag: e.Tag, AppTag: e.AppTag, Message: e.Message}
		want := mtpmError{Type: "application", Tag: "operation-failed", AppTag: "must-violation", Message: msgNotAIK}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("rpc-error (-want +got):\n%s", diff)
		}
		if !strings.HasSuffix(e.Path, ":certificate-name") {
			t.Errorf("error-path = %q, want the certificate-name", e.Path)
		}
		if len(rep.Responses) > 0 {
			t.Errorf("responses %v beside the error", rep.names())
		}
	})

	// The IDevID's certificate is one of the device's (the must holds),
	// but no attestation key: nothing can quote with it.
	t.Run("not an attestation key", func(t *testing.T) {
		reply, rep := r.call(t, challengeOp(newNonce(t), idx, "idevid"), challengeOp(newNonce(t), idx, lc1.certName))
		if len(rep.Errors) != 1 || rep.Errors[0].Message != msgNotAIK || len(rep.Responses) > 0 {
			t.Fatalf("challenge for idevid: %.1500s", reply)
		}
	})
}

// TestMultiTPMLogRetrieval: log-selector names select the TPMs whose logs
// are returned; each TPM's log replays to that TPM's PCRs (read from the
// TPM itself), and not to another's.
func TestMultiTPMLogRetrieval(t *testing.T) {
	r := newMTPMRig(t, 2)
	logOp := func(typ string, names ...string) string {
		op := `<log-retrieval ` + mtpmNS + `><log-type>` + typ + `</log-type>`
		if len(names) > 0 {
			op += `<log-selector>`
			for _, n := range names {
				op += `<name>` + n + `</name>`
			}
			op += `</log-selector>`
		}
		return op + `</log-retrieval>`
	}
	var all []string
	for _, u := range r.units {
		all = append(all, u.name)
	}

	for _, tc := range []struct {
		name  string
		names []string // in the log-selector
		want  []string // node-data entries
	}{
		{"lc2", []string{"lc2"}, []string{"lc2"}},
		{"tpm0 and lc1", []string{"lc1", "tpm0"}, []string{"tpm0", "lc1"}},
		{"no name", nil, all},
		{"unknown name", []string{"lc9"}, nil},
	} {
		for _, typ := range []string{"bios", "netequip_boot"} {
			t.Run(tc.name+"/"+typ, func(t *testing.T) {
				reply, rep := r.call(t, logOp(typ, tc.names...), "")
				if len(rep.Errors) > 0 {
					t.Fatalf("log-retrieval: %.1500s", reply)
				}
				if diff := cmp.Diff(tc.want, rep.names()); diff != "" {
					t.Fatalf("node-data (-want +got):\n%s", diff)
				}
				if len(tc.want) == 0 && rep.OK == nil {
					t.Errorf("no node-data, and no <ok/>: %.500s", reply)
				}
				for _, nd := range rep.Nodes {
					u := r.unit(nd.Name)
					var l *eventlog.Log
					var idx []int
					if typ == "bios" {
						l, idx = biosLog(t, nd), []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
						if len(nd.BIOS) != len(u.boot.UEFI.Events)+1 { // and the Spec ID event
							t.Errorf("%s: %d bios entries, want %d", u.name, len(nd.BIOS), len(u.boot.UEFI.Events)+1)
						}
					} else {
						l, idx = bootLog(t, nd), []int{router.NetequipPCR}
						if len(nd.Boot) != len(u.boot.Netequip.Events) {
							t.Errorf("%s: %d boot entries, want %d", u.name, len(nd.Boot), len(u.boot.Netequip.Events))
						}
					}
					res, err := l.Verify(u.readPCRs(t, pcrRange(u.banks, idx...)))
					if err != nil || !res.OK() || len(res.Quirks) > 0 {
						t.Errorf("%s's %s log against its TPM's PCRs: %v %+v", u.name, typ, err, res)
					}
					for _, o := range r.units {
						if o == u {
							continue
						}
						if res, err := l.Verify(o.readPCRs(t, pcrRange([]alg.ID{alg.SHA256}, idx...))); err == nil && res.OK() {
							t.Errorf("%s's %s log replays to %s's PCRs too", u.name, typ, o.name)
						}
					}
				}
			})
		}
	}

	// node-data is unique by name (RFC 9684): two selectors for one
	// TPM still give that TPM one node-data entry.
	t.Run("two selectors for lc2", func(t *testing.T) {
		op := `<log-retrieval ` + mtpmNS + `><log-type>bios</log-type>` +
			`<log-selector><name>lc2</name><log-entry-quantity>2</log-entry-quantity></log-selector>` +
			`<log-selector><name>lc2</name><last-index-number>20</last-index-number></log-selector></log-retrieval>`
		reply, rep := r.call(t, op, "")
		if len(rep.Errors) == 0 && !slices.Equal(rep.names(), []string{"lc2"}) {
			t.Errorf("node-data %v, want lc2 once:\n%.600s", rep.names(), reply)
		}
	})
}

// TestMultiTPMLogRetrievalHardwareBased: a log-selector without a name
// selects the TPMs that are hardware-based (RFC 9684 log-selector name);
// a name selects that TPM whether it is or not.
func TestMultiTPMLogRetrievalHardwareBased(t *testing.T) {
	r := newMTPMRig(t, 2, "lc1")
	for _, tc := range []struct {
		sel  string
		want []string
	}{
		{"", []string{"lc1"}},
		{"<log-selector><log-entry-quantity>3</log-entry-quantity></log-selector>", []string{"lc1"}},
		{"<log-selector><name>tpm0</name></log-selector>", []string{"tpm0"}},
	} {
		reply, rep := r.call(t, `<log-retrieval `+mtpmNS+`><log-type>bios</log-type>`+tc.sel+`</log-retrieval>`, "")
		if diff := cmp.Diff(tc.want, rep.names()); diff != "" {
			t.Errorf("log-retrieval %q: node-data (-want +got):\n%s\n%.600s", tc.sel, diff, reply)
		}
	}
}

// biosLog rebuilds a TCG log from bios-event-entry elements.
func biosLog(t *testing.T, nd mtpmLogNode) *eventlog.Log {
	t.Helper()
	l := &eventlog.Log{Format: eventlog.FormatTCG}
	for _, e := range nd.BIOS {
		ev := eventlog.Event{Seq: e.Seq, PCR: e.PCR, Type: e.Type, Data: unb64(t, e.Data)}
		for _, dl := range e.Digests {
			b := taaHash(t, dl.Alg)
			if !slices.Contains(l.Banks, b) && eventlog.EventType(e.Type) != eventlog.EvNoAction {
				l.Banks = append(l.Banks, b)
			}
			for _, v := range dl.Values {
				ev.Digests = append(ev.Digests, eventlog.Digest{Alg: b, Value: unb64(t, v)})
			}
		}
		l.Events = append(l.Events, ev)
	}
	return l
}

// bootLog rebuilds an ima-ng log from boot-event-entry elements: the
// template data from the file hash and name, checked against the
// template-hash the agent sent.
func bootLog(t *testing.T, nd mtpmLogNode) *eventlog.Log {
	t.Helper()
	l := &eventlog.Log{Format: eventlog.FormatIMA}
	for _, e := range nd.Boot {
		if e.Template != "ima-ng" {
			t.Fatalf("event %d: template %q", e.Seq, e.Template)
		}
		fa, err := alg.ParseHash(e.FileHashAlg)
		if err != nil {
			t.Fatal(err)
		}
		ta, err := alg.ParseHash(e.TemplateAlg)
		if err != nil {
			t.Fatal(err)
		}
		ev := eventlog.IMAEntryFor(e.PCR, fa, unb64(t, e.FileHash), e.FileName, nil, []alg.ID{ta})
		if got := ev.Digest(ta); string(got) != string(unb64(t, e.TemplateHash)) {
			t.Errorf("event %d (%s): template-hash is not the %v of its template data", e.Seq, e.FileName, ta)
		}
		ev.Seq = e.Seq
		l.Banks = []alg.ID{ta}
		l.Events = append(l.Events, ev)
	}
	return l
}

// TestSingleTPMNoMTPM: without line cards the device does not implement
// mtpm: no compute nodes, the feature is not announced, and a challenge
// naming a certificate is refused by the schema (certificate-name does
// not exist without the feature: RFC 6241 unknown-element).
func TestSingleTPMNoMTPM(t *testing.T) {
	r := newMTPMRig(t, 0)
	r.yanglint(t, "-t", "data", r.oper)
	raw, _ := os.ReadFile(r.oper)
	for _, s := range []string{"<compute-nodes>", "<compute-node>", "<feature>mtpm</feature>"} {
		if strings.Contains(string(raw), s) {
			t.Errorf("the operational data of a single-TPM device holds %s", s)
		}
	}
	if m := r.srv.Schema().Module("ietf-tpm-remote-attestation"); m == nil || slices.Contains(m.Features, "mtpm") {
		t.Errorf("a single-TPM server's schema implements mtpm")
	}

	idx := []int{0, 10}
	valid := challengeOp(newNonce(t), idx)
	reply, rep := r.call(t, challengeOp(newNonce(t), idx, "iak"), valid)
	if len(rep.Errors) != 1 || len(rep.Responses) > 0 {
		t.Fatalf("challenge with certificate-name: %.1500s", reply)
	}
	e := rep.Errors[0]
	got := mtpmError{Type: e.Type, Tag: e.Tag, BadElement: e.BadElement}
	want := mtpmError{Type: "application", Tag: "unknown-element", BadElement: "certificate-name"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rpc-error (-want +got):\n%s\n%s", diff, reply)
	}

	// Without certificate-name the one TPM quotes.
	nonce := newNonce(t)
	reply, rep = r.call(t, challengeOp(nonce, idx), "")
	if len(rep.Responses) != 1 || rep.Responses[0].Cert != "iak" {
		t.Fatalf("challenge: %.1500s", reply)
	}
	r.checkQuote(t, rep.Responses[0], r.units[0], nonce, idx)
}

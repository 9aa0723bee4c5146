package schema_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/schema"
)

const (
	nsBase = "urn:ietf:params:xml:ns:netconf:base:1.0"
	nsTPM  = "urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"
	nsTAA  = "urn:ietf:params:xml:ns:yang:ietf-tcg-algs"
)

// oper is the operational state the must expressions of the RFC 9684
// RPCs refer to: a TPM that supports SHA-256 only.
const oper = `<rats-support-structures xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation" xmlns:taa="urn:ietf:params:xml:ns:yang:ietf-tcg-algs">` +
	`<tpms><tpm><name>tpm0</name><hardware-based>false</hardware-based><firmware-version>taa:tpm20</firmware-version><status>operational</status><certificates/></tpm></tpms>` +
	`<attester-supported-algos><tpm20-hash>taa:TPM_ALG_SHA256</tpm20-hash></attester-supported-algos></rats-support-structures>`

func challenge(inner string) string {
	return `<tpm20-challenge-response-attestation xmlns="` + nsTPM + `" xmlns:taa="` + nsTAA + `"><tpm20-attestation-challenge>` + inner + `</tpm20-attestation-challenge></tpm20-challenge-response-attestation>`
}

func logRetrieval(inner string) string {
	return `<log-retrieval xmlns="` + nsTPM + `" xmlns:tpm="` + nsTPM + `">` + inner + `</log-retrieval>`
}

// inputCases are RPC inputs with the rpc-error the server must answer
// ("" accepts). yanglint -t nc-rpc, run on the same inputs, is the
// oracle for which are valid.
var inputCases = []struct {
	name, op    string
	tag, appTag string
	msg         string
	info        string // an error-info value expected
}{
	{"challenge", challenge(`<nonce-value>AAAA</nonce-value><tpm20-pcr-selection><tpm20-hash-algo>taa:TPM_ALG_SHA256</tpm20-hash-algo><pcr-index>0</pcr-index><pcr-index> 10 </pcr-index></tpm20-pcr-selection>`), "", "", "", ""},
	{"challenge without selection (no min-elements)", challenge(`<nonce-value>AAAA</nonce-value>`), "", "", "", ""},
	{"challenge, selection without hash-algo", challenge(`<nonce-value>AAAA</nonce-value><tpm20-pcr-selection><pcr-index>0</pcr-index><pcr-index>0</pcr-index></tpm20-pcr-selection>`), "", "", "", ""},
	{"duplicate nonce-value", challenge(`<nonce-value>AAAA</nonce-value><nonce-value>AAAA</nonce-value>`), "bad-element", "", "more than once", "nonce-value"},
	{"duplicate selection for one bank", challenge(`<nonce-value>AAAA</nonce-value><tpm20-pcr-selection><tpm20-hash-algo>taa:TPM_ALG_SHA256</tpm20-hash-algo></tpm20-pcr-selection><tpm20-pcr-selection><tpm20-hash-algo>taa:TPM_ALG_SHA256</tpm20-hash-algo></tpm20-pcr-selection>`), "operation-failed", "data-not-unique", "", "tpm20-hash-algo"},
	{"unknown child", challenge(`<nonce-value>AAAA</nonce-value><foo/>`), "unknown-element", "", "", "foo"},
	{"certificate-name without mtpm", challenge(`<nonce-value>AAAA</nonce-value><certificate-name>iak</certificate-name>`), "unknown-element", "", "", "certificate-name"},
	{"pcr-index 32", challenge(`<nonce-value>AAAA</nonce-value><tpm20-pcr-selection><pcr-index>32</pcr-index></tpm20-pcr-selection>`), "invalid-value", "", "range", ""},
	{"nonce with whitespace", challenge("<nonce-value>AA\nAA</nonce-value>"), "invalid-value", "", "base64", ""},
	{"nonce not padded", challenge(`<nonce-value>AAA</nonce-value>`), "invalid-value", "", "base64", ""},
	{"bank the TPM lacks (must)", challenge(`<nonce-value>AAAA</nonce-value><tpm20-pcr-selection><tpm20-hash-algo>taa:TPM_ALG_SHA384</tpm20-hash-algo></tpm20-pcr-selection>`), "operation-failed", "must-violation", "This platform does not support tpm20-hash-algo", ""},
	{"hash-algo prefixed differently (must)", `<tpm20-challenge-response-attestation xmlns="` + nsTPM + `"><tpm20-attestation-challenge><nonce-value>AAAA</nonce-value><tpm20-pcr-selection><tpm20-hash-algo xmlns:x="` + nsTAA + `">x:TPM_ALG_SHA256</tpm20-hash-algo></tpm20-pcr-selection></tpm20-attestation-challenge></tpm20-challenge-response-attestation>`, "", "", "", ""},
	{"not a hash algorithm", challenge(`<nonce-value>AAAA</nonce-value><tpm20-pcr-selection><tpm20-hash-algo>taa:TPM_ALG_ECDSA</tpm20-hash-algo></tpm20-pcr-selection>`), "invalid-value", "", "not derived from ietf-tcg-algs:hash", ""},
	{"no nonce", challenge(``), "missing-element", "", "nonce-value is required", "nonce-value"},
	{"no challenge container", `<tpm20-challenge-response-attestation xmlns="` + nsTPM + `"/>`, "missing-element", "", "nonce-value is required", "nonce-value"},
	{"log-retrieval", logRetrieval(`<log-type>tpm:bios</log-type><log-selector><last-index-number>01</last-index-number><log-entry-quantity>10</log-entry-quantity></log-selector>`), "", "", "", ""},
	{"log-type in the default namespace", logRetrieval(`<log-type>bios</log-type>`), "", "", "", ""},
	{"two cases of index-type", logRetrieval(`<log-type>tpm:bios</log-type><log-selector><last-index-number>1</last-index-number><timestamp>2024-01-01T00:00:00Z</timestamp></log-selector>`), "bad-element", "", "case", "timestamp"},
	{"no log-type", logRetrieval(`<log-selector/>`), "missing-element", "", "", "log-type"},
	{"quantity over uint16", logRetrieval(`<log-type>tpm:bios</log-type><log-selector><log-entry-quantity>70000</log-entry-quantity></log-selector>`), "invalid-value", "", "", ""},
	{"timestamp not date-and-time", logRetrieval(`<log-type>tpm:bios</log-type><log-selector><timestamp>2024-01-01 00:00</timestamp></log-selector>`), "invalid-value", "", "pattern", ""},
	{"unknown log type", logRetrieval(`<log-type>tpm:bogus</log-type>`), "invalid-value", "", "not defined", ""},
	{"base identity as log type", logRetrieval(`<log-type>tpm:attested_event_log_type</log-type>`), "invalid-value", "", "not derived", ""},
	{"negative index", logRetrieval(`<log-type>tpm:bios</log-type><log-selector><last-index-number>-1</last-index-number></log-selector>`), "invalid-value", "", "", ""},
	{"unknown namespace", logRetrieval(`<log-type>tpm:bios</log-type><foo xmlns="urn:x"/>`), "unknown-namespace", "", "", "urn:x"},
	{"attribute", logRetrieval(`<log-type a="1">tpm:bios</log-type>`), "unknown-attribute", "", "", "a"},
	{"leaf with elements", logRetrieval(`<log-type><x/></log-type>`), "bad-element", "", "", "log-type"},
	{"get-schema", `<get-schema xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><identifier>ietf-tcg-algs</identifier><format>yang</format></get-schema>`, "", "", "", ""},
	{"get-schema without identifier", `<get-schema xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"/>`, "missing-element", "", "", "identifier"},
	{"get-schema format not an identity", `<get-schema xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><identifier>x</identifier><format>json</format></get-schema>`, "invalid-value", "", "", ""},
	{"get-data", `<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"><datastore>ds:operational</datastore><subtree-filter><rats-support-structures xmlns="` + nsTPM + `"/></subtree-filter><max-depth>3</max-depth><with-defaults>report-all</with-defaults></get-data>`, "", "", "", ""},
	{"get-data with-origin (feature off)", `<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"><datastore>ds:operational</datastore><with-origin/></get-data>`, "unknown-element", "", "", "with-origin"},
	{"get-data xpath-filter (feature off)", `<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"><datastore>ds:operational</datastore><xpath-filter>/a</xpath-filter></get-data>`, "unknown-element", "", "", "xpath-filter"},
	{"get-data max-depth 0", `<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"><datastore>ds:operational</datastore><max-depth>0</max-depth></get-data>`, "invalid-value", "", "", ""},
	{"get-data without datastore", `<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda"/>`, "missing-element", "", "", "datastore"},
	{"get with-defaults", `<get xmlns="` + nsBase + `"><filter type="subtree"><rats-support-structures xmlns="` + nsTPM + `"/></filter><with-defaults xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">trim</with-defaults></get>`, "", "", "", ""},
	{"get with an unknown with-defaults", `<get xmlns="` + nsBase + `"><with-defaults xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">none</with-defaults></get>`, "invalid-value", "", "", ""},
	{"kill-session", `<kill-session xmlns="` + nsBase + `"><session-id>4</session-id></kill-session>`, "", "", "", ""},
	{"kill-session 0", `<kill-session xmlns="` + nsBase + `"><session-id>0</session-id></kill-session>`, "invalid-value", "", "", ""},
	{"close-session with content", `<close-session xmlns="` + nsBase + `"><x/></close-session>`, "unknown-element", "", "", "x"},
}

func TestInput(t *testing.T) {
	s := agentSet(t)
	opx, err := schema.ParseXML([]byte(oper), schema.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	data, verr := s.Data([]*schema.XML{opx})
	if verr != nil {
		t.Fatal(verr)
	}
	for _, c := range inputCases {
		t.Run(c.name, func(t *testing.T) {
			x, err := schema.ParseXML([]byte(c.op), schema.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			rpc := s.FindRPC(x.NS, x.Name)
			if rpc == nil {
				t.Fatalf("no RPC %s", x.Name)
			}
			_, e := s.Input(rpc, x, func() []*schema.Elem { return data })
			if c.tag == "" {
				if e != nil {
					t.Fatalf("Input() = %v, want accepted", e)
				}
				return
			}
			if e == nil {
				t.Fatalf("Input() accepted; want %s", c.tag)
			}
			var info []string
			for _, i := range e.Info {
				info = append(info, i.Value)
			}
			if e.Tag != c.tag || e.AppTag != c.appTag || !strings.Contains(e.Message, c.msg) || !strings.Contains(strings.Join(info, " "), c.info) {
				t.Errorf("Input() = %s/%s %q info %v, want %s/%s with %q and info %q", e.Tag, e.AppTag, e.Message, info, c.tag, c.appTag, c.msg, c.info)
			}
		})
	}
}

// TestInputOracle runs every input case through yanglint: what the
// validator accepts, libyang accepts, and what it refuses, libyang
// refuses.
func TestInputOracle(t *testing.T) {
	bin := testref.NeedTool(t, "yanglint")
	Y := testref.YangDir(t)
	dir := t.TempDir()
	opf := filepath.Join(dir, "oper.xml")
	os.WriteFile(opf, []byte(oper), 0o600)
	mods := []string{"ietf-tpm-remote-attestation@2024-12-05", "ietf-tcg-algs@2024-12-05", "ietf-keystore@2024-10-10", "ietf-netconf@2011-06-01",
		"ietf-netconf-with-defaults@2011-06-01", "ietf-netconf-monitoring@2010-10-04", "ietf-netconf-nmda@2019-01-07", "ietf-datastores@2018-02-14"}
	args := []string{"-t", "nc-rpc", "-O", opf, "-F", "ietf-tpm-remote-attestation:bios,ima,netequip_boot", "-F", "ietf-tcg-algs:tpm20",
		"-F", "ietf-keystore:central-keystore-supported,asymmetric-keys", "-F", "ietf-crypto-types:", "-F", "ietf-netconf-nmda:with-defaults",
		"-F", "ietf-netconf:", "-F", "ietf-hardware:", "-p", Y}
	for _, m := range mods {
		args = append(args, filepath.Join(Y, m+".yang"))
	}
	for i, c := range inputCases {
		f := filepath.Join(dir, "rpc.xml")
		os.WriteFile(f, []byte(`<rpc xmlns="`+nsBase+`" message-id="`+string(rune('a'+i%26))+`">`+c.op+`</rpc>`), 0o600)
		out, err := exec.Command(bin, append(args, f)...).CombinedOutput()
		refused := err != nil || strings.Contains(string(out), "err :") || strings.Contains(string(out), "[E]")
		if refused != (c.tag != "") {
			t.Errorf("%s: yanglint refused=%v, the validator says %q:\n%s", c.name, refused, c.tag, out)
		}
	}
}

// TestJSONInputTypes: RFC 7951's encoding is checked strictly, as
// yanglint does: 8- to 32-bit integers are JSON numbers, 64-bit ones
// strings, identities module-qualified.
func TestJSONInputTypes(t *testing.T) {
	s := agentSet(t)
	opx, _ := schema.ParseXML([]byte(oper), schema.Limits{})
	data, _ := s.Data([]*schema.XML{opx})
	ch := s.FindRPC(nsTPM, "tpm20-challenge-response-attestation")
	lr := s.FindRPC(nsTPM, "log-retrieval")
	cases := []struct {
		name string
		rpc  *schema.Node
		in   string
		tag  string
	}{
		{"challenge", ch, `{"ietf-tpm-remote-attestation:input":{"tpm20-attestation-challenge":{"nonce-value":"AAAA","tpm20-pcr-selection":[{"tpm20-hash-algo":"ietf-tcg-algs:TPM_ALG_SHA256","pcr-index":[0,10]}]}}}`, ""},
		{"pcr-index as strings", ch, `{"ietf-tpm-remote-attestation:input":{"tpm20-attestation-challenge":{"nonce-value":"AAAA","tpm20-pcr-selection":[{"pcr-index":["0"]}]}}}`, "invalid-value"},
		{"identity without module", ch, `{"ietf-tpm-remote-attestation:input":{"tpm20-attestation-challenge":{"nonce-value":"AAAA","tpm20-pcr-selection":[{"tpm20-hash-algo":"TPM_ALG_SHA256"}]}}}`, "invalid-value"},
		{"selection not an array", ch, `{"ietf-tpm-remote-attestation:input":{"tpm20-attestation-challenge":{"nonce-value":"AAAA","tpm20-pcr-selection":{}}}}`, "invalid-value"},
		{"uint64 as a number", lr, `{"ietf-tpm-remote-attestation:input":{"log-type":"ietf-tpm-remote-attestation:bios","log-selector":[{"last-index-number":5}]}}`, "invalid-value"},
		{"uint64 as a string", lr, `{"ietf-tpm-remote-attestation:input":{"log-type":"ietf-tpm-remote-attestation:bios","log-selector":[{"last-index-number":"5","log-entry-quantity":3}]}}`, ""},
		{"uint16 as a string", lr, `{"ietf-tpm-remote-attestation:input":{"log-type":"ietf-tpm-remote-attestation:bios","log-selector":[{"log-entry-quantity":"3"}]}}`, "invalid-value"},
		{"unknown member", lr, `{"ietf-tpm-remote-attestation:input":{"log-type":"ietf-tpm-remote-attestation:bios","x":1}}`, "unknown-element"},
		{"member twice", lr, `{"ietf-tpm-remote-attestation:input":{"log-type":"ietf-tpm-remote-attestation:bios","log-type":"ietf-tpm-remote-attestation:ima"}}`, "malformed-message"},
		{"wrong wrapper", lr, `{"input":{}}`, "malformed-message"},
		{"trailing data", lr, `{"ietf-tpm-remote-attestation:input":{}} {}`, "malformed-message"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			op, e := s.JSONInput(c.rpc, []byte(c.in))
			if e == nil {
				x, err := schema.ParseXML([]byte(op), schema.Limits{})
				if err != nil {
					t.Fatalf("JSONInput gave malformed XML %q: %v", op, err)
				}
				_, e = s.Input(c.rpc, x, func() []*schema.Elem { return data })
			}
			switch {
			case c.tag == "" && e != nil:
				t.Errorf("JSONInput/Input = %v, want accepted", e)
			case c.tag != "" && (e == nil || e.Tag != c.tag):
				t.Errorf("JSONInput/Input = %v, want %s", e, c.tag)
			}
		})
	}
}

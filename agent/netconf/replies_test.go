package netconf_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRepliesValidate sends the agent every kind of request — full and
// filtered retrievals in each datastore and with-defaults mode, the RFC
// 9684 RPCs with and without results, and requests that fail — and has
// yanglint validate each rpc-reply against the official modules, as the
// agent implements them: empty results (<ok/>) and rpc-errors too (their
// error-tags are checked against RFC 6241's list).
func TestRepliesValidate(t *testing.T) {
	d := startDevice(t)
	dir := t.TempDir()
	ctx := context.Background()
	const (
		tpm  = `xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"`
		taa  = `xmlns:taa="urn:ietf:params:xml:ns:yang:ietf-tcg-algs"`
		nmda = `xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"`
	)
	exchange := func(user, op string) (rpc, reply string) {
		rpc = `<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="7">` + op + `</rpc>`
		return rpc, string(d.Server.Exchange(ctx, user, []byte(rpc)))
	}
	// The operational datastore, for the replies' leafrefs and musts;
	// it validates itself as a complete datastore.
	_, get := exchange(d.User, `<get/>`)
	oper := filepath.Join(dir, "oper.xml")
	os.WriteFile(oper, dataOf(t, []byte(get)), 0o600)
	yanglint(t, d, "-t", "data", oper)

	cases := []struct {
		name, op string
		user     string // default d.User
		want     string // in the reply
	}{
		{"get-config", `<get-config><source><running/></source></get-config>`, "", "<rats-support-structures"},
		{"get filtered", `<get><filter type="subtree"><rats-support-structures ` + tpm + `><tpms/></rats-support-structures></filter></get>`, "", "<tpm>"},
		{"get with-defaults trim", `<get><with-defaults xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">trim</with-defaults></get>`, "", "<data>"},
		{"get report-all-tagged", `<get><with-defaults xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">report-all-tagged</with-defaults></get>`, "", "<data>"},
		{"get-data operational", `<get-data ` + nmda + `><datastore>ds:operational</datastore></get-data>`, "", "<yang-library"},
		{"get-data running", `<get-data ` + nmda + `><datastore>ds:running</datastore></get-data>`, "", "<rats-support-structures"},
		{"get-data intended", `<get-data ` + nmda + `><datastore>ds:intended</datastore></get-data>`, "", "<rats-support-structures"},
		{"get-data max-depth", `<get-data ` + nmda + `><datastore>ds:operational</datastore><subtree-filter><rats-support-structures ` + tpm + `/></subtree-filter><max-depth>2</max-depth></get-data>`, "", "<tpms/>"},
		{"get-data config false", `<get-data ` + nmda + `><datastore>ds:operational</datastore><subtree-filter><rats-support-structures ` + tpm + `/></subtree-filter><config-filter>false</config-filter></get-data>`, "", "<hardware-based>"},
		{"get-schema", `<get-schema xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><identifier>ietf-tcg-algs</identifier><version>2024-12-05</version></get-schema>`, "", "module ietf-tcg-algs"},
		{"challenge", `<tpm20-challenge-response-attestation ` + tpm + `><tpm20-attestation-challenge><nonce-value>AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=</nonce-value></tpm20-attestation-challenge></tpm20-challenge-response-attestation>`, "", "<quote-data>"},
		{"bios log", `<log-retrieval ` + tpm + `><log-type>bios</log-type></log-retrieval>`, "", "<bios-event-entry>"},
		{"netequip log", `<log-retrieval ` + tpm + `><log-type>netequip_boot</log-type><log-selector><log-entry-quantity>3</log-entry-quantity></log-selector></log-retrieval>`, "", "<boot-event-entry>"},
		{"nothing new", `<log-retrieval ` + tpm + `><log-type>netequip_boot</log-type><log-selector><last-index-number>100000</last-index-number></log-selector></log-retrieval>`, "", "<ok/>"},
		{"error: unknown element", `<log-retrieval ` + tpm + `><log-type>bios</log-type><x/></log-retrieval>`, "", "unknown-element"},
		{"error: invalid value", `<log-retrieval ` + tpm + `><log-type>bios</log-type><log-selector><log-entry-quantity>-1</log-entry-quantity></log-selector></log-retrieval>`, "", "invalid-value"},
		{"error: missing element", `<log-retrieval ` + tpm + `/>`, "", "missing-element"},
		{"error: must", `<tpm20-challenge-response-attestation ` + tpm + `><tpm20-attestation-challenge><nonce-value>AAAA</nonce-value><tpm20-pcr-selection><tpm20-hash-algo ` + taa + `>taa:TPM_ALG_SM3_256</tpm20-hash-algo></tpm20-pcr-selection></tpm20-attestation-challenge></tpm20-challenge-response-attestation>`, "", "must-violation"},
		{"error: unique", `<tpm20-challenge-response-attestation ` + tpm + `><tpm20-attestation-challenge><nonce-value>AAAA</nonce-value><tpm20-pcr-selection/><tpm20-pcr-selection/></tpm20-attestation-challenge></tpm20-challenge-response-attestation>`, "", "<rpc-reply"},
		{"error: two cases", `<log-retrieval ` + tpm + `><log-type>bios</log-type><log-selector><last-index-number>1</last-index-number><last-entry-value>AAAA</last-entry-value></log-selector></log-retrieval>`, "", "bad-element"},
		{"error: access denied", `<log-retrieval ` + tpm + `><log-type>bios</log-type></log-retrieval>`, "nobody", "access-denied"},
		{"error: not supported", `<lock><target><running/></target></lock>`, "", "operation-not-supported"},
		{"error: datastore", `<get-data ` + nmda + `><datastore>ds:startup</datastore></get-data>`, "", "invalid-value"},
		{"error: schema", `<get-schema xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><identifier>ietf-tcg-algs</identifier><version>1999-01-01</version></get-schema>`, "", "invalid-value"},
		{"error: kill", `<kill-session><session-id>999</session-id></kill-session>`, "", "invalid-value"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			user := c.user
			if user == "" {
				user = d.User
			}
			rpc, reply := exchange(user, c.op)
			if !strings.Contains(reply, c.want) {
				t.Fatalf("reply lacks %q:\n%.1500s", c.want, reply)
			}
			rf, pf := filepath.Join(dir, fmt.Sprintf("rpc%d.xml", i)), filepath.Join(dir, fmt.Sprintf("reply%d.xml", i))
			if strings.HasPrefix(c.name, "error:") {
				// yanglint reads the request first, and a request that is
				// itself invalid does not parse: an rpc-error is paired
				// with a valid request of the same operation instead (the
				// error's structure does not depend on it).
				for op, valid := range map[string]string{
					"<log-retrieval":                        `<log-retrieval ` + tpm + `><log-type>bios</log-type></log-retrieval>`,
					"<tpm20-challenge-response-attestation": `<tpm20-challenge-response-attestation ` + tpm + `><tpm20-attestation-challenge><nonce-value>AAAA</nonce-value></tpm20-attestation-challenge></tpm20-challenge-response-attestation>`,
				} {
					if strings.HasPrefix(c.op, op) {
						rpc = `<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="7">` + valid + `</rpc>`
					}
				}
			}
			os.WriteFile(rf, []byte(rpc), 0o600)
			os.WriteFile(pf, []byte(reply), 0o600)
			yanglint(t, d, "-t", "nc-reply", "-R", rf, "-O", oper, pf)
			// The data of a retrieval validates as well: whole datastores
			// as complete ones, filtered views as retrieved data.
			if strings.Contains(c.op, "<get") && !strings.Contains(c.op, "get-schema") && strings.Contains(reply, "<data") {
				df := filepath.Join(dir, fmt.Sprintf("data%d.xml", i))
				os.WriteFile(df, dataOf(t, []byte(reply)), 0o600)
				typ := "get"
				if c.name == "get-data operational" {
					typ = "data"
				}
				if c.name == "get-config" || c.name == "get-data running" || c.name == "get-data intended" {
					typ = "config"
				}
				yanglint(t, d, "-t", typ, df)
			}
		})
	}
}

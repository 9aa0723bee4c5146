package netconf_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	nc "github.com/nemith/netconf"
	ncssh "github.com/nemith/netconf/transport/ssh"
	nctls "github.com/nemith/netconf/transport/tls"
	"golang.org/x/crypto/ssh"

	"github.com/openriv/riv/agent/sim/device"
)

func sshSession(t *testing.T, d *device.Device) *nc.Session {
	t.Helper()
	signer, _ := ssh.NewSignerFromKey(d.SSHClientKey)
	cfg := &ssh.ClientConfig{User: d.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr, err := ncssh.Dial(ctx, "tcp", d.SSHAddr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := nc.Open(tr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func do(t *testing.T, s *nc.Session, op string) (*nc.Reply, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Do(ctx, op)
}

const tpmNS = `xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation" xmlns:tpm="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"`

func TestRPCErrors(t *testing.T) {
	d := startDevice(t)
	s := sshSession(t, d)
	tests := []struct {
		name, op, tag, msg string
	}{
		{"unknown op", `<frobnicate xmlns="urn:example"/>`, "operation-not-supported", "frobnicate"},
		{"no nonce", `<tpm20-challenge-response-attestation ` + tpmNS + `><tpm20-attestation-challenge><tpm20-pcr-selection><pcr-index>0</pcr-index></tpm20-pcr-selection></tpm20-attestation-challenge></tpm20-challenge-response-attestation>`, "missing-element", "nonce-value"},
		{"bad pcr", `<tpm20-challenge-response-attestation ` + tpmNS + `><tpm20-attestation-challenge><nonce-value>AAAA</nonce-value><tpm20-pcr-selection><pcr-index>32</pcr-index></tpm20-pcr-selection></tpm20-attestation-challenge></tpm20-challenge-response-attestation>`, "invalid-value", "pcr-index"},
		// certificate-name exists only with the mtpm feature (one TPM here).
		{"certificate-name", `<tpm20-challenge-response-attestation ` + tpmNS + `><tpm20-attestation-challenge><nonce-value>AAAA</nonce-value><tpm20-pcr-selection><pcr-index>0</pcr-index></tpm20-pcr-selection><certificate-name>iak</certificate-name></tpm20-attestation-challenge></tpm20-challenge-response-attestation>`, "unknown-element", "certificate-name"},
		{"long nonce", `<tpm20-challenge-response-attestation ` + tpmNS + `><tpm20-attestation-challenge><nonce-value>` + strings.Repeat("A", 100) + `</nonce-value><tpm20-pcr-selection><pcr-index>0</pcr-index></tpm20-pcr-selection></tpm20-attestation-challenge></tpm20-challenge-response-attestation>`, "invalid-value", "nonce-value"},
		{"log type", `<log-retrieval ` + tpmNS + `><log-type>tpm:nope</log-type></log-retrieval>`, "invalid-value", "log-type"},
		{"two index types", `<log-retrieval ` + tpmNS + `><log-type>tpm:bios</log-type><log-selector><last-index-number>1</last-index-number><timestamp>2026-01-01T00:00:00Z</timestamp></log-selector></log-retrieval>`, "bad-element", "case"},
		{"undeclared prefix", `<log-retrieval xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"><log-type>tpm:bios</log-type></log-retrieval>`, "invalid-value", "not declared"},
		{"bank the TPM lacks", `<tpm20-challenge-response-attestation ` + tpmNS + `><tpm20-attestation-challenge><nonce-value>AAAA</nonce-value><tpm20-pcr-selection><tpm20-hash-algo xmlns:taa="urn:ietf:params:xml:ns:yang:ietf-tcg-algs">taa:TPM_ALG_SM3_256</tpm20-hash-algo></tpm20-pcr-selection></tpm20-attestation-challenge></tpm20-challenge-response-attestation>`, "operation-failed", "This platform does not support tpm20-hash-algo"},
		{"last entry unknown", `<log-retrieval ` + tpmNS + `><log-type>tpm:bios</log-type><log-selector><last-entry-value>AAAA</last-entry-value></log-selector></log-retrieval>`, "invalid-value", "no log entry"},
		{"get-config candidate", `<get-config><source><candidate/></source></get-config>`, "unknown-element", "candidate"},
		{"edit-config", `<edit-config><target><running/></target><config/></edit-config>`, "operation-not-supported", "edit-config"},
		{"get-schema unknown", `<get-schema xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><identifier>nope</identifier></get-schema>`, "invalid-value", "no such schema"},
		// B5: get-data options of features the server does not announce
		// (nc:xpath, origin) are refused, never ignored.
		{"xpath-filter", `<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"><datastore>ds:operational</datastore><xpath-filter>/x</xpath-filter></get-data>`, "unknown-element", "xpath-filter"},
		{"with-origin", `<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"><datastore>ds:operational</datastore><with-origin/></get-data>`, "unknown-element", "with-origin"},
		{"kill self", `<kill-session><session-id>1</session-id></kill-session>`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := do(t, s, tt.op)
			if err != nil {
				t.Fatal(err)
			}
			if tt.tag == "" {
				return
			}
			if len(r.Errors) == 0 || string(r.Errors[0].Tag) != tt.tag || !strings.Contains(r.Errors[0].Message, tt.msg) {
				t.Errorf("reply %s, want rpc-error %s with %q", r.Body, tt.tag, tt.msg)
			}
		})
	}
	// The session survives every error above.
	r, err := do(t, s, `<get><filter type="subtree"><rats-support-structures `+tpmNS+`><tpms/></rats-support-structures></filter></get>`)
	if err != nil || len(r.Errors) > 0 || !strings.Contains(string(r.Body), "<name>tpm0</name>") {
		t.Errorf("get after errors: %v %s", err, r.Body)
	}
}

func TestLogSelectors(t *testing.T) {
	d := startDevice(t)
	s := sshSession(t, d)
	count := func(op string) int {
		r, err := do(t, s, op)
		if err != nil || len(r.Errors) > 0 {
			t.Fatalf("%s: %v %v", op, err, r.Errors)
		}
		return strings.Count(string(r.Body), "<event-number>")
	}
	all := count(`<log-retrieval ` + tpmNS + `><log-type xmlns:tpm="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation">tpm:bios</log-type></log-retrieval>`)
	if all != len(d.Boot.UEFI.Events)+1 {
		t.Errorf("whole bios log: %d entries, want %d", all, len(d.Boot.UEFI.Events)+1)
	}
	after := count(`<log-retrieval ` + tpmNS + `><log-type>tpm:bios</log-type><log-selector><last-index-number>10</last-index-number></log-selector></log-retrieval>`)
	if after != all-11 {
		t.Errorf("after index 10: %d, want %d", after, all-11)
	}
	// last-entry-value: the entries after the one with that digest.
	last := d.Boot.UEFI.Events[len(d.Boot.UEFI.Events)-2].Digests[0].Value
	n := count(`<log-retrieval ` + tpmNS + `><log-type>tpm:bios</log-type><log-selector><last-entry-value>` + b64(last) + `</last-entry-value></log-selector></log-retrieval>`)
	if n != 1 {
		t.Errorf("after the next-to-last entry: %d, want 1", n)
	}
	// timestamp: nothing after now; everything after the epoch.
	if n := count(`<log-retrieval ` + tpmNS + `><log-type>tpm:bios</log-type><log-selector><timestamp>` + time.Now().Add(time.Hour).Format(time.RFC3339) + `</timestamp></log-selector></log-retrieval>`); n != 0 {
		t.Errorf("after a future time: %d entries", n)
	}
	if n := count(`<log-retrieval ` + tpmNS + `><log-type>tpm:bios</log-type><log-selector><timestamp>1970-01-01T00:00:00Z</timestamp><log-entry-quantity>3</log-entry-quantity></log-selector></log-retrieval>`); n != 3 {
		t.Errorf("quantity 3: %d entries", n)
	}
	// name: another TPM's name selects nothing.
	if n := count(`<log-retrieval ` + tpmNS + `><log-type>tpm:bios</log-type><log-selector><name>tpm9</name></log-selector></log-retrieval>`); n != 0 {
		t.Errorf("other TPM name: %d entries", n)
	}
}

func TestTLSAndCertToName(t *testing.T) {
	d := startDevice(t)
	roots := x509.NewCertPool()
	roots.AddCert(d.CA.Cert)
	var peer *x509.Certificate
	cfg := &tls.Config{Certificates: []tls.Certificate{d.ClientCert}, RootCAs: roots, ServerName: "",
		InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			peer, _ = x509.ParseCertificate(raw[0])
			return nil
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr, err := nctls.Dial(ctx, "tcp", d.TLSAddr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := nc.Open(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	r, err := s.Do(ctx, `<get-data xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-nmda" xmlns:ds="urn:ietf:params:xml:ns:yang:ietf-datastores"><datastore>ds:operational</datastore><subtree-filter><yang-library xmlns="urn:ietf:params:xml:ns:yang:ietf-yang-library"/></subtree-filter></get-data>`)
	if err != nil || len(r.Errors) > 0 || !strings.Contains(string(r.Body), "ietf-tpm-remote-attestation") {
		t.Errorf("get-data yang-library over TLS: %v %v %s", err, r.Errors, r.Body)
	}
	// The server certificate is the IDevID.
	if peer == nil || !peer.Equal(d.IDevID) {
		t.Error("TLS server certificate is not the IDevID")
	}
	// No client certificate: refused.
	cfg2 := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	if tr2, err := nctls.Dial(ctx, "tcp", d.TLSAddr, cfg2); err == nil {
		if _, err := nc.Open(tr2); err == nil {
			t.Error("session without a client certificate")
		}
	}
}

func TestNACMDeniesAttestationByDefault(t *testing.T) {
	d := startDevice(t)
	// Replace the permit rule: only reads remain allowed.
	d.Server.SetNACM(nacmDenyAll())
	s := sshSession(t, d)
	r, err := do(t, s, `<log-retrieval `+tpmNS+`><log-type>tpm:bios</log-type></log-retrieval>`)
	if err != nil || len(r.Errors) == 0 || string(r.Errors[0].Tag) != "access-denied" {
		t.Errorf("log-retrieval without a permit: %v %s", err, r.Body)
	}
	r, err = do(t, s, `<get/>`)
	if err != nil || len(r.Errors) > 0 {
		t.Errorf("get without a permit: %v %v", err, r.Errors)
	}
}

// TestHostileInput: an oversized message ends the session, garbage gets
// an error, and a client that never sends its hello is cut off.
func TestHostileInput(t *testing.T) {
	d := startDevice(t)
	d.Server.SetLimits(64<<10, 2*time.Second)
	signer, _ := ssh.NewSignerFromKey(d.SSHClientKey)
	client, err := ssh.Dial("tcp", d.SSHAddr, &ssh.ClientConfig{User: d.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	open := func() (io.WriteCloser, *bufio.Reader) {
		sess, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		w, _ := sess.StdinPipe()
		r, _ := sess.StdoutPipe()
		if err := sess.RequestSubsystem("netconf"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(r)
		readMsg(t, br) // server hello
		return w, br
	}
	// base:1.0 framing, then an oversized message.
	w, br := open()
	fmt.Fprint(w, `<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>]]>]]>`)
	fmt.Fprint(w, `<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><get/></rpc>]]>]]>`)
	if m := readMsg(t, br); !strings.Contains(m, "rats-support-structures") {
		t.Errorf("base:1.0 get: %.200s", m)
	}
	fmt.Fprint(w, `<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="2"><get>`+strings.Repeat("<a/>", 40000)+`</get></rpc>]]>]]>`)
	if m := readMsg(t, br); !strings.Contains(m, "too-big") {
		t.Errorf("oversized message: %.200s", m)
	}
	// Not XML at all.
	w, br = open()
	fmt.Fprint(w, `<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>]]>]]>`)
	fmt.Fprint(w, "\x00\x01not xml<<<]]>]]>")
	if m := readMsg(t, br); !strings.Contains(m, "malformed-message") {
		t.Errorf("garbage: %.200s", m)
	}
	// Silence after the server hello: cut off after the hello timeout.
	_, br = open()
	start := time.Now()
	if _, err := br.ReadByte(); err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("silent client kept for %v (err %v)", time.Since(start), err)
	}
	// The agent still serves new sessions.
	s := sshSession(t, d)
	if r, err := do(t, s, "<get/>"); err != nil || len(r.Errors) > 0 {
		t.Errorf("get after hostile sessions: %v", err)
	}
}

// readMsg reads one end-of-message framed message.
func readMsg(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var b strings.Builder
	for {
		c, err := br.ReadByte()
		if err != nil {
			return b.String()
		}
		b.WriteByte(c)
		if strings.HasSuffix(b.String(), "]]>]]>") {
			return strings.TrimSuffix(b.String(), "]]>]]>")
		}
	}
}

func TestGetSchema(t *testing.T) {
	d := startDevice(t)
	s := sshSession(t, d)
	r, err := do(t, s, `<get-schema xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><identifier>ietf-tpm-remote-attestation</identifier><format>yang</format></get-schema>`)
	if err != nil || len(r.Errors) > 0 || !strings.Contains(string(r.Body), "module ietf-tpm-remote-attestation") {
		t.Errorf("get-schema: %v %v %.200s", err, r.Errors, r.Body)
	}
	r, _ = do(t, s, `<get><filter type="subtree"><netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"/></filter></get>`)
	if !strings.Contains(string(r.Body), "<identifier>ietf-tcg-algs</identifier>") {
		t.Errorf("netconf-state schemas: %.300s", r.Body)
	}
}

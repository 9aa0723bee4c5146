package netconf_test

import (
	"context"
	"errors"
	"time"

	"golang.org/x/crypto/ssh"

	"encoding/base64"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
	"github.com/openriv/riv/pkg/schema"
)

func startDevice(t *testing.T) *device.Device {
	t.Helper()
	d, err := device.Start(context.Background(), device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// needPython returns Debian's python3 when it can import ncclient.
func needPython(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import ncclient").CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3-ncclient not installed: %v %s", err, out)
		}
		t.Skip("python3-ncclient not installed; run make setup")
	}
	return py
}

// yanglint validates NETCONF XML against the official modules, loaded
// as the agent implements them: the modules and features of its schema.
func yanglint(t *testing.T, d *device.Device, args ...string) {
	t.Helper()
	if out, err := yanglintRun(t, d, args...); err != nil {
		t.Errorf("yanglint %v: %v\n%s", args, err, out)
	}
}

func yanglintRun(t *testing.T, d *device.Device, args ...string) (string, error) {
	t.Helper()
	return yanglintSchema(t, d.Server.Schema(), args...)
}

// yanglintSchema runs yanglint with the modules and features implemented
// in set.
func yanglintSchema(t *testing.T, set *schema.Set, args ...string) (string, error) {
	t.Helper()
	bin := testref.NeedTool(t, "yanglint")
	Y := testref.YangDir(t)
	mods := []string{"-p", Y}
	var files []string
	for _, m := range set.Modules() {
		if m.Implemented {
			mods = append(mods, "-F", m.Name+":"+strings.Join(m.Features, ","))
			files = append(files, filepath.Join(Y, m.Name+"@"+m.Revision+".yang"))
		}
	}
	out, err := exec.Command(bin, append(append(args[:len(args):len(args)], mods...), files...)...).CombinedOutput()
	if err == nil && (strings.Contains(string(out), "err :") || strings.Contains(string(out), "[E]")) {
		err = errors.New("yanglint reported errors")
	}
	return string(out), err
}

// dataOf extracts the children of <data> from an rpc-reply.
func dataOf(t *testing.T, reply []byte) []byte {
	t.Helper()
	var r struct {
		Data struct {
			Inner []byte `xml:",innerxml"`
		} `xml:"data"`
	}
	if err := xml.Unmarshal(reply, &r); err != nil {
		t.Fatal(err)
	}
	return r.Data.Inner
}

func TestNcclientInterop(t *testing.T) {
	py := needPython(t)
	d := startDevice(t)
	dir := t.TempDir()
	key, _ := d.SSHPrivateKeyPEM()
	keyFile := filepath.Join(dir, "id")
	os.WriteFile(keyFile, key, 0o600)
	host, port, _ := strings.Cut(d.SSHAddr, ":")
	out, err := exec.Command(py, "testdata/ncclient_session.py", host, port, d.User, keyFile, dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("ncclient: %v\n%s", err, out)
	}
	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// <get>: the operational data (RFC 9684, keystore, YANG library,
	// NETCONF monitoring) validates as a complete datastore.
	oper := filepath.Join(dir, "oper.xml")
	os.WriteFile(oper, dataOf(t, read("get.xml")), 0o600)
	yanglint(t, d, "-t", "data", oper)

	// The challenge reply validates as the RPC's output, and its quote
	// verifies with the IAK from the certificate the agent exposes.
	rpcFile := filepath.Join(dir, "rpc.xml")
	os.WriteFile(rpcFile, []byte(`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="101"><tpm20-challenge-response-attestation xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"><tpm20-attestation-challenge><nonce-value>AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=</nonce-value><tpm20-pcr-selection><tpm20-hash-algo xmlns:taa="urn:ietf:params:xml:ns:yang:ietf-tcg-algs">taa:TPM_ALG_SHA256</tpm20-hash-algo><pcr-index>0</pcr-index></tpm20-pcr-selection></tpm20-attestation-challenge></tpm20-challenge-response-attestation></rpc>`), 0o600)
	replyFile := filepath.Join(dir, "challenge-reply.xml")
	os.WriteFile(replyFile, renumber(read("challenge.xml"), "101"), 0o600)
	yanglint(t, d, "-t", "nc-reply", "-R", rpcFile, "-O", oper, replyFile)

	var resp struct {
		R []struct {
			Cert  string `xml:"certificate-name"`
			Quote string `xml:"quote-data"`
			Sig   string `xml:"quote-signature"`
			PCRs  []struct {
				V []struct {
					I int    `xml:"pcr-index"`
					V string `xml:"pcr-value"`
				} `xml:"pcr-values"`
			} `xml:"unsigned-pcr-values"`
		} `xml:"tpm20-attestation-response"`
	}
	if err := xml.Unmarshal(read("challenge.xml"), &resp); err != nil || len(resp.R) != 1 {
		t.Fatalf("challenge reply: %v %+v", err, resp)
	}
	q, _ := base64.StdEncoding.DecodeString(resp.R[0].Quote)
	s, _ := base64.StdEncoding.DecodeString(resp.R[0].Sig)
	nonce, _ := base64.StdEncoding.DecodeString("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	vals := pcr.Values{}
	for _, v := range resp.R[0].PCRs[0].V {
		b, _ := base64.StdEncoding.DecodeString(v.V)
		vals.Set(alg.SHA256, v.I, b)
	}
	if _, err := quote.Verify(d.IAK.PublicKey, q, s, quote.Options{Nonce: nonce, PCRs: vals}); err != nil {
		t.Errorf("quote fetched over NETCONF: %v", err)
	}

	for _, lt := range []string{"bios", "netequip_boot"} {
		f := filepath.Join(dir, "logs-"+lt+".xml")
		rpc := filepath.Join(dir, "rpc-"+lt+".xml")
		os.WriteFile(rpc, []byte(`<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="101"><log-retrieval xmlns="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"><log-type xmlns:tpm="urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation">tpm:`+lt+`</log-type></log-retrieval></rpc>`), 0o600)
		os.WriteFile(f, renumber(read("logs-"+lt+".xml"), "101"), 0o600)
		yanglint(t, d, "-t", "nc-reply", "-R", rpc, "-O", oper, f)
		if n := strings.Count(string(read("logs-"+lt+".xml")), "<event-number>"); n != 5 {
			t.Errorf("%s: %d entries, want the 5 asked for", lt, n)
		}
	}
	if e := string(read("error.txt")); !strings.Contains(e, "This platform does not support tpm20-hash-algo") {
		t.Errorf("unsupported bank error = %q", e)
	}
}

// renumber sets the reply's message-id (ncclient uses UUIDs; yanglint
// pairs reply and request by it).
func renumber(b []byte, id string) []byte {
	s := string(b)
	i := strings.Index(s, `message-id="`)
	if i < 0 {
		return b
	}
	j := strings.Index(s[i+12:], `"`)
	return []byte(s[:i+12] + id + s[i+12+j:])
}

func TestYangcliInterop(t *testing.T) {
	yc := testref.NeedTool(t, "yangcli")
	d := startDevice(t)
	dir := t.TempDir()
	key, _ := d.SSHPrivateKeyPEM()
	pub, _ := ssh.NewPublicKey(d.SSHClientKey.Public())
	os.WriteFile(filepath.Join(dir, "id"), key, 0o600)
	os.WriteFile(filepath.Join(dir, "id.pub"), ssh.MarshalAuthorizedKey(pub), 0o600)
	host, port, _ := strings.Cut(d.SSHAddr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, yc, "--server="+host, "--ncport="+port, "--user="+d.User,
		"--private-key="+filepath.Join(dir, "id"), "--public-key="+filepath.Join(dir, "id.pub"),
		"--batch-mode", "--run-command=get", "--modpath="+testref.YangDir(t))
	// yangcli 2.13 ships 2022 drafts of ietf-keystore and crypto-types and
	// crashes (SIGSEGV) when it fetches the RFC 9642 revisions with
	// <get-schema>; given the official modules on its path, as an
	// operator's workstation has them, it loads them and runs.
	cmd.Dir = dir // yangcli writes its history and logs to the working directory
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rats-support-structures") || !strings.Contains(string(out), "tpm0") {
		t.Errorf("yangcli get: %v\n%s", err, out)
	}
}

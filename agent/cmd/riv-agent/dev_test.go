package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDevEndpoints runs `riv-agent dev` and checks the endpoints.json
// contract of DESIGN.md §4: the names, absolute paths to files that
// exist, and servers that answer at the addresses given.
func TestDevEndpoints(t *testing.T) {
	dir := t.TempDir()
	done := make(chan error, 1)
	go func() { done <- app.Exec([]string{"dev", "--dir", dir, "--serial", "RTR-DEV"}, io.Discard, io.Discard) }()
	var ep map[string]string
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "endpoints.json"))
		if err == nil {
			if err := json.Unmarshal(b, &ep); err != nil {
				t.Fatalf("endpoints.json: %v\n%s", err, b)
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("dev exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no endpoints.json after 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer func() {
		syscall.Kill(os.Getpid(), syscall.SIGTERM) // caught by dev's signal context
		if err := <-done; err != nil {
			t.Errorf("dev: %v", err)
		}
	}()
	for _, k := range []string{"netconf_ssh", "netconf_tls", "restconf", "ssh_user", "ssh_private_key", "tls_client_cert", "tls_client_key", "trust_anchors", "rim_signer",
		"snmp", "snmp_user", "snmp_auth_protocol", "snmp_auth_key", "snmp_priv_protocol", "snmp_priv_key"} {
		if ep[k] == "" {
			t.Errorf("endpoints.json has no %q", k)
		}
	}
	for _, k := range []string{"ssh_private_key", "tls_client_cert", "tls_client_key", "trust_anchors", "rim_signer"} {
		if !filepath.IsAbs(ep[k]) {
			t.Errorf("%s = %q is not absolute", k, ep[k])
		} else if _, err := os.Stat(ep[k]); err != nil {
			t.Error(err)
		}
	}
	// F.8: a second dev on the directory in use is refused before it
	// writes anything; the running device's files stay as they were.
	keyBefore, _ := os.ReadFile(ep["ssh_private_key"])
	var errb strings.Builder
	if code := app.Run([]string{"dev", "--dir", dir, "--serial", "RTR-OTHER"}, io.Discard, &errb); code != 2 || !strings.Contains(errb.String(), "is in use by another riv-agent dev (pid ") {
		t.Errorf("second dev on %s: exit %d, %q", dir, code, errb.String())
	}
	if keyAfter, _ := os.ReadFile(ep["ssh_private_key"]); string(keyAfter) != string(keyBefore) {
		t.Error("the second dev overwrote the running device's SSH key")
	}
	if !strings.HasPrefix(ep["restconf"], "https://127.0.0.1:") {
		t.Fatalf("restconf = %q", ep["restconf"])
	}
	cert, err := tls.LoadX509KeyPair(ep["tls_client_cert"], ep["tls_client_key"])
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}}}
	resp, err := c.Get(ep["restconf"] + "/restconf/yang-library-version")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "2019-01-04") {
		t.Errorf("RESTCONF at %s: %d %s", ep["restconf"], resp.StatusCode, b)
	}
}

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openriv/riv/collector/verifier"
)

// TestRivctlCollector: rivctl against riv-collector dev polling two real
// routers (one with a tampered kernel) — devices, device show, history,
// attest --all and rim upload, by collector.json and by URL and token
// file, with --json, and the exit codes: 0 affirming, 1 evidence failed,
// 2 refused (role, unknown device), 3 collector unreachable.
func TestRivctlCollector(t *testing.T) {
	clean := startRouter(t, "--serial", "RTR-CTL1")
	bad := startRouter(t, "--serial", "RTR-CTL2", "--attack", "tampered-kernel")
	dir := t.TempDir()
	c := startCollector(t, dir, filepath.Join(clean, "endpoints.json"), filepath.Join(bad, "endpoints.json"))
	before := c.devices(t, 2)
	cj := filepath.Join(dir, "collector.json")
	roTok := filepath.Join(t.TempDir(), "ro.token")
	os.WriteFile(roTok, []byte(c.ReadonlyToken+"\n"), 0o600)

	rivctl := func(wantCode int, args ...string) string {
		t.Helper()
		code, out, errs := runBin(t, "rivctl", args...)
		if code != wantCode {
			t.Fatalf("rivctl %v: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, wantCode, out, errs)
		}
		if code != 0 && strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("rivctl %v: stderr is not one line: %q", args, errs)
		}
		return out + errs
	}
	line := func(out, name string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, name+" ") {
				return l
			}
		}
		t.Fatalf("no line for %s in\n%s", name, out)
		return ""
	}

	// devices: a table; the worst verdict sets the exit code.
	out := rivctl(1, "devices", "--collector", cj)
	if !strings.HasPrefix(out, "NAME") || !strings.Contains(line(out, "RTR-CTL1"), "AFFIRMING") || !strings.Contains(line(out, "RTR-CTL2"), "CONTRAINDICATED") {
		t.Errorf("devices:\n%s", out)
	}
	out = rivctl(0, "devices", "--collector", c.URL, "--token", roTok, "--status", "affirming")
	if !strings.Contains(out, "RTR-CTL1") || strings.Contains(out, "RTR-CTL2") {
		t.Errorf("devices --status affirming:\n%s", out)
	}
	out = rivctl(1, "devices", "--collector", c.URL, "--token", roTok, "--json")
	var got []struct{ Name, Status string }
	for _, l := range strings.Split(out, "\n") {
		var d struct{ Name, Status string }
		if json.Unmarshal([]byte(l), &d) == nil && d.Name != "" {
			got = append(got, d)
		}
	}
	if len(got) != 2 || got[0].Name != "RTR-CTL1" || got[0].Status != "affirming" || got[1].Status != "contraindicated" {
		t.Errorf("devices --json: %+v\n%s", got, out)
	}

	// device show: the reasons in full.
	out = rivctl(1, "device", "show", "--collector", cj, "RTR-CTL2")
	if !strings.Contains(out, "CONTRAINDICATED") || !strings.Contains(out, "vmlinuz") || !strings.Contains(out, "PCR 4") {
		t.Errorf("device show RTR-CTL2:\n%s", out)
	}
	if out = rivctl(0, "device", "show", "--collector", cj, "RTR-CTL1"); !strings.Contains(out, "AFFIRMING") {
		t.Errorf("device show RTR-CTL1:\n%s", out)
	}
	if out = rivctl(2, "device", "show", "--collector", cj, "RTR-NONE"); !strings.Contains(out, "404") {
		t.Errorf("device show of an unknown device: %s", out)
	}

	// attest --all: each device re-attested now, a line each.
	out = rivctl(1, "attest", "--all", "--collector", cj)
	if !strings.Contains(line(out, "RTR-CTL1"), "AFFIRMING") || !strings.Contains(line(out, "RTR-CTL2"), "CONTRAINDICATED") {
		t.Errorf("attest --all:\n%s", out)
	}
	after := c.devices(t, 2)
	for name, d := range after {
		if d.Polls <= before[name].Polls {
			t.Errorf("%s: %d polls after attest --all, %d before", name, d.Polls, before[name].Polls)
		}
	}
	// On a terminal (script(1) gives it one) the same run draws a
	// progress bar on stderr; above, without one, there was none.
	if strings.Contains(out, "\x1b[K") {
		t.Errorf("attest --all drew progress without a terminal:\n%q", out)
	}
	tty, err := exec.Command("script", "-qfec", strings.Join([]string{bin(t, "rivctl"), "attest", "--all", "--collector", cj}, " "), "/dev/null").CombinedOutput()
	if s := string(tty); !strings.Contains(s, "\x1b[K[") || !strings.Contains(s, "] 1/2") || !strings.Contains(s, "RTR-CTL2 (serial RTR-CTL2): CONTRAINDICATED") {
		t.Errorf("attest --all on a terminal (%v):\n%q", err, s)
	}
	// The read-only token cannot act.
	if out = rivctl(2, "attest", "--collector", c.URL, "--token", roTok, "RTR-CTL1"); !strings.Contains(out, "403") {
		t.Errorf("attest with the read-only token: %s", out)
	}

	// history: the on-demand attestation superseded what came before.
	out = rivctl(0, "history", "--collector", cj, "RTR-CTL1")
	if !strings.HasPrefix(out, "ID") || strings.Count(out, "AFFIRMING") < 2 || !strings.Contains(out, "superseded: re-attested on demand") {
		t.Errorf("history:\n%s", out)
	}

	// rim upload: the router's RIMs are accepted; a damaged one is
	// rejected (exit 1) and named.
	ep, err := verifier.ReadEndpoints(filepath.Join(clean, "endpoints.json"))
	if err != nil {
		t.Fatal(err)
	}
	out = rivctl(0, "rim", "upload", "--collector", cj, ep.RIMs)
	if !strings.Contains(out, "accepted by") || strings.Contains(out, "REJECTED") {
		t.Errorf("rim upload:\n%s", out)
	}
	ents, _ := filepath.Glob(filepath.Join(ep.RIMs, "*.cose"))
	if len(ents) == 0 {
		t.Fatalf("no signed RIMs in %s", ep.RIMs)
	}
	raw, _ := os.ReadFile(ents[0])
	raw[len(raw)-1] ^= 1 // the signature
	damaged := filepath.Join(t.TempDir(), "damaged.cose")
	os.WriteFile(damaged, raw, 0o600)
	if out = rivctl(1, "rim", "upload", "--collector", cj, damaged); !strings.Contains(out, "REJECTED") {
		t.Errorf("rim upload of a damaged RIM:\n%s", out)
	}

	// A collector that is not there, and no collector at all.
	rivctl(3, "devices", "--collector", "http://127.0.0.1:1", "--token", roTok)
	os.Unsetenv("RIV_COLLECTOR")
	rivctl(2, "devices")
}

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openriv/riv/testbed/fleetsim"
)

// startFleetsim runs riv-fleetsim in dir and returns its fleetsim.json.
func startFleetsim(t testing.TB, dir string, args ...string) fleetsim.Info {
	t.Helper()
	_, info := runFleetsim(t, dir, args...)
	return info
}

// runFleetsim is startFleetsim that also returns the process.
func runFleetsim(t testing.TB, dir string, args ...string) (*exec.Cmd, fleetsim.Info) {
	t.Helper()
	cmd, b := startUntil(t, filepath.Join(dir, "fleetsim.json"), "riv-fleetsim", append([]string{"--dir", dir}, args...)...)
	var info fleetsim.Info
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	return cmd, info
}

// fleetConfig writes a collector's configuration (serveConfig's, and
// extra) for the simulated fleet of info: its anchors, RIMs and
// inventory.
func fleetConfig(t testing.TB, dir string, p *pki, info fleetsim.Info, extra string) string {
	t.Helper()
	inv, err := os.ReadFile(info.DevicesYAML)
	if err != nil {
		t.Fatal(err)
	}
	cfg := serveConfig(t, dir, p, nil)
	b, _ := os.ReadFile(cfg)
	text := strings.Replace(string(b), "  manufacturers: []\n  rim_signers: []", "  manufacturers: ["+info.ManufacturerCA+"]\n  rim_signers: ["+info.RIMSignerCA+"]", 1)
	text = strings.Replace(text, "poll: {interval: 2s, timeout: 10s}", "poll: {interval: 2s, timeout: 10s}\nrims: {dirs: ["+info.RIMs+"]}\n"+extra, 1)
	for _, line := range strings.Split(strings.TrimSpace(string(inv)), "\n") {
		text += "  " + line + "\n"
	}
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// checkSimVerdicts checks a simulated fleet's verdicts: affirming, but
// for the tampered devices, which show the unsigned binary.
func checkSimVerdicts(t *testing.T, devs map[string]apiDevice, tampered int) {
	t.Helper()
	bad := 0
	for name, d := range devs {
		switch {
		case d.Status == "affirming":
		case strings.Contains(strings.Join(d.Reasons, "\n"), "/tmp/.x/implant"):
			bad++
		default:
			t.Errorf("%s: %s %q", name, d.Status, d.Reasons)
		}
	}
	if bad != tampered {
		t.Errorf("%d devices show the unsigned binary, want %d", bad, tampered)
	}
}

// TestFleetsimUnderCollector: riv-collector serve polls a simulated fleet
// over NETCONF-TLS, each device on its own loopback address, with the
// inventory riv-fleetsim wrote: the clean devices affirm, the tampered
// ones do not, and the logs that grow are polled incrementally.
func TestFleetsimUnderCollector(t *testing.T) {
	const n, tampered = 40, 3
	dir := t.TempDir()
	info := startFleetsim(t, filepath.Join(dir, "fleet"), "--devices", "40", "--tamper", "3", "--grow", "2", "--every", "500ms", "--duration", "10m")
	if info.Devices != n || info.First != "127.1.0.1:6513" || info.Last != "127.1.0.40:6513" {
		t.Fatalf("fleetsim.json: %+v", info)
	}
	p := newPKI(t, dir)
	c := startServe(t, dir, fleetConfig(t, dir, p, info, ""), p)
	checkSimVerdicts(t, c.devices(t, n), tampered)
	// Their logs grow between polls: later polls fetch only what is new.
	time.Sleep(5 * time.Second)
	h := c.history(t, "sim-000000")
	if len(h) < 2 {
		t.Fatalf("sim-000000 polled %d times in 5 s", len(h))
	}
	incremental := false
	for _, e := range h {
		lem := logsUsed(t, e.EAR)
		incremental = incremental || lem["bios"] == "kept" && strings.Contains(lem["netequip_boot"], " new from ")
	}
	if !incremental {
		t.Errorf("no poll of sim-000000 kept the boot log and fetched only new netequip_boot entries: %d polls, latest %v", len(h), logsUsed(t, h[0].EAR))
	}
}

// TestFleetsimBounds: riv-fleetsim refuses what it cannot bound.
func TestFleetsimBounds(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--devices", "0"}, {"--devices", "100001"}, {"--devices", "2", "--duration", "25h"}, {"--devices", "2", "--base", "192.0.2.1"},
		{"--devices", "2", "--tamper", "3"}, {"--devices", "2", "--port", "0"},
	} {
		code, _, errs := runBin(t, "riv-fleetsim", append([]string{"--dir", dir}, args...)...)
		if code != 2 || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("riv-fleetsim %v: exit %d, stderr %q", args, code, errs)
		}
	}
}

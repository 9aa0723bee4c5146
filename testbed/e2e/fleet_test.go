package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type historyEntry struct {
	ID         int64    `json:"id"`
	Status     string   `json:"status"`
	Reasons    []string `json:"reasons"`
	Rebooted   bool     `json:"rebooted"`
	Superseded string   `json:"superseded"`
	EAR        string   `json:"ear"`
}

func (c *collector) history(t *testing.T, name string) []historyEntry {
	t.Helper()
	code, b := c.call(t, "GET", "/api/v1/devices/"+name+"/history?limit=10000", c.ReadonlyToken)
	var h struct{ History []historyEntry }
	if code != 200 || json.Unmarshal(b, &h) != nil {
		t.Fatalf("history of %s: %d %s", name, code, b)
	}
	return h.History
}

// logsUsed reads the log entries an EAR's attestation-set claims say the
// appraisal used: per log, whether it was kept, how many entries were new
// and the first one's position.
func logsUsed(t testing.TB, tok string) map[string]string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", tok)
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		Submods map[string]struct {
			AE struct {
				Set struct {
					LEM []struct {
						Log   string
						First *int
						Count int
						Kept  bool
					}
				} `json:"riv.attestation-set"`
			} `json:"ear.veraison.annotated-evidence"`
		} `json:"submods"`
	}
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, sm := range claims.Submods {
		for _, l := range sm.AE.Set.LEM {
			switch {
			case l.Kept:
				out[l.Log] = "kept"
			case l.Count == 0:
				out[l.Log] = "none new"
			case *l.First <= 1:
				out[l.Log] = fmt.Sprintf("whole (%d)", l.Count)
			default:
				out[l.Log] = fmt.Sprintf("%d new from %d", l.Count, *l.First)
			}
		}
	}
	return out
}

// TestFleet runs 20 routers (each its own swtpm and riv-agent serve)
// under riv-collector serve, through a runtime tamper, a reboot, an agent
// outage and a collector killed with SIGKILL mid-round: no result the API
// showed is lost, every history is what happened, and after the restart
// the polls continue where they stopped — no log fetched whole again.
func TestFleet(t *testing.T) {
	const n = 20
	t0 := time.Now()
	waits := make([]func() string, n)
	for i := range waits {
		waits[i] = launchRouter(t, "--serial", fmt.Sprintf("RTR-F%02d", i))
	}
	dirs := make([]string, n)
	var items []string
	for i, w := range waits {
		dirs[i] = w()
		items = append(items, "{endpoints: "+filepath.Join(dirs[i], "endpoints.json")+"}")
	}
	t.Logf("%d routers up in %v", n, time.Since(t0).Round(time.Millisecond))
	dir := t.TempDir()
	p := newPKI(t, dir)
	cfg := serveConfig(t, dir, p, dirs, items...)
	c := startServe(t, dir, cfg, p)
	devs := c.devices(t, n)
	for name, d := range devs {
		if d.Status != "affirming" {
			t.Errorf("%s: %s %v", name, d.Status, d.Reasons)
		}
	}
	t.Logf("fleet appraised %v after the routers were up", time.Since(t0).Round(time.Millisecond))

	// A runtime tamper, a reboot, an agent outage.
	tampered, rebooted, outage := "RTR-F03", "RTR-F05", "RTR-F07"
	measure(t, dirs[3], "/usr/local/sbin/backdoor", "#!/bin/sh\necho pwned\n")
	if code, out, errs := runBin(t, "riv-router", "reboot", "--dir", dirs[5]); code != 0 {
		t.Fatalf("reboot: %d %s %s", code, out, errs)
	}
	agent := readRouterState(t, dirs[7]).AgentPID
	syscall.Kill(agent, syscall.SIGSTOP)
	wait := func(what string, ok func(map[string]apiDevice) bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			code, b := c.call(t, "GET", "/api/v1/devices", c.ReadonlyToken)
			var v struct{ Devices []apiDevice }
			if code != 200 || json.Unmarshal(b, &v) != nil {
				t.Fatalf("GET /devices: %d %s", code, b)
			}
			m := map[string]apiDevice{}
			for _, d := range v.Devices {
				m[d.Name] = d
			}
			if ok(m) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60 s: %s", what, b)
			}
		}
	}
	wait("tamper seen, outage seen", func(m map[string]apiDevice) bool {
		return m[tampered].Status == "warning" && m[outage].State == "unreachable"
	})
	syscall.Kill(agent, syscall.SIGCONT)
	wait("outage over, reboot re-attested", func(m map[string]apiDevice) bool {
		if m[outage].State != "appraised" {
			return false
		}
		for _, h := range c.history(t, rebooted) {
			if h.Rebooted {
				return true
			}
		}
		return false
	})

	// SIGKILL while polls are in flight (20 devices every 2 s).
	before := map[string][]historyEntry{}
	for i := range n {
		name := fmt.Sprintf("RTR-F%02d", i)
		before[name] = c.history(t, name)
	}
	c.cmd.Process.Kill()
	c.cmd.Wait()
	restart := time.Now()
	c2 := startServe(t, dir, cfg, p)
	t.Logf("restarted, serving after %v", time.Since(restart).Round(time.Millisecond))
	// Every device polled again after the restart.
	for i := range n {
		name := fmt.Sprintf("RTR-F%02d", i)
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			h := c2.history(t, name)
			if len(h) > 0 && h[0].ID > maxID(before) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no poll within 60 s of the restart", name)
			}
		}
	}
	for name, old := range before {
		h := c2.history(t, name)
		kept := map[int64]bool{}
		for _, e := range h {
			kept[e.ID] = true
		}
		for _, e := range old {
			if !kept[e.ID] {
				t.Errorf("%s: result %d (%s), shown before the kill, is lost", name, e.ID, e.Status)
			}
		}
		// The first poll after the restart continued where the last
		// one stopped.
		var first *historyEntry
		for i := range h {
			if h[i].ID > maxID(before) {
				first = &h[i]
			}
		}
		used := logsUsed(t, first.EAR)
		if used["bios"] != "kept" || len(used) < 2 {
			t.Errorf("%s: first poll after the restart used %v, want the kept boot log and the run-time log", name, used)
		}
		for log, how := range used {
			if strings.HasPrefix(how, "whole") {
				t.Errorf("%s: first poll after the restart fetched the %s log whole: %v", name, log, used)
			}
		}
		want := "affirming"
		if name == tampered {
			want = "warning"
		}
		if h[0].Status != want {
			t.Errorf("%s after the restart: %s, want %s; %v", name, h[0].Status, want, h[0].Reasons)
		}
		for _, e := range h {
			switch {
			case e.Status == "affirming":
			case name == tampered && e.Status == "warning" && strings.Contains(strings.Join(e.Reasons, "\n"), "/usr/local/sbin/backdoor"):
			default:
				t.Errorf("%s: history holds %s %v", name, e.Status, e.Reasons)
			}
		}
	}
	// The reboot: one re-attestation, the results before it superseded.
	h := c2.history(t, rebooted)
	reboots := 0
	for i, e := range h {
		if e.Rebooted {
			reboots++
			for _, old := range h[i+1:] {
				if !strings.Contains(old.Superseded, "rebooted") {
					t.Errorf("%s: result %d before the reboot not superseded: %q", rebooted, old.ID, old.Superseded)
				}
			}
		}
	}
	if reboots != 1 {
		t.Errorf("%s: %d results marked rebooted, want 1", rebooted, reboots)
	}
	// The tampered router's history: affirming, then warnings from the
	// tamper on, never back to affirming.
	th := c2.history(t, tampered)
	tamperSeen := false
	for i := len(th) - 1; i >= 0; i-- { // oldest first
		switch {
		case th[i].Status == "warning":
			tamperSeen = true
		case tamperSeen:
			t.Errorf("%s: %s again after the tamper (result %d)", tampered, th[i].Status, th[i].ID)
		}
	}
	if th[len(th)-1].Status != "affirming" {
		t.Errorf("%s: first result %s, want affirming (before the tamper)", tampered, th[len(th)-1].Status)
	}
	t.Logf("fleet test %v", time.Since(t0).Round(time.Millisecond))
}

func maxID(m map[string][]historyEntry) int64 {
	var id int64
	for _, h := range m {
		for _, e := range h {
			id = max(id, e.ID)
		}
	}
	return id
}

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var updateLayout = flag.Bool("update", false, "rewrite the dashboard's layout golden files")

// artifacts is where the browser tests leave their screenshots
// ($RIV_ARTIFACTS, else testbed/e2e/artifacts).
func artifacts(t *testing.T) string {
	dir := os.Getenv("RIV_ARTIFACTS")
	if dir == "" {
		dir, _ = filepath.Abs("artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser starts headless Debian chromium with a window of w×h.
func browser(t *testing.T, w, h int) (context.Context, context.CancelFunc) {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium: %v (make setup installs it)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(w, h), chromedp.Flag("hide-scrollbars", true), chromedp.Flag("force-device-scale-factor", "1"))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
	return ctx, func() { cancelT(); cancel(); cancelAlloc() }
}

type row struct{ Device, Verdict string }

// rows reads the overview's device table.
func rows(ctx context.Context) ([]row, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[[]row](`[...document.querySelectorAll("#devices tbody tr")].map(r => ({Device: r.dataset.device, Verdict: r.dataset.verdict}))`))
}

// TestDashboard: the collector's dashboard in headless chromium, on
// riv-collector dev polling real routers (clean, tampered kernel, an
// unknown binary): the overview lists them with their verdicts, the
// tampered router's page names the PCR and the event beside its
// reference value and verifies the EAR, a verdict change reaches the open
// page without a reload, and the layout at 1280×800 and on a phone
// matches its golden file within a tolerance.
func TestDashboard(t *testing.T) {
	clean := startRouter(t, "--serial", "RTR-WEB1")
	bad := startRouter(t, "--serial", "RTR-WEB2", "--attack", "tampered-kernel")
	miner := startRouter(t, "--serial", "RTR-WEB3", "--attack", "unknown-binary")
	dir := t.TempDir()
	var eps []string
	for _, r := range []string{clean, bad, miner} {
		eps = append(eps, filepath.Join(r, "endpoints.json"))
	}
	c := startCollector(t, dir, append([]string{"--interval", "3s"}, eps...)...)
	c.devices(t, 3)
	out := artifacts(t)

	ctx, cancel := browser(t, 1280, 800)
	defer cancel()
	want := map[string]string{"RTR-WEB1": "affirming", "RTR-WEB2": "contraindicated", "RTR-WEB3": "warning"}
	if err := chromedp.Do(ctx, chromedp.Navigate(c.URL+"/"), chromedp.WaitVisible(`#devices tbody tr`)); err != nil {
		t.Fatal(err)
	}
	got, err := rows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(verdicts(got)) != fmt.Sprint(want) {
		t.Errorf("overview: %v, want %v", got, want)
	}
	shot(t, ctx, filepath.Join(out, "dashboard-overview-1280x800.png"), "overview-1280x800")
	accessible(t, ctx, "overview")

	// Search and filter.
	if err := chromedp.Do(ctx, chromedp.SendKeys(`#q`, "web3")); err != nil {
		t.Fatal(err)
	}
	if got, _ := rows(ctx); len(got) != 1 || got[0].Device != "RTR-WEB3" {
		t.Errorf("search web3: %v", got)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const q = document.getElementById("q"); q.value = ""; q.dispatchEvent(new Event("input"));
		const s = document.getElementById("status"); s.value = "contraindicated"; s.dispatchEvent(new Event("change")); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	if got, _ := rows(ctx); len(got) != 1 || got[0].Device != "RTR-WEB2" {
		t.Errorf("verdict contraindicated: %v", got)
	}

	// The keyboard reaches a device: its link focused, Enter opens it.
	if err := chromedp.Do(ctx, chromedp.Focus(`#devices tbody tr[data-device="RTR-WEB2"] a`), chromedp.KeyEvent("\r"), chromedp.WaitVisible(`#reasons`)); err != nil {
		t.Fatalf("keyboard: %v", err)
	}
	accessible(t, ctx, "device page")

	// The tampered router's page: the PCR, the event and its reference.
	if err := chromedp.Do(ctx, chromedp.Navigate(c.URL+"/#/device/RTR-WEB2"), chromedp.WaitVisible(`#reasons`), chromedp.WaitVisible(`#ear-status strong`)); err != nil {
		t.Fatal(err)
	}
	reasons, err := chromedp.Run(ctx, chromedp.Text(`#reasons`))
	if err != nil {
		t.Fatal(err)
	}
	earStatus, _ := chromedp.Run(ctx, chromedp.Text(`#ear-status`))
	boot, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#reasons [data-kind="boot-event"]').length`))
	for _, w := range []string{"PCR 4", "vmlinuz", "reference"} {
		if !strings.Contains(reasons, w) {
			t.Errorf("the tampered router's reasons lack %q:\n%s", w, reasons)
		}
	}
	if boot == 0 {
		t.Errorf("no boot event laid out beside its reference value:\n%s", reasons)
	}
	if !strings.Contains(earStatus, "verified") {
		t.Errorf("EAR status %q, want verified", earStatus)
	}
	shot(t, ctx, filepath.Join(out, "dashboard-tampered-1280x800.png"), "tampered-1280x800")

	// The clean router's page: its software and which of it signed RIMs
	// cover.
	if err := chromedp.Do(ctx, chromedp.Navigate(c.URL+"/#/device/RTR-WEB1"), chromedp.WaitVisible(`#coverage`)); err != nil {
		t.Fatal(err)
	}
	cov, _ := chromedp.Run(ctx, chromedp.Text(`#coverage`))
	signed, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#inventory tbody tr[data-signed="true"]').length`))
	if signed == 0 || !strings.Contains(cov, "have a signed RIM") {
		t.Errorf("inventory: %q, %d components with a signed RIM", cov, signed)
	}

	// The miner's page: the unknown file with its path and hash.
	if err := chromedp.Do(ctx, chromedp.Navigate(c.URL+"/#/device/RTR-WEB3"), chromedp.WaitVisible(`#reasons [data-kind="unknown-file"]`)); err != nil {
		t.Fatal(err)
	}
	file, err := chromedp.Run(ctx, chromedp.Text(`#reasons [data-kind="unknown-file"]`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(file, "/tmp/.cache/xmrig") || !strings.Contains(file, "sha256") {
		t.Errorf("unknown file shown as %q", file)
	}

	// A verdict change reaches the open overview without a reload: the
	// clean router runs a binary no RIM covers.
	if err := chromedp.Do(ctx, chromedp.Navigate(c.URL+"/"), chromedp.WaitVisible(`#devices tbody tr`)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__notReloaded = true`)); err != nil {
		t.Fatal(err)
	}
	implant := filepath.Join(t.TempDir(), "implant")
	os.WriteFile(implant, []byte("not from the vendor"), 0o755)
	if code, o, e := runBin(t, "riv-router", "measure", "--dir", clean, "--as", "/usr/local/bin/implant", implant); code != 0 {
		t.Fatalf("riv-router measure: %d %s %s", code, o, e)
	}
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		got, err := rows(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if verdicts(got)["RTR-WEB1"] == "warning" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the open page still shows %v 45 s after the change", got)
		}
	}
	if same, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__notReloaded === true`)); err != nil || !same {
		t.Errorf("the page was reloaded (%v)", err)
	}

	// On a phone.
	pctx, pcancel := browser(t, 390, 844)
	defer pcancel()
	// A phone's viewport, 390 CSS pixels wide (a window cannot be that
	// narrow).
	if err := chromedp.Do(pctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(1)),
		chromedp.Navigate(c.URL+"/"), chromedp.WaitVisible(`#devices tbody tr`)); err != nil {
		t.Fatal(err)
	}
	if overflow, err := chromedp.Run(pctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)); err != nil || overflow {
		t.Error("the overview is wider than a phone's screen")
	}
	shot(t, pctx, filepath.Join(out, "dashboard-overview-phone.png"), "overview-phone")
}

// accessible checks what a screen reader and a keyboard need of the page
// as it is: a language, one h1, a label for every control, a header row
// of scoped cells and a caption for every table, verdicts in words, and
// text contrast of at least 4.5:1 (WCAG AA).
func accessible(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	problems, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(() => {
		const p = [];
		if (!document.documentElement.lang) p.push("no lang on <html>");
		if (document.querySelectorAll("h1").length !== 1) p.push(document.querySelectorAll("h1").length + " h1 elements");
		for (const c of document.querySelectorAll("input, select, textarea"))
			if (!c.labels || c.labels.length === 0) p.push("a control without a label: " + (c.id || c.name));
		for (const tb of document.querySelectorAll("table")) {
			if (!tb.querySelector("caption")) p.push("a table without a caption: " + (tb.id || "?"));
			for (const th of tb.querySelectorAll("th")) if (!th.getAttribute("scope")) p.push("a th without scope in " + (tb.id || "?"));
		}
		for (const b of document.querySelectorAll(".badge")) if (!b.textContent.trim()) p.push("a verdict shown only by colour");
		// WCAG AA: text at least 4.5:1 against its background (the
		// nearest one set), for every element with text of its own.
		const lum = (c) => { const v = c.match(/[\d.]+/g).slice(0, 3).map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
			return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
		const bg = (e) => { for (; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor; if (c && !/rgba\(.*, 0\)$/.test(c) && c !== "transparent") return c; } return "rgb(255, 255, 255)"; };
		for (const e of document.querySelectorAll("body *")) {
			if (![...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()) || !e.getClientRects().length) continue;
			const a = lum(getComputedStyle(e).color), b = lum(bg(e));
			const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
			if (ratio < 4.5) p.push("contrast " + ratio.toFixed(2) + ":1 for " + e.tagName.toLowerCase() + " " + JSON.stringify(e.textContent.trim().slice(0, 30)));
		}
		return p;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", what, p)
	}
}

func verdicts(rs []row) map[string]string {
	m := map[string]string{}
	for _, r := range rs {
		m[r.Device] = r.Verdict
	}
	return m
}

// shot saves a screenshot of the viewport to file and compares its
// layout with testdata/layout/NAME.json: the page as a grid of cells,
// each its share of ink, within a tolerance (text, hashes and times
// differ between runs; where the blocks of the page sit does not).
func shot(t *testing.T, ctx context.Context, file, name string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Sleep(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(buf))
	if err != nil {
		t.Fatal(err)
	}
	grid := inkGrid(img, 24, 32)
	golden := filepath.Join("testdata", "layout", name+".json")
	if *updateLayout {
		os.MkdirAll(filepath.Dir(golden), 0o755)
		b, _ := json.Marshal(grid)
		if err := os.WriteFile(golden, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	raw, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -run TestDashboard ./testbed/e2e -update writes it)", err)
	}
	var want [][]float64
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	off := 0
	for y := range want {
		for x := range want[y] {
			if y >= len(grid) || x >= len(grid[y]) || math.Abs(grid[y][x]-want[y][x]) > 0.04 {
				off++
			}
		}
	}
	// A few cells move with the data (a longer reason, one row more).
	t.Logf("%s: %d of %d cells differ from the golden layout", name, off, len(want)*len(want[0]))
	if cells := len(want) * len(want[0]); off > cells/15 {
		t.Errorf("%s: %d of %d cells differ from the golden layout (screenshot %s)", name, off, cells, file)
	}
}

// inkGrid is img as rows×cols cells, each the fraction of its pixels
// that are not near-white (text, borders, badges, panels): where the
// page's blocks sit, whatever the text says.
func inkGrid(img image.Image, rows, cols int) [][]float64 {
	b := img.Bounds()
	out := make([][]float64, rows)
	for gy := range rows {
		out[gy] = make([]float64, cols)
		for gx := range cols {
			ink, n := 0, 0
			for y := b.Min.Y + gy*b.Dy()/rows; y < b.Min.Y+(gy+1)*b.Dy()/rows; y++ {
				for x := b.Min.X + gx*b.Dx()/cols; x < b.Min.X+(gx+1)*b.Dx()/cols; x++ {
					r, g, bl, _ := img.At(x, y).RGBA()
					if (0.2126*float64(r)+0.7152*float64(g)+0.0722*float64(bl))/65535 < 0.93 {
						ink++
					}
					n++
				}
			}
			if n > 0 {
				out[gy][gx] = math.Round(float64(ink)/float64(n)*1000) / 1000
			}
		}
	}
	return out
}

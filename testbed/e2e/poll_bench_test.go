package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/agent/sim/device"
	"github.com/openriv/riv/agent/sim/router"
	"github.com/openriv/riv/collector/scheduler"
	"github.com/openriv/riv/collector/store"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/internal/pgtest"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/rim"
)

// TestMain doubles as the device process of BenchmarkPoll: with
// RIV_E2E_DEVICE=DIR set, the test binary runs a device and writes its
// coordinates to DIR, so the benchmark process spends CPU on collector
// work only.
func TestMain(m *testing.M) {
	if dir := os.Getenv("RIV_E2E_DEVICE"); dir != "" {
		os.Exit(runDevice(dir))
	}
	code := m.Run()
	pgtest.Stop() // the PostgreSQL of the scale-out test
	if binDir != "" {
		os.RemoveAll(binDir) // the binaries cli_test.go built
	}
	os.Exit(code)
}

type deviceInfo struct {
	SSH, TLS, User string
	SSHKey         []byte
	CA             []byte
	ClientCert     []byte
	ClientKey      []byte
}

func runDevice(dir string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ca, _ := identity.NewCA("Bench Manufacturer", time.Now(), time.Hour)
	// The service8- modes poll this one device under 8 names, all as one
	// NETCONF user: its per-client quote queue (4 by default) would
	// refuse half of each round (resource-denied, retried after 100 ms).
	d, err := device.Start(ctx, device.Options{ManufacturerCA: ca, QuotesPerSecond: 1e6, MaxQueuedPerClient: 16})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer d.Close()
	key, _ := d.SSHPrivateKeyPEM()
	ck, _ := x509.MarshalPKCS8PrivateKey(d.ClientCert.PrivateKey)
	b, _ := json.Marshal(deviceInfo{SSH: d.SSHAddr, TLS: d.TLSAddr, User: d.User, SSHKey: key, CA: ca.Cert.Raw, ClientCert: d.ClientCert.Certificate[0], ClientKey: ck})
	os.WriteFile(filepath.Join(dir, "device.json.tmp"), b, 0o600)
	os.Rename(filepath.Join(dir, "device.json.tmp"), filepath.Join(dir, "device.json"))
	// Each line N on stdin has the NOS measure N more files (PCR 10 and
	// the netequip_boot log grow); "ok" on stdout when done.
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		// "known N": N files of the signed RIM knownTag (a healthy
		// device's steady state), round robin.
		// "reboot": a fresh boot, so that a sub-benchmark starts from a
		// log of its own.
		for k, j := 0, 0; sc.Scan(); {
			if sc.Text() == "reboot" {
				if err := d.Reboot(ctx, router.DefaultImage("2.0")); err != nil {
					fmt.Fprintln(os.Stderr, err)
					stop()
					return
				}
				fmt.Println("ok")
				continue
			}
			arg, known := strings.CutPrefix(sc.Text(), "known ")
			n, _ := strconv.Atoi(arg)
			for range n {
				path, content := "", []byte(nil)
				if known {
					f := knownFiles[j%len(knownFiles)]
					j++
					path, content = f.Path, f.Content
				} else {
					k++
					path, content = fmt.Sprintf("/usr/lib/riv/plugin-%d.so", k), []byte(strconv.Itoa(k))
				}
				if err := d.MeasureFile(ctx, path, content); err != nil {
					fmt.Fprintln(os.Stderr, err)
					stop()
					return
				}
			}
			fmt.Println("ok")
		}
	}()
	<-ctx.Done()
	return 0
}

// knownFiles are the files of knownTag, a signed RIM of the benchmark's
// device software: "known" polls measure them.
var knownFiles = func() []rim.File {
	var fs []rim.File
	for i := range 1000 {
		fs = append(fs, rim.File{Path: fmt.Sprintf("/usr/lib/riv/known-%d.so", i), Content: []byte("known " + strconv.Itoa(i))})
	}
	return fs
}()

// knownIndex is the vendor's signed RIMs of the device's image (as
// newEnv loads them) and knownTag: a device running only those is
// affirming.
func knownIndex(b *testing.B) *rim.Index {
	t, err := rim.NewTag(rim.TagSpec{TagID: "5a0c7f3e-6d1b-4e8a-9c2f-1b3d5e7f9a0b", Name: "bench-plugins", Version: "1.0",
		Vendor: "RIV Bench", VendorRegID: "https://example.com", Files: knownFiles})
	if err != nil {
		b.Fatal(err)
	}
	x := newEnv(b).index.Clone()
	if err := x.Add(t); err != nil {
		b.Fatal(err)
	}
	return x
}

// cpu returns the process's user+system and system CPU time.
func cpu() (total, sys time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), time.Duration(ru.Stime.Nano())
}

// BenchmarkPoll is the collector's cost of one steady-state poll of a
// device in another process: connect (TLS resumed, or SSH), certificates,
// challenge, incremental logs, replay, appraisal and a signed EAR.
func BenchmarkPoll(b *testing.B) {
	dir := b.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RIV_E2E_DEVICE="+dir)
	grow, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	acks := bufio.NewScanner(out)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	var info deviceInfo
	for i := 0; ; i++ {
		raw, err := os.ReadFile(filepath.Join(dir, "device.json"))
		if err == nil && json.Unmarshal(raw, &info) == nil {
			break
		}
		if i > 300 {
			b.Fatal("device did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	ca, _ := x509.ParseCertificate(info.CA)
	anchors := x509.NewCertPool()
	anchors.AddCert(ca)
	os.WriteFile(filepath.Join(dir, "ssh_key"), info.SSHKey, 0o600)
	sshKey, err := verifier.LoadSSHKey(filepath.Join(dir, "ssh_key"))
	if err != nil {
		b.Fatal(err)
	}
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	base := verifyBaseline(ek)
	// +N: N new entries each poll, of files in no RIM (every one a
	// finding); +Nknown: of files in a signed RIM (a healthy device).
	for _, mode := range []string{"tls", "ssh", "tls-kept", "ssh-kept", "tls+100", "ssh+100", "tls-kept+100", "ssh-kept+100", "tls-kept+100known",
		"service-tls-kept", "service-tls-kept+100", "service-tls-kept+100known", "service8-tls-kept", "service8-tls-kept+100", "service8-tls-kept+100known"} {
		mode, newEntries, _ := strings.Cut(mode, "+")
		newEntries, known := strings.CutSuffix(newEntries, "known")
		// service: through the scheduler and the store; serviceN: N
		// devices polled at once each round (one device process under N
		// names), as a fleet's polls overlap; the cost is per poll.
		name, service, fleet := mode, false, 1
		if rest, ok := strings.CutPrefix(name, "service"); ok {
			n, r, _ := strings.Cut(rest, "-")
			if n != "" {
				fleet, _ = strconv.Atoi(n)
			}
			name, service = r, true
		}
		via, kept := strings.TrimSuffix(name, "-kept"), strings.HasSuffix(name, "-kept")
		switch {
		case known:
			mode += "/known=" + newEntries
		case newEntries != "":
			mode += "/new=" + newEntries
		}
		b.Run(mode, func(b *testing.B) {
			// An empty index flags every new file; the known modes' RIM
			// approves them.
			rims := rim.NewIndex()
			if known {
				rims = knownIndex(b)
			}
			v := verifier.New(verifier.Policy{Anchors: anchors, RIMs: rims, Banks: []alg.ID{alg.SHA256}}, ek)
			v.Reuse = kept
			defer v.Close()
			t := verifier.Target{Name: "bench", SSHAddr: info.SSH, SSHUser: info.User, SSHKey: sshKey}
			if via == "tls" {
				e := &verifier.Endpoints{NetconfTLS: info.TLS}
				pemDir := b.TempDir()
				writePEM(b, filepath.Join(pemDir, "c.pem"), "CERTIFICATE", info.ClientCert)
				writePEM(b, filepath.Join(pemDir, "k.pem"), "PRIVATE KEY", info.ClientKey)
				e.TLSClientCert, e.TLSClientKey = filepath.Join(pemDir, "c.pem"), filepath.Join(pemDir, "k.pem")
				if t, err = verifier.TargetOf(e, "tls"); err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			if known {
				// The log holds the unknown files of the modes before.
				fmt.Fprintln(grow, "reboot")
				if !acks.Scan() || acks.Text() != "ok" {
					b.Fatalf("device did not reboot: %q %v", acks.Text(), acks.Err())
				}
			}
			appraise := func(ctx context.Context) (*verifier.Result, error) { return v.AppraiseTarget(ctx, t) }
			if service {
				// Inside the service: the scheduler's on-demand poll,
				// the result and the verifier's state saved to SQLite
				// (synchronous=FULL) before it returns.
				st, err := store.Open(ctx, filepath.Join(b.TempDir(), "riv.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				var devs []scheduler.Device
				for i := range fleet {
					ti := t
					ti.Name = fmt.Sprintf("bench-%d", i)
					devs = append(devs, scheduler.Device{Name: ti.Name, Target: ti, Verifier: v, Policy: "bench"})
				}
				sch := scheduler.New(scheduler.Options{Interval: time.Hour, Store: st}, devs)
				sctx, stop := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { defer close(done); sch.Run(sctx) }()
				defer func() { stop(); <-done }()
				want := ear.UnrecognizedFilesClaim
				if known {
					want = ear.ApprovedFilesClaim
				}
				appraise = func(ctx context.Context) (*verifier.Result, error) {
					var mu sync.Mutex
					var last *verifier.Result
					var firstErr error
					var wg sync.WaitGroup
					for _, d := range devs {
						wg.Add(1)
						go func() {
							defer wg.Done()
							s, err := sch.Attest(ctx, d.Name)
							if err == nil && s.Unreachable != "" {
								err = errors.New(s.Unreachable)
							}
							mu.Lock()
							defer mu.Unlock()
							if err != nil && firstErr == nil {
								firstErr = err
							}
							// The one to check is any that went wrong.
							if err == nil && (last == nil || s.Result.Vector.FileSystem != want) {
								last = s.Result
							}
						}()
					}
					wg.Wait()
					return last, firstErr
				}
			}
			if _, err := appraise(ctx); err != nil { // warm: full handshake, full logs
				b.Fatal(err)
			}
			var used, sys time.Duration
			var allocs, bytes uint64 // the whole process's, as the CPU
			// While the device measures the next files, other polls keep
			// the collector busy, as a fleet does: a collector left idle
			// for the ~100 ms a measurement takes pays ~500 µs more per
			// poll (cold caches and CPU state), which is not the cost of
			// polling. RIV_BENCH_IDLE=1 measures that idle case instead.
			idle := os.Getenv("RIV_BENCH_IDLE") != ""
			other := verifier.New(verifier.Policy{Anchors: anchors, RIMs: rim.NewIndex(), Banks: []alg.ID{alg.SHA256}}, ek)
			other.Reuse = true
			defer other.Close()
			// RIV_BENCH_CPUPROFILE=FILE profiles the measured polls only
			// (with RIV_BENCH_IDLE=1, nothing else runs): -cpuprofile also
			// holds the warm-up's full logs, and the scheduler's goroutines
			// do not carry the poll's profiler labels.
			if f := os.Getenv("RIV_BENCH_CPUPROFILE"); f != "" {
				out, err := os.Create(strings.ReplaceAll(f, "MODE", strings.ReplaceAll(mode, "/", "_")))
				if err != nil {
					b.Fatal(err)
				}
				// 1 kHz: the default 100 Hz gives ~1 sample per poll.
				runtime.SetCPUProfileRate(1000)
				pprof.StartCPUProfile(out)
				defer func() { pprof.StopCPUProfile(); out.Close() }()
			}
			for b.Loop() {
				if newEntries != "" {
					if known {
						fmt.Fprintln(grow, "known", newEntries)
					} else {
						fmt.Fprintln(grow, newEntries)
					}
					stop, done := make(chan struct{}), make(chan struct{})
					go func() {
						defer close(done)
						for !idle {
							select {
							case <-stop:
								return
							default:
								other.AppraiseTarget(ctx, t)
							}
						}
					}()
					ok := acks.Scan() && acks.Text() == "ok"
					close(stop)
					<-done
					if !ok {
						b.Fatalf("device did not measure: %q %v", acks.Text(), acks.Err())
					}
				} else if idle {
					time.Sleep(100 * time.Millisecond)
				}
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				c0, s0 := cpu()
				var r *verifier.Result
				var err error
				// Labelled for -cpuprofile with -tagfocus poll=measured.
				pprof.Do(ctx, pprof.Labels("poll", "measured"), func(ctx context.Context) { r, err = appraise(ctx) })
				if err != nil {
					b.Fatal(err)
				}
				c1, s1 := cpu()
				runtime.ReadMemStats(&m1)
				used, sys = used+c1-c0, sys+s1-s0
				allocs, bytes = allocs+m1.Mallocs-m0.Mallocs, bytes+m1.TotalAlloc-m0.TotalAlloc
				// Every poll must get as far as appraising the new files
				// (an empty index flags them, the known RIM approves
				// them), or it measured a failure.
				if known && r.Vector.FileSystem != ear.ApprovedFilesClaim || !known && newEntries != "" && r.Vector.FileSystem != ear.UnrecognizedFilesClaim {
					b.Fatalf("poll ended %v: %v", r.Status, r.Reasons)
				}
			}
			polls := float64(b.N * fleet)
			b.ReportMetric(float64(used)/polls/1e3, "µs-cpu/poll")
			b.ReportMetric(float64(sys)/polls/1e3, "µs-sys/poll")
			b.ReportMetric(float64(allocs)/polls, "allocs/poll")
			b.ReportMetric(float64(bytes)/polls/1024, "KiB/poll")
			// The machine's speed drifts (2-3x between days here): the
			// poll in units of one bare P-256 signature check, timed in
			// this run, is what compares across runs.
			b.ReportMetric(float64(used)/polls/float64(base), "x-p256-verify")
		})
	}
}

// verifyBaseline is the CPU time of one ECDSA P-256 signature check (the
// quote's), the median of 9 rounds of 50.
func verifyBaseline(k *ecdsa.PrivateKey) time.Duration {
	h := make([]byte, 32)
	sig, _ := ecdsa.SignASN1(rand.Reader, k, h)
	var rounds []time.Duration
	for range 9 {
		c0, _ := cpu()
		for range 50 {
			ecdsa.VerifyASN1(&k.PublicKey, h, sig)
		}
		c1, _ := cpu()
		rounds = append(rounds, (c1-c0)/50)
	}
	slices.Sort(rounds)
	return rounds[len(rounds)/2]
}

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
	"github.com/openriv/riv/collector/scheduler"
	"github.com/openriv/riv/collector/store"
	"github.com/openriv/riv/collector/verifier"
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
		for k := 0; sc.Scan(); {
			n, _ := strconv.Atoi(sc.Text())
			for range n {
				k++
				if err := d.MeasureFile(ctx, fmt.Sprintf("/usr/lib/riv/plugin-%d.so", k), []byte(strconv.Itoa(k))); err != nil {
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
	for _, mode := range []string{"tls", "ssh", "tls-kept", "ssh-kept", "tls+100", "ssh+100", "tls-kept+100", "ssh-kept+100", "service-tls-kept", "service-tls-kept+100", "service8-tls-kept", "service8-tls-kept+100"} {
		mode, newEntries, _ := strings.Cut(mode, "+")
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
		if newEntries != "" {
			mode += "/new=" + newEntries
		}
		b.Run(mode, func(b *testing.B) {
			// RIMs do not matter for the cost; an empty index flags every
			// component, which exercises the same matching work.
			v := verifier.New(verifier.Policy{Anchors: anchors, RIMs: rim.NewIndex(), Banks: []alg.ID{alg.SHA256}}, ek)
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
							if err == nil && (last == nil || s.Result.Vector.FileSystem != ear.UnrecognizedFilesClaim) {
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
			// While the device measures the next files, other polls keep
			// the collector busy, as a fleet does: a collector left idle
			// for the ~100 ms a measurement takes pays ~500 µs more per
			// poll (cold caches and CPU state), which is not the cost of
			// polling. RIV_BENCH_IDLE=1 measures that idle case instead.
			idle := os.Getenv("RIV_BENCH_IDLE") != ""
			other := verifier.New(verifier.Policy{Anchors: anchors, RIMs: rim.NewIndex(), Banks: []alg.ID{alg.SHA256}}, ek)
			other.Reuse = true
			defer other.Close()
			for b.Loop() {
				if newEntries != "" {
					fmt.Fprintln(grow, newEntries)
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
				c0, s0 := cpu()
				var r *verifier.Result
				var err error
				// Labelled for -cpuprofile with -tagfocus poll=measured.
				pprof.Do(ctx, pprof.Labels("poll", "measured"), func(ctx context.Context) { r, err = appraise(ctx) })
				if err != nil {
					b.Fatal(err)
				}
				c1, s1 := cpu()
				used, sys = used+c1-c0, sys+s1-s0
				// Every poll must get as far as appraising the new files
				// (an empty index flags them), or it measured a failure.
				if r.Vector.FileSystem != ear.UnrecognizedFilesClaim && newEntries != "" {
					b.Fatalf("poll ended %v: %v", r.Status, r.Reasons)
				}
			}
			polls := float64(b.N * fleet)
			b.ReportMetric(float64(used)/polls/1e3, "µs-cpu/poll")
			b.ReportMetric(float64(sys)/polls/1e3, "µs-sys/poll")
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

// Command riv-fleetsim serves a fleet of simulated routers from one
// process, for load on a collector:
//
//	riv-fleetsim --dir DIR --devices N [--base 127.1.0.1] [--port 6513] [--files K]
//	             [--grow M --every D] [--reboot-every D] [--tamper T] [--duration D]
//
// Each device has its own IDevID and IAK (from the fleet's manufacturer
// CA), a measured boot of the fleet's image into a software TPM, and a
// NETCONF-over-TLS server (the agent's) on an address of its own from
// --base on. Quotes are signed in software in the exact TPM structures:
// it is a simulator, and protects nothing. DIR receives what a collector
// needs: the manufacturer and RIM-signer anchors, the signed RIMs, a
// client certificate (user riv) and devices.yaml, the items of a
// collector's devices: list; DIR/fleetsim.json is written when every
// device listens. It runs until SIGTERM, SIGINT or --duration.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/openriv/riv/internal/cli"
	"github.com/openriv/riv/testbed/fleetsim"
)

var app = &cli.App{
	Name:    "riv-fleetsim",
	Summary: "simulated routers (software TPMs, NETCONF over TLS) for load on a collector",
	Main: &cli.Command{Args: "--dir DIR --devices N [--base ADDR] [--port P] [--files K] [--grow M --every D] [--reboot-every D] [--tamper T] [--duration D]",
		Summary: "serve N simulated routers until SIGTERM or --duration",
		Help:    help, Run: run},
}

const help = `Every device is a simulated router on a software TPM: its own IDevID and
IAK, a measured boot of the fleet's image (the default image plus --files
NOS files), its logs, and NETCONF over TLS on an address of its own
(--base, --base+1, ...; all in 127.0.0.0/8). Every --every, each device
measures --grow more of its image's files; every --reboot-every, the next
device in turn reboots; the last --tamper devices run an unsigned binary.
DIR gets manufacturer-ca.pem, vendor-ca.pem, rims/, client.pem,
client-key.pem, devices.yaml and, once all devices listen, fleetsim.json.
At most 100000 devices and 24 hours.`

func run(env *cli.Env, args []string) error {
	fs := env.Flags()
	dir := fs.String("dir", "", "where the collector's side is written (created)")
	n := fs.Int("devices", 0, "how many devices to serve (1 to 100000)")
	base := fs.String("base", "127.1.0.1", "the first device's address (IPv4 loopback)")
	port := fs.Int("port", 6513, "the NETCONF-over-TLS port of every device")
	files := fs.Int("files", 0, "NOS files of the image beyond the default image's")
	grow := fs.Int("grow", 0, "files each device measures every --every")
	every := fs.Duration("every", 30*time.Second, "how often the devices' logs grow")
	rebootEvery := fs.Duration("reboot-every", 0, "reboot the next device in turn this often (0: never)")
	tamper := fs.Int("tamper", 0, "the last T devices run an unsigned binary")
	duration := fs.Duration("duration", time.Hour, "stop after this long (at most 24h)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	switch {
	case *dir == "":
		return cli.Usage("--dir is required")
	case *n < 1 || *n > fleetsim.MaxDevices:
		return cli.Usage("--devices %d: want 1 to %d", *n, fleetsim.MaxDevices)
	case *duration <= 0 || *duration > 24*time.Hour:
		return cli.Usage("--duration %v: want more than 0 and at most 24h", *duration)
	case *every <= 0 || *grow < 0 || *files < 0 || *files > 100_000 || *rebootEvery < 0:
		return cli.Usage("--every, --grow, --files and --reboot-every must be positive (--files at most 100000)")
	case *port < 1 || *port > 65535:
		return cli.Usage("--port %d", *port)
	}
	addr, err := netip.ParseAddr(*base)
	if err != nil {
		return cli.Usage("--base: %v", err)
	}
	if last, ok := nth(addr, *n-1); !addr.Is4() || !addr.IsLoopback() || !ok || !last.IsLoopback() {
		return cli.Usage("--base %v: %d devices from it must all be in 127.0.0.0/8", addr, *n)
	}
	if *tamper < 0 || *tamper > *n {
		return cli.Usage("--tamper %d of %d devices", *tamper, *n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()

	t0 := time.Now()
	env.Progress("booting %d devices", *n)
	f, err := fleetsim.New(fleetsim.Options{Files: *files})
	if err != nil {
		return err
	}
	s, err := f.Serve(ctx, fleetsim.ServeOptions{Devices: *n, Dir: *dir, Base: addr, Port: *port, Tamper: *tamper})
	if err != nil {
		return err
	}
	env.EndProgress()
	fmt.Fprintf(os.Stderr, "riv-fleetsim: %d devices on %s … %s in %v; %s/fleetsim.json\n", *n, s.Info.First, s.Info.Last, time.Since(t0).Round(time.Millisecond), *dir)
	err = s.Run(ctx, *every, *grow, *rebootEvery)
	s.Close()
	s.Wait()
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// nth is the address k after a.
func nth(a netip.Addr, k int) (netip.Addr, bool) {
	if !a.Is4() {
		return a, false
	}
	b := a.As4()
	v := uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3]) + uint64(k)
	if v > 0xffffffff {
		return a, false
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func main() { os.Exit(app.Run(os.Args[1:], os.Stdout, os.Stderr)) }

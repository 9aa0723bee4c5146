package fleetsim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/gob"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/openriv/riv/agent/attester"
	"github.com/openriv/riv/internal/testref"
	"github.com/openriv/riv/pkg/alg"
	"github.com/openriv/riv/pkg/eventlog"
	"github.com/openriv/riv/pkg/frame"
	"github.com/openriv/riv/pkg/pcr"
	"github.com/openriv/riv/pkg/quote"
)

// The appraisal benchmark's device runs in a process of its own, as a
// device does: its work, and the garbage it makes building replies, are
// not the collector's. The test binary is started again with
// benchDeviceEnv set to a directory; it writes there what a collector is
// given (the manufacturer CA, the vendor's CA and RIMs, the device's
// IDevID), serves NETCONF on its stdin and stdout, and takes commands on
// a pipe (fd 3, answers on fd 4).
const benchDeviceEnv = "RIV_FLEETSIM_BENCH_DEVICE"

func TestMain(m *testing.M) {
	if dir := os.Getenv(benchDeviceEnv); dir != "" {
		if err := benchDevice(dir); err != nil {
			fmt.Fprintln(os.Stderr, "bench device:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// benchCmd is a command to the benchmark's device: "reboot" or "measure"
// (100 entries), each answered with the floor's inputs for the poll that
// follows (benchFloor).
type benchCmd struct{ Op string }

// benchFloor is a floor's evidence (see floor), as the device's TPM and
// logs have it after a command.
type benchFloor struct {
	Err       string
	PubDER    []byte // the IAK's public key (PKIX)
	Attest    []byte
	Sig       []byte
	UEFI      []benchEvent
	Templates [][]byte
	Vals      [][]byte
}

type benchEvent struct {
	PCR    int
	Digest []byte
}

// floorSel is what the floor's quote covers.
var floorSel = []pcr.Selection{{Bank: alg.SHA256, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}}

func benchDevice(dir string) error {
	ctx := context.Background()
	fw, err := os.ReadFile(filepath.Join(dir, "firmware.bin"))
	if err != nil {
		return err
	}
	fl, err := New(Options{Files: 1000 - 8, Firmware: fw})
	if err != nil {
		return err
	}
	d, err := fl.Device(ctx, "SIM-BENCH")
	if err != nil {
		return err
	}
	if err := fl.WriteAnchor(filepath.Join(dir, "manufacturer-ca.pem")); err != nil {
		return err
	}
	if err := fl.WriteRIMs(filepath.Join(dir, "rims"), filepath.Join(dir, "vendor-ca.pem")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "idevid.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.IDevID.Raw}), 0o644); err != nil {
		return err
	}
	go func() {
		cmds, answers := gob.NewDecoder(os.NewFile(3, "commands")), gob.NewEncoder(os.NewFile(4, "answers"))
		seen := 0
		rt, _ := d.Logs.Log(ctx, attester.LogNetequip)
		seen = len(rt.Log.Events)
		for {
			var c benchCmd
			if err := cmds.Decode(&c); err != nil {
				os.Exit(0) // the benchmark is done
			}
			f, err := deviceFloor(ctx, d, c.Op, &seen)
			if err != nil {
				f = &benchFloor{Err: err.Error()}
			}
			if err := answers.Encode(f); err != nil {
				os.Exit(1)
			}
		}
	}()
	return serveStdio(d)
}

// serveStdio answers the NETCONF messages of stdin on stdout, as the
// agent's server does (RFC 6242, chunked framing after the hellos).
func serveStdio(d *Device) error {
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	out.WriteString(`<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>` +
		`<capability>urn:ietf:params:netconf:base:1.0</capability><capability>urn:ietf:params:netconf:base:1.1</capability>` +
		`</capabilities><session-id>1</session-id></hello>]]>]]>`)
	if err := out.Flush(); err != nil {
		return err
	}
	fr := frame.NewReader(os.Stdin)
	hello := false
	for {
		msg, err := fr.ReadMsg(nil, maxLoopMsg)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !hello {
			hello = true
			if !bytes.Contains(msg, []byte("urn:ietf:params:netconf:base:1.1")) {
				return errors.New("the client does not speak base:1.1")
			}
			fr.Upgrade()
			continue
		}
		if reply := d.Server.Exchange(context.Background(), User, msg); len(reply) > 0 {
			out.Write(frame.Append(nil, reply, true))
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
}

// deviceFloor runs op on d and returns the floor's inputs for the poll
// after it: a quote from d's TPM and its logs (all of them after a
// reboot, else the entries new since the last call).
func deviceFloor(ctx context.Context, d *Device, op string, seen *int) (*benchFloor, error) {
	var err error
	switch op {
	case "reboot":
		err = d.Reboot(ctx)
	case "measure":
		err = d.Measure(ctx, 100)
	default:
		err = fmt.Errorf("unknown command %q", op)
	}
	if err != nil {
		return nil, err
	}
	iak := d.Attester.Config().Certificates[0].Key
	pub, err := x509.MarshalPKIXPublicKey(iak.Public.Key)
	if err != nil {
		return nil, err
	}
	a, s, err := d.TPM.Quote(ctx, iak, make([]byte, 32), floorSel)
	if err != nil {
		return nil, err
	}
	vals, err := d.TPM.ReadPCRs(ctx, floorSel)
	if err != nil {
		return nil, err
	}
	f := &benchFloor{PubDER: pub, Attest: a, Sig: s}
	for _, i := range floorSel[0].PCRs {
		f.Vals = append(f.Vals, vals.Get(alg.SHA256, i))
	}
	rt, err := d.Logs.Log(ctx, attester.LogNetequip)
	if err != nil {
		return nil, err
	}
	if op == "reboot" {
		bios, err := d.Logs.Log(ctx, attester.LogBIOS)
		if err != nil {
			return nil, err
		}
		for _, e := range bios.Log.Events {
			if eventlog.EventType(e.Type) != eventlog.EvNoAction {
				f.UEFI = append(f.UEFI, benchEvent{PCR: e.PCR, Digest: e.Digest(alg.SHA256)})
			}
		}
		*seen = 0
	}
	for _, e := range rt.Log.Events[*seen:] {
		f.Templates = append(f.Templates, e.Data)
	}
	*seen = len(rt.Log.Events)
	return f, nil
}

// benchDev is the benchmark's side of its device process.
type benchDev struct {
	dir     string
	conn    io.ReadWriteCloser // NETCONF
	cmds    *gob.Encoder
	answers *gob.Decoder
}

// pipes is a child's stdout and stdin as one stream.
type pipes struct {
	io.Reader
	io.WriteCloser
}

// startBenchDevice starts the device process (a fleet of 1,000 NOS
// files booted on a captured UEFI log); it ends with tb.
func startBenchDevice(tb testing.TB) *benchDev {
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "firmware.bin"), testref.Read(tb, "eventlogs/uefi/go-tpm-tools/ubuntu-2104-no-dbx.bin"), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchDeviceEnv+"="+dir)
	cmd.Stderr = os.Stderr
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	ansR, ansW, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{cmdR, ansW}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	cmdR.Close()
	ansW.Close()
	tb.Cleanup(func() {
		cmdW.Close()
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		ansR.Close()
	})
	return &benchDev{dir: dir, conn: pipes{stdout, stdin}, cmds: gob.NewEncoder(cmdW), answers: gob.NewDecoder(ansR)}
}

// do runs op on the device and returns the floor for the next poll.
func (d *benchDev) do(tb testing.TB, op string) *floor {
	if err := d.cmds.Encode(benchCmd{Op: op}); err != nil {
		tb.Fatal(err)
	}
	var bf benchFloor
	if err := d.answers.Decode(&bf); err != nil {
		tb.Fatal(err)
	}
	if bf.Err != "" {
		tb.Fatalf("device: %s: %s", op, bf.Err)
	}
	pub, err := x509.ParsePKIXPublicKey(bf.PubDER)
	if err != nil {
		tb.Fatal(err)
	}
	sig, err := quote.ParseSignature(bf.Sig)
	if err != nil {
		tb.Fatal(err)
	}
	f := &floor{pub: pub.(*ecdsa.PublicKey), attest: bf.Attest, sig: sig, templates: bf.Templates, vals: bf.Vals}
	for _, e := range bf.UEFI {
		f.uefi = append(f.uefi, floorEvent{pcr: e.PCR, digest: e.Digest})
	}
	return f
}

// file reads one of the files the device wrote.
func (d *benchDev) file(tb testing.TB, name string) []byte {
	b, err := os.ReadFile(filepath.Join(d.dir, name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// cert parses the PEM certificate the device wrote as name.
func (d *benchDev) cert(tb testing.TB, name string) *x509.Certificate {
	blk, _ := pem.Decode(d.file(tb, name))
	if blk == nil {
		tb.Fatalf("%s: no PEM", name)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// cpuTime is the CPU this process has used (every thread: the
// collector's garbage collection counts as its own).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

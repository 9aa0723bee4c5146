// Package netsnmp runs net-snmp's daemons for tests: snmptrapd as the
// receiver of the agent's notifications, in a temporary directory, with
// no configuration or MIB files of the machine's.
package netsnmp

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openriv/riv/internal/testref"
)

// User is a USM user (SHA-256, AES) snmptrapd accepts notifications from.
type User struct {
	Name, Auth, Priv string
	// EngineID is the sender's engine ID, for traps (the sender is their
	// authoritative engine); informs use snmptrapd's own engine.
	EngineID []byte
}

// Trapd is a running snmptrapd.
type Trapd struct {
	Addr string // 127.0.0.1:PORT
	log  string
}

// StartTrapd starts snmptrapd on a free UDP port of 127.0.0.1 until the
// test ends, accepting authPriv notifications from users.
func StartTrapd(t testing.TB, users ...User) *Trapd {
	t.Helper()
	return StartTrapdAt(t, freeUDP(t), users...)
}

// StartTrapdAt is StartTrapd on a given address (one a sender was told
// before the users' passwords were known).
func StartTrapdAt(t testing.TB, addr string, users ...User) *Trapd {
	t.Helper()
	bin := testref.NeedTool(t, "snmptrapd")
	dir := t.TempDir()
	cf, err := writeConf(dir, users)
	if err != nil {
		t.Fatal(err)
	}
	return start(t, bin, dir, cf, addr)
}

func writeConf(dir string, users []User) (string, error) {
	var conf strings.Builder
	for _, u := range users {
		if len(u.EngineID) > 0 {
			fmt.Fprintf(&conf, "createUser -e 0x%s %s SHA-256 %s AES %s\n", hex.EncodeToString(u.EngineID), u.Name, u.Auth, u.Priv)
		}
		fmt.Fprintf(&conf, "createUser %s SHA-256 %s AES %s\n", u.Name, u.Auth, u.Priv)
		fmt.Fprintf(&conf, "authUser log %s priv\n", u.Name)
	}
	cf := filepath.Join(dir, "snmptrapd.conf")
	return cf, os.WriteFile(cf, []byte(conf.String()), 0o600)
}

func start(t testing.TB, bin, dir, cf, addr string) *Trapd {
	t.Helper()
	td := &Trapd{Addr: addr, log: filepath.Join(dir, "traps.log")}
	cmd := exec.Command(bin, "-f", "-C", "-c", cf, "-Lf", td.log, "-m", "", "-M", dir, "-On", "udp:"+addr)
	cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+dir, "SNMPCONFPATH="+dir, "MIBS=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(td.log); strings.Contains(string(b), "NET-SNMP version") {
			return td
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(td.log)
			t.Fatalf("snmptrapd did not start:\n%s", b)
		}
	}
}

// Log is what snmptrapd logged so far.
func (td *Trapd) Log() string {
	b, _ := os.ReadFile(td.log)
	return string(b)
}

// Wait returns the log once ok accepts it, or fails the test after
// timeout.
func (td *Trapd) Wait(t testing.TB, timeout time.Duration, ok func(log string) bool) string {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if l := td.Log(); ok(l) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("snmptrapd, after %v:\n%s", timeout, td.Log())
		}
	}
}

// Snmpd is a running net-snmp snmpd, an AgentX master.
type Snmpd struct {
	Addr   string // 127.0.0.1:PORT (UDP), SNMPv3 with the users it was given
	AgentX string // tcp:127.0.0.1:PORT, its agentXSocket
	bin    string
	dir    string
	conf   string
	log    string
	cmd    *exec.Cmd
}

// StartSnmpd starts snmpd as an AgentX master on free ports of
// 127.0.0.1 until the test ends; its users may read and write.
func StartSnmpd(t testing.TB, users ...User) *Snmpd {
	t.Helper()
	return StartSnmpdWith(t, "", users...)
}

// StartSnmpdWith is StartSnmpd with more lines of snmpd.conf (a
// trapsess, say).
func StartSnmpdWith(t testing.TB, extra string, users ...User) *Snmpd {
	t.Helper()
	sd := &Snmpd{bin: testref.NeedTool(t, "snmpd"), dir: t.TempDir()}
	sd.Addr, sd.AgentX = freeUDP(t), "tcp:"+freeTCP(t)
	var conf strings.Builder
	fmt.Fprintf(&conf, "agentAddress udp:%s\nmaster agentx\nagentXSocket %s\nagentXTimeout 5\n%s\n", sd.Addr, sd.AgentX, extra)
	for _, u := range users {
		fmt.Fprintf(&conf, "createUser %s SHA-256 %s AES %s\nrwuser %s priv\n", u.Name, u.Auth, u.Priv, u.Name)
	}
	// Not in the persistent directory: snmpd writes its own snmpd.conf
	// there when it stops.
	sd.conf, sd.log = filepath.Join(t.TempDir(), "snmpd.conf"), filepath.Join(sd.dir, "snmpd.log")
	if err := os.WriteFile(sd.conf, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	sd.Start(t)
	t.Cleanup(sd.Stop)
	return sd
}

// Start starts snmpd (again) and waits until it serves.
func (sd *Snmpd) Start(t testing.TB) {
	t.Helper()
	os.Remove(sd.log)
	sd.cmd = exec.Command(sd.bin, "-f", "-C", "-c", sd.conf, "-Lf", sd.log, "-m", "", "-M", sd.dir, "-p", filepath.Join(sd.dir, "snmpd.pid"))
	sd.cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+sd.dir, "SNMPCONFPATH="+sd.dir, "MIBS=")
	if err := sd.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(sd.log); strings.Contains(string(b), "NET-SNMP version") {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(sd.log)
			t.Fatalf("snmpd did not start:\n%s", b)
		}
	}
}

// Stop stops snmpd.
func (sd *Snmpd) Stop() {
	if sd.cmd != nil && sd.cmd.Process != nil {
		sd.cmd.Process.Signal(syscall.SIGTERM)
		sd.cmd.Wait()
		sd.cmd = nil
	}
}

// Log is what snmpd logged since it last started.
func (sd *Snmpd) Log() string {
	b, _ := os.ReadFile(sd.log)
	return string(b)
}

// freeUDP and freeTCP find a free port: taken, released, handed on.
func freeUDP(t testing.TB) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

func freeTCP(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

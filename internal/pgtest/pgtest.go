// Package pgtest runs a PostgreSQL server for tests: its own cluster in a
// temporary directory (initdb), reached over a Unix socket in that
// directory only, stopped when the tests end. The server is real; nothing
// here stands in for it. When the tests run as root the server runs as
// the postgres user (or nobody), since PostgreSQL refuses root.
//
// A package whose tests use it runs them through Main (or calls Stop
// after m.Run):
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
)

var (
	mu      sync.Mutex
	running *server
	dbs     int
)

type server struct {
	dir string
	cmd *exec.Cmd
	err error
}

// Main runs the tests and stops the server if one was started.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops the server if one was started (for a TestMain of its own).
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if running != nil {
		running.stop()
		running = nil
	}
}

// NewDatabase returns the URL of a new, empty database of the package's
// server (started at the first call). It fails the test when PostgreSQL
// is not installed: `make setup` installs it.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if running == nil {
		running = start()
	}
	if running.err != nil {
		tb.Fatalf("pgtest: %v", running.err)
	}
	dbs++
	name := fmt.Sprintf("t%d", dbs)
	db, err := sql.Open("pgx", running.url("postgres"))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE DATABASE ` + name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	return running.url(name)
}

// url is a database's URL over the server's socket.
func (s *server) url(db string) string {
	return "postgres://riv@/" + db + "?host=" + s.dir + "&sslmode=disable"
}

// Binary finds a PostgreSQL program: on PATH, or where Debian keeps it.
func Binary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(m) == 0 {
		return "", fmt.Errorf("%s not found (Debian package postgresql; make setup installs it)", name)
	}
	return m[len(m)-1], nil
}

func start() *server {
	s := &server{}
	s.err = s.start()
	return s
}

func (s *server) start() error {
	initdb, err := Binary("initdb")
	if err != nil {
		return err
	}
	postgres, err := Binary("postgres")
	if err != nil {
		return err
	}
	// A short path: the socket's must fit in 107 bytes.
	if s.dir, err = os.MkdirTemp("", "pg"); err != nil {
		return err
	}
	cred, err := credential()
	if err != nil {
		return err
	}
	if cred != nil {
		if err := os.Chown(s.dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return err
		}
	}
	data := filepath.Join(s.dir, "data")
	init := exec.Command(initdb, "-D", data, "-A", "trust", "-U", "riv", "-E", "UTF8", "--locale=C", "--no-sync")
	init.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v: %s", err, out)
	}
	// No TCP: the socket in s.dir is the only way in. fsync off: the
	// tests kill collectors, never this server.
	s.cmd = exec.Command(postgres, "-D", data, "-k", s.dir, "-c", "listen_addresses=", "-c", "fsync=off",
		"-c", "max_connections=200", "-c", "log_min_messages=warning")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	logf, err := os.Create(filepath.Join(s.dir, "postgres.log"))
	if err != nil {
		return err
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	db, err := sql.Open("pgx", s.url("postgres"))
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("postgres did not start: %v: %s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// credential is who runs the server: the caller, unless root.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("running as root and no postgres or nobody user to run PostgreSQL as")
}

// stop shuts the server down (fast: disconnects its clients) and removes
// its directory.
func (s *server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

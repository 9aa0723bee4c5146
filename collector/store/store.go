// Package store keeps appraisal results and their history in SQLite (the
// embedded default: no setup). A reboot does not erase history: the
// results before it are marked superseded, with the reason.
package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/veraison/ear"
	_ "modernc.org/sqlite" // pure-Go SQLite driver

	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/quote"
)

// migrations bring a database to the current schema, one step each;
// PRAGMA user_version counts the steps done. A step is never edited once
// released: a change is a new step.
var migrations = []string{
	// 1: results and the webhook outbox.
	`CREATE TABLE IF NOT EXISTS results (
		id             INTEGER PRIMARY KEY AUTOINCREMENT,
		device         TEXT NOT NULL,
		serial         TEXT NOT NULL,
		at             INTEGER NOT NULL,          -- unix nanoseconds
		status         TEXT NOT NULL,
		vector         TEXT NOT NULL,             -- JSON trustworthiness vector
		reasons        TEXT NOT NULL,             -- JSON array
		reset_count    INTEGER NOT NULL,
		restart_count  INTEGER NOT NULL,
		rebooted       INTEGER NOT NULL,
		ear            TEXT NOT NULL,
		superseded     TEXT                       -- why a later result replaced this one
	);
	CREATE INDEX IF NOT EXISTS results_device ON results(device, id);
	CREATE TABLE IF NOT EXISTS outbox (
		id          INTEGER PRIMARY KEY AUTOINCREMENT,
		url         TEXT NOT NULL,
		body        BLOB NOT NULL,
		created     INTEGER NOT NULL,             -- unix nanoseconds
		attempts    INTEGER NOT NULL DEFAULT 0,
		next_at     INTEGER NOT NULL,             -- unix nanoseconds
		done        INTEGER NOT NULL DEFAULT 0,   -- 1 delivered, 2 given up
		last_error  TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX IF NOT EXISTS outbox_due ON outbox(done, next_at);`,
	// 2: per-TPM verdicts, the evidence digest and policy of each result;
	// the verifier's state per device (a restart resumes incremental
	// polls); the devices added through the API.
	`ALTER TABLE results ADD COLUMN tpms TEXT NOT NULL DEFAULT '[]';
	ALTER TABLE results ADD COLUMN evidence TEXT NOT NULL DEFAULT '';
	ALTER TABLE results ADD COLUMN policy TEXT NOT NULL DEFAULT '';
	CREATE TABLE device_state (
		device   TEXT PRIMARY KEY,
		state    BLOB NOT NULL,
		updated  INTEGER NOT NULL              -- unix nanoseconds
	);
	CREATE TABLE devices (
		name     TEXT PRIMARY KEY,
		spec     BLOB NOT NULL,                -- JSON, as added
		added    INTEGER NOT NULL              -- unix nanoseconds
	);
	CREATE TABLE rims (
		digest   TEXT PRIMARY KEY,             -- hex SHA-256 of raw
		name     TEXT NOT NULL,
		raw      BLOB NOT NULL,
		added    INTEGER NOT NULL              -- unix nanoseconds
	);`,
	// 3: the results not superseded, by device: marking them superseded
	// (a reboot, an on-demand re-attestation) no longer scans a device's
	// whole history.
	`CREATE INDEX results_current ON results(device) WHERE superseded IS NULL;`,
	// 4: which collector appraised a result, and when its poll started
	// and ended (several collectors share a PostgreSQL store).
	`ALTER TABLE results ADD COLUMN collector TEXT NOT NULL DEFAULT '';
	ALTER TABLE results ADD COLUMN started INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE results ADD COLUMN finished INTEGER NOT NULL DEFAULT 0;`,
}

// Store is a results database.
type Store struct {
	db *sql.DB
	pg bool // PostgreSQL, not SQLite
	// Save's statements, prepared once: parsing them is a third of a
	// save's CPU.
	insert, upsert, supersede, fence *sql.Stmt
	o                                Options
	// The group-commit writer.
	saves      chan *saveReq
	closed     chan struct{}
	writerDone chan struct{}
	closeOnce  sync.Once
}

// Sync is how a commit reaches the disk.
type Sync string

const (
	// SyncNormal (the default) commits to the write-ahead log without
	// waiting for the disk: a result saved survives the collector being
	// killed, and the database stays consistent through a power loss,
	// which can lose only the results of the last Options.DurableWithin.
	// Waiting for the disk on every commit is most of a save's CPU (see
	// docs/BENCHMARKS.md).
	SyncNormal Sync = "normal"
	// SyncFull waits for the disk on every commit: a result saved survives
	// a power loss too.
	SyncFull Sync = "full"
)

// Options tune Open.
type Options struct {
	Sync Sync
	// DurableWithin bounds, with SyncNormal, how long a committed result
	// can wait for the disk: the log is checkpointed (and synced) that
	// often while there are new commits. Default 1s.
	DurableWithin time.Duration
}

// Open opens (creating if needed) the SQLite database at path in WAL mode
// with the default Options, and migrates it; ":memory:" for a throwaway
// one. A database from a newer RIV is refused rather than misread.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenWith(ctx, path, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, path string, o Options) (*Store, error) {
	switch o.Sync {
	case "":
		o.Sync = SyncNormal
	case SyncNormal, SyncFull:
	default:
		return nil, fmt.Errorf("store: sync %q: want normal or full", o.Sync)
	}
	if o.DurableWithin <= 0 {
		o.DurableWithin = time.Second
	}
	// The collector holds the database alone (locking_mode before WAL, so
	// that the log's index lives in memory, not in a shared -shm file): a
	// commit then takes no file locks, six fcntl calls fewer per save, and
	// a second collector on the same data_dir is refused at Open instead of
	// writing beside the first.
	dsn := "file:" + path + "?_pragma=locking_mode(EXCLUSIVE)&_pragma=busy_timeout(1000)&_pragma=journal_mode(WAL)&_pragma=synchronous(" + string(o.Sync) + ")&_pragma=foreign_keys(1)"
	if path == ":memory:" {
		dsn = "file::memory:?cache=shared"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db.SetMaxOpenConns(1) // SQLite: one writer; serialize in the pool
	if err := migrate(ctx, db); err != nil {
		db.Close()
		if strings.Contains(err.Error(), "database is locked") {
			return nil, fmt.Errorf("store: %s: in use by another process (is a collector already running on this data_dir?)", path)
		}
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return start(ctx, db, false, o)
}

// start prepares the statements of a migrated database and starts its
// writer.
func start(ctx context.Context, db *sql.DB, pg bool, o Options) (*Store, error) {
	s := &Store{db: db, pg: pg, o: o}
	var err error
	for _, p := range []struct {
		st    **sql.Stmt
		query string
	}{
		{&s.insert, `INSERT INTO results (device, serial, at, status, vector, reasons, reset_count, restart_count, rebooted, ear, tpms, evidence, policy, collector, started, finished)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`},
		{&s.fence, `UPDATE leases SET next_at = ? WHERE device = ? AND owner = ? AND epoch = ? AND expires > now()`},
		{&s.upsert, `INSERT INTO device_state (device, state, updated) VALUES (?, ?, ?)
			ON CONFLICT (device) DO UPDATE SET state = excluded.state, updated = excluded.updated`},
		{&s.supersede, `UPDATE results SET superseded = ? WHERE device = ? AND superseded IS NULL`},
	} {
		if p.st == &s.fence && !pg {
			continue // leases are PostgreSQL's
		}
		if *p.st, err = db.PrepareContext(ctx, s.rebind(p.query)); err != nil {
			db.Close()
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	s.saves, s.closed, s.writerDone = make(chan *saveReq), make(chan struct{}), make(chan struct{})
	go s.writer()
	return s, nil
}

// SchemaVersion is the number of migrations of this build.
var SchemaVersion = len(migrations)

func migrate(ctx context.Context, db *sql.DB) error {
	var v int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this collector's (%d)", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		// PRAGMA takes no parameters; i+1 is ours.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, i+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	<-s.writerDone
	for _, st := range []*sql.Stmt{s.insert, s.upsert, s.supersede, s.fence} {
		if st != nil {
			st.Close()
		}
	}
	return s.db.Close()
}

// Saved says what else to keep with a result.
type Saved struct {
	// State is the verifier's snapshot of the device after the appraisal
	// (verifier.Snapshot), kept in the same transaction: a collector that
	// restarts resumes from the last result it kept, never from a later
	// or an earlier one.
	State []byte
	// Policy is the policy set the device was appraised against.
	Policy string
	// OnDemand marks a re-attestation asked for through the API: it
	// supersedes the results before it.
	OnDemand bool
	// Collector names who appraised it; its poll ran from Started to
	// Finished.
	Collector         string
	Started, Finished time.Time
	// Lease, with PostgreSQL, is the collector's lease on the device: the
	// result is kept only if the lease is still held, so that a collector
	// that lost it (and another now polls the device) writes nothing;
	// NextAt is when the device is due next, for whoever holds it next.
	Lease  *Lease
	NextAt time.Time
}

// ErrLeaseLost is Save's error when Saved.Lease is no longer held.
var ErrLeaseLost = errors.New("store: the device's lease was lost: result not kept")

// Save stores a result. When the device rebooted since its last result,
// or this is an on-demand re-attestation, the earlier results are marked
// superseded by it.
//
// Saves are group-committed: while one transaction commits, the saves
// that arrive wait and go into the next one together, so that a fleet's
// results share the commit (and with SyncFull its wait for the disk)
// instead of each paying it. A save returns when its transaction is
// committed.
func (s *Store) Save(ctx context.Context, r *verifier.Result, o Saved) (int64, error) {
	vec, _ := json.Marshal(r.Vector)
	reasons, _ := json.Marshal(r.Reasons)
	if r.Reasons == nil {
		reasons = []byte("[]")
	}
	tpms, _ := json.Marshal(r.TPMs)
	if r.TPMs == nil {
		tpms = []byte("[]")
	}
	req := &saveReq{r: r, o: o, vec: vec, reasons: reasons, tpms: tpms, done: make(chan saveRes, 1)}
	select {
	case s.saves <- req:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-s.closed:
		return 0, errClosed
	}
	// Once queued the save is done or fails on its own: a caller that
	// gives up must not leave a result written without knowing it.
	res := <-req.done
	return res.id, res.err
}

var errClosed = errors.New("store: closed")

type saveReq struct {
	r                  *verifier.Result
	o                  Saved
	vec, reasons, tpms []byte
	done               chan saveRes
}

type saveRes struct {
	id  int64
	err error
}

// maxBatch bounds the saves of one transaction.
const maxBatch = 256

// writer runs the group commits until Close. With SyncNormal it also
// checkpoints the log, which syncs it, within DurableWithin of a commit.
func (s *Store) writer() {
	defer close(s.writerDone)
	var due <-chan time.Time // armed while a commit waits for the disk
	for {
		var first *saveReq
		select {
		case first = <-s.saves:
		case <-due:
			due = nil
			s.checkpoint()
			continue
		case <-s.closed:
			if due != nil {
				s.checkpoint()
			}
			return
		}
		batch := []*saveReq{first}
	more:
		for len(batch) < maxBatch {
			select {
			case q := <-s.saves:
				batch = append(batch, q)
			default:
				break more
			}
		}
		s.commit(batch)
		if due == nil && s.o.Sync == SyncNormal && !s.pg {
			due = time.After(s.o.DurableWithin)
		}
	}
}

// checkpoint copies the log into the database, syncing both. PASSIVE: it
// never waits for readers; a page it could not copy yet is still synced
// in the log.
func (s *Store) checkpoint() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A checkpoint that fails leaves the log as it was: the next one (or
	// SQLite's own, every 1000 pages) syncs it.
	s.db.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
}

// commit writes a batch in one transaction, each save in a savepoint of
// its own: one that fails (and only it) is rolled back.
func (s *Store) commit(batch []*saveReq) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res := make([]saveRes, len(batch))
	fail := func(err error) {
		for _, q := range batch {
			q.done <- saveRes{err: err}
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("store: %w", err))
		return
	}
	defer tx.Rollback()
	st := txStmts{tx.StmtContext(ctx, s.insert), tx.StmtContext(ctx, s.upsert), tx.StmtContext(ctx, s.supersede), nil}
	if s.fence != nil {
		st.fence = tx.StmtContext(ctx, s.fence)
	}
	if len(batch) == 1 {
		// Alone in its transaction: no savepoint needed.
		q := batch[0]
		if res[0].id, res[0].err = saveOne(ctx, st, q); res[0].err == nil {
			if err := tx.Commit(); err != nil {
				res[0].err = fmt.Errorf("store: commit: %w", err)
			}
		}
		q.done <- res[0]
		return
	}
	for i, q := range batch {
		if _, err := tx.ExecContext(ctx, `SAVEPOINT save`); err != nil {
			fail(fmt.Errorf("store: %w", err))
			return
		}
		res[i].id, res[i].err = saveOne(ctx, st, q)
		ends := []string{`RELEASE save`}
		if res[i].err != nil {
			ends = []string{`ROLLBACK TO save`, `RELEASE save`}
		}
		for _, end := range ends {
			if _, err := tx.ExecContext(ctx, end); err != nil {
				fail(fmt.Errorf("store: %w", err))
				return
			}
		}
	}
	if err := tx.Commit(); err != nil {
		fail(fmt.Errorf("store: commit: %w", err))
		return
	}
	for i, q := range batch {
		q.done <- res[i]
	}
}

// txStmts are Save's statements in one transaction.
type txStmts struct{ insert, upsert, supersede, fence *sql.Stmt }

func saveOne(ctx context.Context, st txStmts, q *saveReq) (int64, error) {
	r, o := q.r, q.o
	why := ""
	switch {
	case r.Rebooted:
		why = fmt.Sprintf("device rebooted (resetCount %d, restartCount %d): re-attested at %s", r.Clock.ResetCount, r.Clock.RestartCount, r.Time.UTC().Format(time.RFC3339))
	case o.OnDemand:
		why = "re-attested on demand at " + r.Time.UTC().Format(time.RFC3339)
	}
	if o.Lease != nil {
		if st.fence == nil {
			return 0, errors.New("store: leases need PostgreSQL")
		}
		res, err := st.fence.ExecContext(ctx, o.NextAt.UnixNano(), r.Device, o.Lease.Owner, o.Lease.Epoch)
		if err != nil {
			return 0, err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return 0, ErrLeaseLost
		}
	}
	if why != "" {
		if _, err := st.supersede.ExecContext(ctx, why, r.Device); err != nil {
			return 0, err
		}
	}
	var id int64
	nanos := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixNano()
	}
	err := st.insert.QueryRowContext(ctx,
		r.Device, r.Serial, r.Time.UnixNano(), r.Status.String(), string(q.vec), string(q.reasons), int64(r.Clock.ResetCount), int64(r.Clock.RestartCount), r.Rebooted, string(r.EAR),
		string(q.tpms), hex.EncodeToString(r.Evidence), o.Policy, o.Collector, nanos(o.Started), nanos(o.Finished)).Scan(&id)
	if err != nil {
		return 0, err
	}
	if o.State != nil {
		if _, err := st.upsert.ExecContext(ctx, r.Device, o.State, r.Time.UnixNano()); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// States returns the verifier's kept state of every device.
func (s *Store) States(ctx context.Context) (map[string][]byte, error) {
	return s.blobs(ctx, "states", `SELECT device, state FROM device_state`)
}

// blobs runs a query of (name, bytes) rows into a map.
func (s *Store) blobs(ctx context.Context, what, query string) (map[string][]byte, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(query))
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var n string
		var b []byte
		if err := rows.Scan(&n, &b); err != nil {
			return nil, err
		}
		out[n] = b
	}
	return out, rows.Err()
}

// State returns the verifier's kept state of one device (nil: none).
func (s *Store) State(ctx context.Context, device string) ([]byte, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, s.rebind(`SELECT state FROM device_state WHERE device = ?`), device).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return b, err
}

// Last returns one device's latest result.
func (s *Store) Last(ctx context.Context, device string) (Record, bool, error) {
	h, err := s.History(ctx, device, 1)
	if err != nil || len(h) == 0 {
		return Record{}, false, err
	}
	return h[0], true, nil
}

// Latest returns every device's latest result, without its EAR token
// (Last and History have it): what a collector keeps in memory.
func (s *Store) Latest(ctx context.Context) (map[string]Record, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT `+latestColumns+` FROM results
		WHERE id IN (SELECT MAX(id) FROM results GROUP BY device)`))
	if err != nil {
		return nil, fmt.Errorf("store: latest: %w", err)
	}
	recs, err := scanRecords(rows)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Record, len(recs))
	for _, r := range recs {
		out[r.Device] = r
	}
	return out, nil
}

// Prune deletes the results older than before, except each device's
// newest keep, and the notifications delivered or given up before it: the
// retention policy. It returns the number of results deleted.
func (s *Store) Prune(ctx context.Context, before time.Time, keep int) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM results WHERE at < ? AND id NOT IN (
		SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY device ORDER BY id DESC) AS n FROM results) AS ranked WHERE n <= ?)`),
		before.UnixNano(), keep)
	if err != nil {
		return 0, fmt.Errorf("store: prune: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM outbox WHERE done != 0 AND created < ?`), before.UnixNano()); err != nil {
		return n, fmt.Errorf("store: prune outbox: %w", err)
	}
	return n, nil
}

// AddDevice keeps a device added through the API (its spec as JSON), so
// that it is polled again after a restart; false when the name is taken.
func (s *Store) AddDevice(ctx context.Context, name string, spec []byte) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO devices (name, spec, added) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`), name, spec, time.Now().UnixNano())
	if err != nil {
		return false, fmt.Errorf("store: add device: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// RemoveDevice forgets a device added through the API and the verifier's
// state of it; its results stay.
func (s *Store) RemoveDevice(ctx context.Context, name string) error {
	if _, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM devices WHERE name = ?`), name); err != nil {
		return fmt.Errorf("store: remove device: %w", err)
	}
	_, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM device_state WHERE device = ?`), name)
	return err
}

// AddRIM keeps a RIM uploaded through the API (after it verified), so
// that it is used again after a restart.
func (s *Store) AddRIM(ctx context.Context, name string, raw []byte) error {
	d := sha256.Sum256(raw)
	_, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO rims (digest, name, raw, added) VALUES (?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING`),
		hex.EncodeToString(d[:]), name, raw, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("store: add RIM: %w", err)
	}
	return nil
}

// UploadedRIM is a RIM kept by AddRIM.
type UploadedRIM struct {
	Name string
	Raw  []byte
}

// RIMs returns the uploaded RIMs, in the order they came.
func (s *Store) RIMs(ctx context.Context) ([]UploadedRIM, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT name, raw FROM rims ORDER BY added, digest`))
	if err != nil {
		return nil, fmt.Errorf("store: RIMs: %w", err)
	}
	defer rows.Close()
	var out []UploadedRIM
	for rows.Next() {
		var u UploadedRIM
		if err := rows.Scan(&u.Name, &u.Raw); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// Devices returns the devices added through the API, by name.
func (s *Store) Devices(ctx context.Context) (map[string][]byte, error) {
	return s.blobs(ctx, "devices", `SELECT name, spec FROM devices`)
}

// Record is a stored result.
type Record struct {
	ID           int64
	Device       string
	Serial       string
	Time         time.Time
	Status       string
	Vector       ear.TrustVector
	Reasons      []string
	ResetCount   uint32
	RestartCount uint32
	Rebooted     bool
	EAR          string
	Superseded   string
	TPMs         []verifier.TPMResult
	Evidence     string // hex SHA-256 of the evidence bundle
	Policy       string
	// Collector appraised it, in a poll from Started to Finished (zero:
	// not recorded).
	Collector         string
	Started, Finished time.Time
}

// Result is the record as the verifier's result.
func (r *Record) Result() *verifier.Result {
	var tier ear.TrustTier
	for _, t := range []ear.TrustTier{ear.TrustTierNone, ear.TrustTierAffirming, ear.TrustTierWarning, ear.TrustTierContraindicated} {
		if t.String() == r.Status {
			tier = t
		}
	}
	ev, _ := hex.DecodeString(r.Evidence)
	return &verifier.Result{Device: r.Device, Serial: r.Serial, Status: tier, Vector: r.Vector, Reasons: r.Reasons, Rebooted: r.Rebooted,
		Clock: quote.ClockInfo{ResetCount: r.ResetCount, RestartCount: r.RestartCount}, EAR: []byte(r.EAR), Time: r.Time, TPMs: r.TPMs, Evidence: ev}
}

const recordColumns = `id, device, serial, at, status, vector, reasons, reset_count, restart_count, rebooted, ear, COALESCE(superseded, ''), tpms, evidence, policy, collector, started, finished`

// latestColumns are recordColumns without the EAR token (Latest).
var latestColumns = strings.Replace(recordColumns, " ear,", " '' AS ear,", 1)

// History returns a device's results, newest first.
func (s *Store) History(ctx context.Context, device string, limit int) ([]Record, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT `+recordColumns+` FROM results WHERE device = ? ORDER BY id DESC LIMIT ?`), device, limit)
	if err != nil {
		return nil, err
	}
	return scanRecords(rows)
}

func scanRecords(rows *sql.Rows) ([]Record, error) {
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		var at, started, finished int64
		var vec, reasons, tpms string
		if err := rows.Scan(&r.ID, &r.Device, &r.Serial, &at, &r.Status, &vec, &reasons, &r.ResetCount, &r.RestartCount, &r.Rebooted, &r.EAR, &r.Superseded,
			&tpms, &r.Evidence, &r.Policy, &r.Collector, &started, &finished); err != nil {
			return nil, err
		}
		r.Time = time.Unix(0, at)
		if started != 0 {
			r.Started = time.Unix(0, started)
		}
		if finished != 0 {
			r.Finished = time.Unix(0, finished)
		}
		if err := json.Unmarshal([]byte(vec), &r.Vector); err != nil {
			return nil, fmt.Errorf("store: result %d vector: %w", r.ID, err)
		}
		if err := json.Unmarshal([]byte(reasons), &r.Reasons); err != nil {
			return nil, fmt.Errorf("store: result %d reasons: %w", r.ID, err)
		}
		if err := json.Unmarshal([]byte(tpms), &r.TPMs); err != nil {
			return nil, fmt.Errorf("store: result %d TPMs: %w", r.ID, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Message is a notification waiting in the outbox.
type Message struct {
	ID       int64
	URL      string
	Body     []byte
	Attempts int
}

// Enqueue keeps a notification for delivery to url: it survives a
// restart until it is delivered or given up.
func (s *Store) Enqueue(ctx context.Context, url string, body []byte) (int64, error) {
	now := time.Now().UnixNano()
	var id int64
	err := s.db.QueryRowContext(ctx, s.rebind(`INSERT INTO outbox (url, body, created, next_at) VALUES (?, ?, ?, ?) RETURNING id`), url, body, now, now).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("store: outbox: %w", err)
	}
	return id, nil
}

// Due returns up to limit notifications whose next attempt is due,
// oldest first. On PostgreSQL, shared by collectors, it claims them: their
// next attempt moves ClaimFor on, so that another collector does not
// deliver them too, and one that dies holding them leaves them due again
// after it. SQLite's collector is the only deliverer: nothing to claim,
// and a restart delivers at once what was under way.
func (s *Store) Due(ctx context.Context, now time.Time, limit int) ([]Message, error) {
	query := `SELECT id, url, body, attempts FROM outbox WHERE done = 0 AND next_at <= ? ORDER BY id LIMIT ?`
	args := []any{now.UnixNano(), limit}
	if s.pg {
		query = `UPDATE outbox SET next_at = ? WHERE id IN (
			SELECT id FROM outbox WHERE done = 0 AND next_at <= ? ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED)
			RETURNING id, url, body, attempts`
		args = append([]any{now.Add(ClaimFor).UnixNano()}, args...)
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		var m Message
		if err := rows.Scan(&m.ID, &m.URL, &m.Body, &m.Attempts); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// RETURNING keeps no order.
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ClaimFor is how long Due holds a notification for its delivery on
// PostgreSQL: more than a delivery's HTTP timeout.
const ClaimFor = time.Minute

// Delivered marks a notification delivered.
func (s *Store) Delivered(ctx context.Context, id int64) error {
	_, err := s.db.ExecContext(ctx, s.rebind(`UPDATE outbox SET done = 1, attempts = attempts + 1, last_error = '' WHERE id = ?`), id)
	return err
}

// Failed records a failed attempt: the next one at next, or none when
// giveUp.
func (s *Store) Failed(ctx context.Context, id int64, next time.Time, giveUp bool, reason string) error {
	done := 0
	if giveUp {
		done = 2
	}
	_, err := s.db.ExecContext(ctx, s.rebind(`UPDATE outbox SET attempts = attempts + 1, next_at = ?, done = ?, last_error = ? WHERE id = ?`), next.UnixNano(), done, reason, id)
	return err
}

// Pending counts the notifications not delivered yet (nor given up).
func (s *Store) Pending(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.rebind(`SELECT COUNT(*) FROM outbox WHERE done = 0`)).Scan(&n)
	return n, err
}

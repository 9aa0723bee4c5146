// Package store keeps appraisal results and their history in SQLite (the
// embedded default: no setup). A reboot does not erase history: the
// results before it are marked superseded, with the reason.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/veraison/ear"
	_ "modernc.org/sqlite" // pure-Go SQLite driver

	"github.com/openriv/riv/collector/verifier"
)

const schema = `
CREATE TABLE IF NOT EXISTS results (
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
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(done, next_at);
`

// Store is a results database.
type Store struct {
	db *sql.DB
}

// Open opens (creating if needed) the SQLite database at path; ":memory:"
// for a throwaway one.
func Open(ctx context.Context, path string) (*Store, error) {
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)"
	if path == ":memory:" {
		dsn = "file::memory:?cache=shared"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db.SetMaxOpenConns(1) // SQLite: one writer; serialize in the pool
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: schema: %w", err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Save stores a result. When the device rebooted since its last result,
// the earlier results are marked superseded by this re-attestation.
func (s *Store) Save(ctx context.Context, r *verifier.Result) (int64, error) {
	vec, _ := json.Marshal(r.Vector)
	reasons, _ := json.Marshal(r.Reasons)
	if r.Reasons == nil {
		reasons = []byte("[]")
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if r.Rebooted {
		why := fmt.Sprintf("device rebooted (resetCount %d, restartCount %d): re-attested at %s", r.Clock.ResetCount, r.Clock.RestartCount, r.Time.UTC().Format(time.RFC3339))
		if _, err := tx.ExecContext(ctx, `UPDATE results SET superseded = ? WHERE device = ? AND superseded IS NULL`, why, r.Device); err != nil {
			return 0, err
		}
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO results (device, serial, at, status, vector, reasons, reset_count, restart_count, rebooted, ear)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Device, r.Serial, r.Time.UnixNano(), r.Status.String(), string(vec), string(reasons), r.Clock.ResetCount, r.Clock.RestartCount, r.Rebooted, string(r.EAR))
	if err != nil {
		return 0, err
	}
	id, _ := res.LastInsertId()
	return id, tx.Commit()
}

// Record is a stored result.
type Record struct {
	ID         int64
	Device     string
	Serial     string
	Time       time.Time
	Status     string
	Vector     ear.TrustVector
	Reasons    []string
	ResetCount uint32
	Rebooted   bool
	EAR        string
	Superseded string
}

// History returns a device's results, newest first.
func (s *Store) History(ctx context.Context, device string, limit int) ([]Record, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, device, serial, at, status, vector, reasons, reset_count, rebooted, ear, COALESCE(superseded, '')
		FROM results WHERE device = ? ORDER BY id DESC LIMIT ?`, device, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		var at int64
		var vec, reasons string
		if err := rows.Scan(&r.ID, &r.Device, &r.Serial, &at, &r.Status, &vec, &reasons, &r.ResetCount, &r.Rebooted, &r.EAR, &r.Superseded); err != nil {
			return nil, err
		}
		r.Time = time.Unix(0, at)
		if err := json.Unmarshal([]byte(vec), &r.Vector); err != nil {
			return nil, fmt.Errorf("store: result %d vector: %w", r.ID, err)
		}
		if err := json.Unmarshal([]byte(reasons), &r.Reasons); err != nil {
			return nil, fmt.Errorf("store: result %d reasons: %w", r.ID, err)
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
	res, err := s.db.ExecContext(ctx, `INSERT INTO outbox (url, body, created, next_at) VALUES (?, ?, ?, ?)`, url, body, now, now)
	if err != nil {
		return 0, fmt.Errorf("store: outbox: %w", err)
	}
	return res.LastInsertId()
}

// Due returns up to limit notifications whose next attempt is due, oldest
// first.
func (s *Store) Due(ctx context.Context, now time.Time, limit int) ([]Message, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, url, body, attempts FROM outbox WHERE done = 0 AND next_at <= ? ORDER BY id LIMIT ?`, now.UnixNano(), limit)
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
	return out, rows.Err()
}

// Delivered marks a notification delivered.
func (s *Store) Delivered(ctx context.Context, id int64) error {
	_, err := s.db.ExecContext(ctx, `UPDATE outbox SET done = 1, attempts = attempts + 1, last_error = '' WHERE id = ?`, id)
	return err
}

// Failed records a failed attempt: the next one at next, or none when
// giveUp.
func (s *Store) Failed(ctx context.Context, id int64, next time.Time, giveUp bool, reason string) error {
	done := 0
	if giveUp {
		done = 2
	}
	_, err := s.db.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, next_at = ?, done = ?, last_error = ? WHERE id = ?`, next.UnixNano(), done, reason, id)
	return err
}

// Pending counts the notifications not delivered yet (nor given up).
func (s *Store) Pending(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE done = 0`).Scan(&n)
	return n, err
}

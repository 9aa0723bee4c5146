package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
)

// pgMigrations are PostgreSQL's schema steps (riv_schema counts those
// done). The first is the SQLite schema of its time in PostgreSQL's
// types, with the leases of scale-out. The SQL keeps to what
// PostgreSQL-compatible distributed databases accept too: no
// extensions, triggers, advisory locks or stored procedures; SELECT …
// FOR UPDATE SKIP LOCKED, UPDATE … RETURNING, INSERT … ON CONFLICT,
// partial indexes and window functions (docs/scaling.md).
var pgMigrations = []string{
	`CREATE TABLE results (
		id             BIGSERIAL PRIMARY KEY,
		device         TEXT NOT NULL,
		serial         TEXT NOT NULL,
		at             BIGINT NOT NULL,           -- unix nanoseconds
		status         TEXT NOT NULL,
		vector         TEXT NOT NULL,
		reasons        TEXT NOT NULL,
		reset_count    BIGINT NOT NULL,
		restart_count  BIGINT NOT NULL,
		rebooted       BOOLEAN NOT NULL,
		ear            TEXT NOT NULL,
		superseded     TEXT,
		tpms           TEXT NOT NULL DEFAULT '[]',
		evidence       TEXT NOT NULL DEFAULT '',
		policy         TEXT NOT NULL DEFAULT '',
		collector      TEXT NOT NULL DEFAULT '',
		started        BIGINT NOT NULL DEFAULT 0,
		finished       BIGINT NOT NULL DEFAULT 0
	);
	CREATE INDEX results_device ON results(device, id);
	CREATE INDEX results_current ON results(device) WHERE superseded IS NULL;
	CREATE TABLE outbox (
		id          BIGSERIAL PRIMARY KEY,
		url         TEXT NOT NULL,
		body        BYTEA NOT NULL,
		created     BIGINT NOT NULL,
		attempts    INTEGER NOT NULL DEFAULT 0,
		next_at     BIGINT NOT NULL,
		done        INTEGER NOT NULL DEFAULT 0,
		last_error  TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX outbox_due ON outbox(done, next_at);
	CREATE TABLE device_state (
		device   TEXT PRIMARY KEY,
		state    BYTEA NOT NULL,
		updated  BIGINT NOT NULL
	);
	CREATE TABLE devices (
		name     TEXT PRIMARY KEY,
		spec     BYTEA NOT NULL,
		added    BIGINT NOT NULL
	);
	CREATE TABLE rims (
		digest   TEXT PRIMARY KEY,
		name     TEXT NOT NULL,
		raw      BYTEA NOT NULL,
		added    BIGINT NOT NULL
	);
	-- Which collector polls which device: held until expires (the
	-- database's clock), epoch counting the hands it passed through;
	-- next_at is when the device is due (unix nanoseconds), for whoever
	-- holds it next.
	CREATE TABLE leases (
		device   TEXT PRIMARY KEY,
		owner    TEXT NOT NULL DEFAULT '',
		epoch    BIGINT NOT NULL DEFAULT 0,
		expires  TIMESTAMPTZ NOT NULL DEFAULT '1970-01-01 00:00:00+00',
		next_at  BIGINT NOT NULL DEFAULT 0
	);
	CREATE INDEX leases_owner ON leases(owner);
	CREATE TABLE collectors (
		id    TEXT PRIMARY KEY,
		seen  TIMESTAMPTZ NOT NULL
	);`,
}

// OpenPostgres opens the PostgreSQL database at url (a libpq URL or
// key=value string) and migrates it: the store several collectors share.
// Options.Sync and DurableWithin are SQLite's; PostgreSQL's commits are
// as durable as its synchronous_commit makes them.
func OpenPostgres(ctx context.Context, url string, o Options) (*Store, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := migratePG(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	return start(ctx, db, true, o)
}

// migratePG brings the database to pgMigrations, one step per
// transaction. Collectors started together serialize on riv_schema's
// row; one that loses the race to create it tries again.
func migratePG(ctx context.Context, db *sql.DB) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = migratePGOnce(ctx, db); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(50*(attempt+1)) * time.Millisecond)
	}
	return err
}

func migratePGOnce(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS riv_schema (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)`); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO riv_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`); err != nil {
		return err
	}
	for {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		var v int
		if err := tx.QueryRowContext(ctx, `SELECT version FROM riv_schema WHERE id = 1 FOR UPDATE`).Scan(&v); err != nil {
			tx.Rollback()
			return err
		}
		if v > len(pgMigrations) {
			tx.Rollback()
			return fmt.Errorf("schema version %d is newer than this collector's (%d)", v, len(pgMigrations))
		}
		if v == len(pgMigrations) {
			return tx.Rollback()
		}
		if _, err := tx.ExecContext(ctx, pgMigrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE riv_schema SET version = $1 WHERE id = 1`, v+1); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
	}
}

// rebind writes a query's ? placeholders as PostgreSQL's $1, $2, …
// (the queries here have no ? inside literals).
func (s *Store) rebind(q string) string {
	if !s.pg || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// Postgres says whether the store is PostgreSQL (shared by collectors).
func (s *Store) Postgres() bool { return s.pg }

// Lease is a collector's hold on a device: Epoch changes each time the
// device changes hands, so that a result saved under an old hold is
// refused (Saved.Lease).
type Lease struct {
	Owner string
	Epoch int64
}

// Grant is a lease taken or renewed: the device, its epoch, and when it
// is due (zero: whenever).
type Grant struct {
	Device string
	Epoch  int64
	NextAt time.Time
}

var errNoLeases = errors.New("store: leases need PostgreSQL")

// ms is a duration for the SQL below: whole milliseconds.
func ms(d time.Duration) int64 { return d.Milliseconds() }

// Heartbeat says the collector owner is alive and returns how many are
// (seen within ttl, by the database's clock), itself included; those
// not seen for ten ttl are forgotten.
func (s *Store) Heartbeat(ctx context.Context, owner string, ttl time.Duration) (int, error) {
	if !s.pg {
		return 0, errNoLeases
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO collectors (id, seen) VALUES ($1, now())
		ON CONFLICT (id) DO UPDATE SET seen = excluded.seen`, owner); err != nil {
		return 0, fmt.Errorf("store: heartbeat: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM collectors WHERE seen < now() - ($1::BIGINT * INTERVAL '1 millisecond')`, 10*ms(ttl)); err != nil {
		return 0, fmt.Errorf("store: heartbeat: %w", err)
	}
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM collectors WHERE seen > now() - ($1::BIGINT * INTERVAL '1 millisecond')`, ms(ttl)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: heartbeat: %w", err)
	}
	return n, nil
}

// AddLeases makes the devices leasable (free until someone takes them);
// those that are already stay as they are.
func (s *Store) AddLeases(ctx context.Context, devices []string) error {
	if !s.pg {
		return errNoLeases
	}
	for len(devices) > 0 {
		n := min(len(devices), 5000)
		if _, err := s.db.ExecContext(ctx, `INSERT INTO leases (device) SELECT unnest($1::TEXT[]) ON CONFLICT (device) DO NOTHING`, devices[:n]); err != nil {
			return fmt.Errorf("store: add leases: %w", err)
		}
		devices = devices[n:]
	}
	return nil
}

// LeaseCounts returns the number of leasable devices and of those held
// (not expired).
func (s *Store) LeaseCounts(ctx context.Context) (total, held int, err error) {
	if !s.pg {
		return 0, 0, errNoLeases
	}
	err = s.db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(*) FILTER (WHERE expires > now()) FROM leases`).Scan(&total, &held)
	if err != nil {
		err = fmt.Errorf("store: leases: %w", err)
	}
	return total, held, err
}

// Renew extends every lease owner holds by ttl from now (the database's
// clock) and returns them: a lease that expired but that nobody took is
// the owner's again with its epoch.
func (s *Store) Renew(ctx context.Context, owner string, ttl time.Duration) ([]Grant, error) {
	if !s.pg {
		return nil, errNoLeases
	}
	return s.grants(ctx, "renew", `UPDATE leases SET expires = now() + ($2::BIGINT * INTERVAL '1 millisecond')
		WHERE owner = $1 RETURNING device, epoch, next_at`, owner, ms(ttl))
}

// Claim takes up to n of the given devices whose lease is free or
// expired, for ttl: each in a new epoch. Rows another collector is
// claiming at the same moment are skipped, not waited for.
func (s *Store) Claim(ctx context.Context, owner string, ttl time.Duration, devices []string, n int) ([]Grant, error) {
	if !s.pg {
		return nil, errNoLeases
	}
	if n <= 0 || len(devices) == 0 {
		return nil, nil
	}
	return s.grants(ctx, "claim", `UPDATE leases SET owner = $1, epoch = epoch + 1, expires = now() + ($2::BIGINT * INTERVAL '1 millisecond')
		WHERE device IN (SELECT device FROM leases WHERE expires <= now() AND device = ANY($3::TEXT[])
			ORDER BY expires, device LIMIT $4 FOR UPDATE SKIP LOCKED)
		RETURNING device, epoch, next_at`, owner, ms(ttl), devices, n)
}

// Release gives up owner's leases of the devices: free at once for the
// others.
func (s *Store) Release(ctx context.Context, owner string, devices []string) error {
	if !s.pg {
		return errNoLeases
	}
	if len(devices) == 0 {
		return nil
	}
	_, err := s.db.ExecContext(ctx, `UPDATE leases SET owner = '', expires = '1970-01-01 00:00:00+00'
		WHERE owner = $1 AND device = ANY($2::TEXT[])`, owner, devices)
	if err != nil {
		return fmt.Errorf("store: release: %w", err)
	}
	return nil
}

// Leave releases every lease owner holds and forgets its heartbeat: a
// collector stopping hands its devices and its share over at once.
func (s *Store) Leave(ctx context.Context, owner string) error {
	if !s.pg {
		return errNoLeases
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE leases SET owner = '', expires = '1970-01-01 00:00:00+00' WHERE owner = $1`, owner); err != nil {
		return fmt.Errorf("store: leave: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM collectors WHERE id = $1`, owner); err != nil {
		return fmt.Errorf("store: leave: %w", err)
	}
	return nil
}

// Owners returns each leasable device's holder ("" when free or
// expired).
func (s *Store) Owners(ctx context.Context) (map[string]string, error) {
	if !s.pg {
		return nil, errNoLeases
	}
	rows, err := s.db.QueryContext(ctx, `SELECT device, CASE WHEN expires > now() THEN owner ELSE '' END FROM leases`)
	if err != nil {
		return nil, fmt.Errorf("store: owners: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var d, o string
		if err := rows.Scan(&d, &o); err != nil {
			return nil, err
		}
		out[d] = o
	}
	return out, rows.Err()
}

func (s *Store) grants(ctx context.Context, what, query string, args ...any) ([]Grant, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	var out []Grant
	for rows.Next() {
		var g Grant
		var next int64
		if err := rows.Scan(&g.Device, &g.Epoch, &next); err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		if next != 0 {
			g.NextAt = time.Unix(0, next)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return out, nil
}

package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations
var migrations embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// Migrations are written once, in the subset both engines accept, rather
// than twice per dialect (STYLE.md §6 suggests a file per dialect; two copies
// of each schema drift apart). The one type name that differs is translated
// when loading: BLOB (SQLite) becomes BYTEA on PostgreSQL. A migration that
// needs more than that may be given as migrations/<dialect>/NNNN_name.sql,
// which replaces the shared file of the same number for that dialect.
var dialectTypes = map[Dialect]*strings.Replacer{
	Postgres: strings.NewReplacer(" BLOB", " BYTEA"),
}

// loadMigrations reads the numbered migration files of a dialect, in order.
// Files are named NNNN_description.sql; numbers must be unique and increasing.
func loadMigrations(d Dialect) ([]migration, error) {
	shared, err := readMigrationDir("migrations", d)
	if err != nil {
		return nil, err
	}
	own, err := readMigrationDir("migrations/"+d.String(), d)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	byVersion := map[int]migration{}
	for _, m := range shared {
		byVersion[m.version] = m
	}
	for _, m := range own {
		byVersion[m.version] = m
	}
	out := make([]migration, 0, len(byVersion))
	for _, m := range byVersion {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

func readMigrationDir(dir string, d Dialect) ([]migration, error) {
	entries, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number and '_'", name)
		}
		data, err := migrations.ReadFile(dir + "/" + name)
		if err != nil {
			return nil, err
		}
		text := string(data)
		if r := dialectTypes[d]; r != nil && dir == "migrations" {
			text = r.Replace(text)
		}
		out = append(out, migration{version: v, name: name, sql: text})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share a number", out[i-1].name, out[i].name)
		}
	}
	return out, nil
}

// migrate applies every migration not yet recorded in schema_migrations, each
// in its own transaction. On PostgreSQL an advisory lock keeps several
// processes starting at once from applying the same migration twice.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := loadMigrations(db.dialect)
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	conn, err := db.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	if db.dialect == Postgres {
		// An arbitrary constant: "polder" in ASCII.
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(112111108100101114)"); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(112111108100101114)")
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		name TEXT NOT NULL,
		applied_ts BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		applied[v] = true
	}
	rows.Close()
	if max := len(ms); max > 0 {
		for v := range applied {
			if v > ms[max-1].version {
				return fmt.Errorf("migrate: the database has schema version %d, newer than this binary knows (%d): upgrade Polder", v, ms[max-1].version)
			}
		}
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_ts) VALUES ($1, $2, $3)", m.version, m.name, nowMS()); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: record: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %s: commit: %w", m.name, err)
		}
		db.log.Info("applied database migration", "migration", m.name, "database", db.dialect.String())
	}
	return nil
}

// SchemaVersion returns the newest applied migration number.
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := db.r.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v)
	return v, err
}

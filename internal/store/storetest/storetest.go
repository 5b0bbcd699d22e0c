// Package storetest runs store tests on both engines. Each(t, fn) runs fn
// once on a fresh SQLite database and once on a fresh PostgreSQL database
// when POLDER_TEST_POSTGRES holds a DSN (scripts/postgres.sh starts one).
// In CI (CI=true) PostgreSQL is required: a missing DSN fails the test.
//
// Test-only.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"polder.dev/polder/internal/store"
)

// Engine is one database to run a test on.
type Engine struct {
	Name string
	// Options opens a fresh, empty database of this engine.
	Options func(tb testing.TB) store.Options
}

// Engines lists the engines to test on: SQLite always, PostgreSQL when
// POLDER_TEST_POSTGRES is set.
func Engines(tb testing.TB) []Engine {
	tb.Helper()
	out := []Engine{{Name: "sqlite", Options: func(tb testing.TB) store.Options {
		return store.Options{DataDir: tb.TempDir()}
	}}}
	dsn := os.Getenv("POLDER_TEST_POSTGRES")
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("POLDER_TEST_POSTGRES is not set: CI must run every store test on PostgreSQL too (scripts/test.sh sets it)")
		}
		return out
	}
	return append(out, Engine{Name: "postgres", Options: func(tb testing.TB) store.Options {
		return store.Options{Database: FreshPostgres(tb, dsn), DataDir: tb.TempDir()}
	}})
}

// Each runs fn on a fresh database of every engine, as subtests.
func Each(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	for _, e := range Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			fn(t, Open(t, e.Options(t)))
		})
	}
}

// Open opens a store and closes it when the test ends.
func Open(tb testing.TB, o store.Options) *store.DB {
	tb.Helper()
	db, err := store.Open(context.Background(), o)
	if err != nil {
		tb.Fatalf("store.Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// FreshPostgres creates an empty database on the server of dsn, drops it
// when the test ends, and returns its DSN.
func FreshPostgres(tb testing.TB, dsn string) string {
	tb.Helper()
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		tb.Fatalf("open postgres: %v", err)
	}
	defer admin.Close()
	var b [6]byte
	rand.Read(b[:])
	name := "polder_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		a, err := sql.Open("pgx", dsn)
		if err != nil {
			return
		}
		defer a.Close()
		a.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatalf("parse dsn: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

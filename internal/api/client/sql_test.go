package client_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	_ "modernc.org/sqlite"             // the "sqlite" driver

	"polder.dev/polder/internal/hstest"
)

// execSQL runs one statement on hs's database through a connection of its
// own, for states the API cannot reach in test time (an access token past
// its expiry). It ties the test to the schema: prefer the API, and replace
// this with a clock hook once the server has one. Placeholders are $1, $2...
func execSQL(t *testing.T, hs *hstest.Server, query string, args ...any) {
	t.Helper()
	driver, dsn := "pgx", hs.Config.Database
	if dsn == "" {
		driver = "sqlite"
		dsn = "file:" + filepath.Join(hs.Config.DataDir, "polder.db") + "?_pragma=busy_timeout(10000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("open %s database: %v", driver, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), query, args...); err != nil {
		t.Fatalf("exec %q: %v", query, err)
	}
}

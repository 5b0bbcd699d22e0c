package hstest

import (
	"database/sql"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	_ "modernc.org/sqlite"             // the "sqlite" driver
)

// ExecSQL runs one statement on the server's database through a connection
// of its own, for states the API cannot reach in test time (an access token
// past its expiry). It ties the test to the schema: prefer the API, and
// prefer a clock hook once the server has one. Placeholders are $1, $2, ...
func (s *Server) ExecSQL(tb testing.TB, query string, args ...any) {
	tb.Helper()
	driver, dsn := "pgx", s.Config.Database
	if dsn == "" {
		driver = "sqlite"
		dsn = "file:" + filepath.Join(s.Config.DataDir, "polder.db") + "?_pragma=busy_timeout(10000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		tb.Fatalf("open %s database: %v", driver, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(tb.Context(), query, args...); err != nil {
		tb.Fatalf("exec %q: %v", query, err)
	}
}

// Command modernc is the smoke program and benchmark entry point for
// modernc.org/sqlite (SQLite transpiled from C to Go, no cgo).
package main

import (
	"errors"
	"fmt"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"polder.dev/polder/bench/sqlitedriver/sqlitebench"
)

var drv = sqlitebench.Driver{
	Name:    "modernc",
	SQLName: "sqlite",
	DSN:     dsn,
	IsBusy: func(err error) bool {
		var se *sqlite.Error
		return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
	},
	// modernc maps "$N" and "?N" to database/sql ordinal N itself.
	DollarByPosition: false,
}

// dsn uses _pragma=name(value); the driver runs busy_timeout first and the
// other _pragma values in lexical order on every new connection. _txlock is
// the driver's own parameter for the BEGIN mode.
func dsn(path string, o sqlitebench.Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "file:%s?_pragma=busy_timeout(%d)", path, o.BusyTimeout.Milliseconds())
	fmt.Fprintf(&b, "&_pragma=journal_mode(WAL)&_pragma=synchronous(%s)&_pragma=foreign_keys(1)", o.Synchronous)
	if o.QueryOnly {
		b.WriteString("&_pragma=query_only(1)")
	}
	if o.Immediate {
		b.WriteString("&_txlock=immediate")
	}
	return b.String()
}

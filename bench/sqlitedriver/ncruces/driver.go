// Command ncruces is the smoke program and benchmark entry point for
// github.com/ncruces/go-sqlite3 (SQLite built to Wasm and translated to Go
// by wasm2go, no cgo).
package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ncruces/go-sqlite3"
	_ "github.com/ncruces/go-sqlite3/driver"

	"polder.dev/polder/bench/sqlitedriver/sqlitebench"
)

var drv = sqlitebench.Driver{
	Name:    "ncruces",
	SQLName: "sqlite3",
	DSN:     dsn,
	IsBusy: func(err error) bool {
		return errors.Is(err, sqlite3.BUSY)
	},
	// The driver binds database/sql ordinal k to SQLite parameter index k.
	DollarByPosition: true,
}

// dsn uses _pragma=name(value), applied in the order given on every new
// connection (busy_timeout first, as the driver's docs ask); _txlock is the
// driver's own parameter for the BEGIN mode.
func dsn(path string, o sqlitebench.Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "file:%s?_pragma=busy_timeout(%d)", path, o.BusyTimeout.Milliseconds())
	fmt.Fprintf(&b, "&_pragma=journal_mode(wal)&_pragma=synchronous(%s)&_pragma=foreign_keys(1)", o.Synchronous)
	if o.QueryOnly {
		b.WriteString("&_pragma=query_only(1)")
	}
	if o.Immediate {
		b.WriteString("&_txlock=immediate")
	}
	return b.String()
}

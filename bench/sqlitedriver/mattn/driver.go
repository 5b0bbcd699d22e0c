// Command mattn is the smoke program and benchmark entry point for
// github.com/mattn/go-sqlite3 (SQLite's C amalgamation through cgo).
package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mattn/go-sqlite3"

	"polder.dev/polder/bench/sqlitedriver/sqlitebench"
)

var drv = sqlitebench.Driver{
	Name:    "mattn",
	SQLName: "sqlite3",
	DSN:     dsn,
	IsBusy: func(err error) bool {
		var se sqlite3.Error
		return errors.As(err, &se) && se.Code == sqlite3.ErrBusy
	},
	// The driver binds database/sql ordinal k to SQLite parameter index k.
	DollarByPosition: true,
}

// dsn uses the driver's own _name=value parameters, which it turns into
// PRAGMAs on every new connection (it has no generic _pragma parameter).
func dsn(path string, o sqlitebench.Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "file:%s?_busy_timeout=%d", path, o.BusyTimeout.Milliseconds())
	fmt.Fprintf(&b, "&_journal_mode=WAL&_synchronous=%s&_foreign_keys=1", o.Synchronous)
	if o.QueryOnly {
		b.WriteString("&_query_only=1")
	}
	if o.Immediate {
		b.WriteString("&_txlock=immediate")
	}
	return b.String()
}

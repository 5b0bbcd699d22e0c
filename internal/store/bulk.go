package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// Multi-row INSERTs: writing thousands of rows in one transaction (a big
// room's state on join) one statement per row costs a round trip per row
// on PostgreSQL. insertRows writes many rows per statement.

// bulkChunks are the row counts of the statements insertRows uses,
// largest first: rows are written in as many of the largest as fit, then
// the smaller ones, so that whatever their number only these few statement
// texts exist (each prepared once). Keep rows×columns under SQLite's 32,766
// parameters and PostgreSQL's 65,535.
var bulkChunks = [...]int{256, 64, 16, 4, 1}

// bulkStmts caches statement texts by dialect, head, tail, columns and rows.
var bulkStmts sync.Map // bulkKey → string

type bulkKey struct {
	d          Dialect
	head, tail string
	cols, rows int
}

// bulkStatement is head, then rows groups of cols placeholders, then tail.
// SQLite's placeholders are anonymous (?): it looks each $N up by name in
// a list, which makes a statement of thousands of them quadratic to parse
// and to bind (320 µs a row at 3,840 parameters).
func bulkStatement(d Dialect, head, tail string, cols, rows int) string {
	k := bulkKey{d, head, tail, cols, rows}
	if s, ok := bulkStmts.Load(k); ok {
		return s.(string)
	}
	var b strings.Builder
	b.WriteString(head)
	for r := range rows {
		if r > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteByte(',')
			}
			if d == SQLite {
				b.WriteByte('?')
			} else {
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(r*cols + c + 1))
			}
		}
		b.WriteByte(')')
	}
	b.WriteString(tail)
	s := b.String()
	bulkStmts.Store(k, s)
	return s
}

// insertRows runs head + VALUES groups + tail for the rows in args (cols
// values a row, row after row), many rows per statement. head ends with
// "VALUES "; tail is "" or an ON CONFLICT clause, which must not meet the
// same key twice in one statement (PostgreSQL refuses DO UPDATE of a row
// twice).
func (tx *Tx) insertRows(ctx context.Context, head, tail string, cols int, args []any) error {
	if len(args)%cols != 0 {
		return fmt.Errorf("insert rows: %d values for rows of %d", len(args), cols)
	}
	rows := len(args) / cols
	for _, n := range bulkChunks {
		for rows >= n {
			if _, err := tx.ExecContext(ctx, bulkStatement(tx.dialect, head, tail, cols, n), args[:n*cols]...); err != nil {
				return err
			}
			args = args[n*cols:]
			rows -= n
		}
	}
	return nil
}

package sqlitebench_test

import (
	"testing"

	"polder.dev/polder/bench/sqlitedriver/sqlitebench"
)

func TestNumbered(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "none", in: `SELECT 1`, want: `SELECT 1`},
		{name: "in order", in: `SELECT a FROM t WHERE a = $1 AND b = $2`, want: `SELECT a FROM t WHERE a = ?1 AND b = ?2`},
		{name: "out of order", in: `WHERE b = $2 AND a = $1`, want: `WHERE b = ?2 AND a = ?1`},
		{name: "multi digit", in: `VALUES ($10, $1)`, want: `VALUES (?10, ?1)`},
		{name: "string literal", in: `SELECT '$1', 'it''s $2', $3`, want: `SELECT '$1', 'it''s $2', ?3`},
		{name: "quoted identifier", in: `SELECT "a$1" FROM t WHERE x = $1`, want: `SELECT "a$1" FROM t WHERE x = ?1`},
		{name: "line comment", in: "SELECT $1 -- $2\n, $2", want: "SELECT ?1 -- $2\n, ?2"},
		{name: "block comment", in: `SELECT /* $1 */ $1`, want: `SELECT /* $1 */ ?1`},
		{name: "unterminated literal", in: `SELECT '$1`, want: `SELECT '$1`},
		{name: "bare dollar", in: `SELECT $a, $0, $`, want: `SELECT $a, $0, $`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sqlitebench.Numbered(tt.in); got != tt.want {
				t.Errorf("Numbered(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

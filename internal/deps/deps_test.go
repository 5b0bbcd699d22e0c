// Package deps_test enforces the package layering of ../shared/STYLE.md §1:
// a package may import only packages below it, and only internal/store may
// import database/sql and the database drivers.
package deps_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "polder.dev/polder/"

// rank orders the packages: a package may import only packages of a lower
// rank. Packages missing here fail the test, so that each new package is
// placed deliberately.
var rank = map[string]int{
	"cmd/polder":               1000,
	"internal/hstest":          900, // test-only harness
	"internal/server":          800,
	"internal/api/client":      700,
	"internal/api/federation":  700,
	"internal/api/media":       700,
	"internal/api":             650,
	"internal/sync":            600,
	"internal/media":           580,
	"internal/push":            560,
	"internal/directory":       520,
	"internal/room":            500,
	"internal/federation":      450,
	"internal/identity":        450,
	"internal/user":            400,
	"internal/e2ee":            470, // imports federation (wire types, client), below room
	"internal/typing":          380,
	"internal/receipt":         380,
	"internal/presence":        380,
	"internal/notify":          350,
	"internal/store/storetest": 310,
	"internal/store":           300,
	"internal/stateres":        250,
	"internal/eventauth":       200,
	"internal/event":           150,
	"internal/keys":            100,
	"internal/cjson":           50,
	"internal/mxerr":           10,
	"internal/mx":              10,
	"internal/config":          10,
	"internal/deps":            0,

	// polder-bench: a load tool that speaks only HTTP to any homeserver;
	// internal/bench imports std only.
	"cmd/polder-bench": 1000,
	"internal/bench":   5,
}

var sqlOnly = []string{"database/sql", "github.com/jackc/pgx", "modernc.org/sqlite", "github.com/mattn/go-sqlite3", "github.com/lib/pq"}

func TestLayering(t *testing.T) {
	root := filepath.Join("..", "..")
	for _, top := range []string{"cmd", "internal"} {
		filepath.WalkDir(filepath.Join(root, top), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
				return err
			}
			rel, _ := filepath.Rel(root, filepath.Dir(path))
			pkg := filepath.ToSlash(rel)
			if strings.Contains(pkg, "/testdata") {
				return nil
			}
			isTest := strings.HasSuffix(path, "_test.go")
			r, ok := rank[pkg]
			if !ok {
				t.Errorf("%s: package %s has no place in the layering: add it to rank in internal/deps/deps_test.go", path, pkg)
				return nil
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				t.Errorf("parse %s: %v", path, err)
				return nil
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if !isTest && pkg != "internal/store" && pkg != "internal/store/storetest" {
					for _, s := range sqlOnly {
						if p == s || strings.HasPrefix(p, s+"/") {
							t.Errorf("%s imports %s: only internal/store may use SQL", path, p)
						}
					}
				}
				dep, ok := strings.CutPrefix(p, module)
				if !ok || isTest || dep == pkg {
					continue
				}
				dr, ok := rank[dep]
				if !ok {
					t.Errorf("%s imports %s, which has no place in the layering", path, dep)
					continue
				}
				if dr >= r {
					t.Errorf("%s (%s, rank %d) imports %s (rank %d): a package may import only packages below it", path, pkg, r, dep, dr)
				}
			}
			return nil
		})
	}
}

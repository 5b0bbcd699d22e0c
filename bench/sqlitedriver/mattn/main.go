package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"polder.dev/polder/bench/sqlitedriver/sqlitebench"
)

// main opens a WAL database (the path in os.Args[1], or a new temporary
// one), writes an event and reads it back: enough to show that a binary
// built with this driver works.
func main() {
	path := ""
	if len(os.Args) > 1 {
		path = os.Args[1]
	} else {
		dir, err := os.MkdirTemp("", "sqlitesmoke")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "smoke.db")
	}
	v, j, err := sqlitebench.Smoke(context.Background(), drv, path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", drv.Name, err)
		os.Exit(1)
	}
	fmt.Printf("%s: sqlite %s, journal_mode=%s\n", drv.Name, v, j)
}

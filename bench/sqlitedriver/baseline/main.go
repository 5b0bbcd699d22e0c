// Command baseline links the same smoke program as the driver commands but
// no SQLite driver, so its size is what the drivers' sizes are compared to.
package main

import (
	"context"
	"fmt"
	"os"

	"polder.dev/polder/bench/sqlitedriver/sqlitebench"
)

func main() {
	d := sqlitebench.Driver{Name: "baseline", SQLName: "none", DSN: func(p string, _ sqlitebench.Options) string { return p }}
	_, _, err := sqlitebench.Smoke(context.Background(), d, os.DevNull)
	fmt.Println("baseline (no driver):", err)
}

package config

import (
	"fmt"
	"strings"
	"time"
)

// Example returns a commented YAML config file with every setting at its
// default, for `polder generate-config`.
func Example() string {
	c := Default()
	var b strings.Builder
	b.WriteString("# Polder configuration. Every setting can also be given as a flag\n")
	b.WriteString("# (--name-with-dashes) or an environment variable (POLDER_NAME);\n")
	b.WriteString("# flags win over the environment, which wins over this file.\n\n")
	for _, s := range c.settings() {
		fmt.Fprintf(&b, "# %s\n", s.usage)
		switch p := s.ptr.(type) {
		case *string:
			fmt.Fprintf(&b, "%s: %q\n\n", s.name, *p)
		case *time.Duration:
			fmt.Fprintf(&b, "%s: %s\n\n", s.name, p.String())
		case *bool:
			fmt.Fprintf(&b, "%s: %v\n\n", s.name, *p)
		case *int:
			fmt.Fprintf(&b, "%s: %d\n\n", s.name, *p)
		case *int64:
			fmt.Fprintf(&b, "%s: %d\n\n", s.name, *p)
		case *float64:
			fmt.Fprintf(&b, "%s: %v\n\n", s.name, *p)
		}
	}
	return b.String()
}

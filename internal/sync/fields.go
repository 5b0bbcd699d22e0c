package sync

import (
	"encoding/json"
	"strings"
)

// fieldTree is a set of dot-separated property paths (appendices,
// "Dot-separated property paths") as a tree: a node with keep set keeps its
// whole value.
type fieldTree struct {
	keep     bool
	children map[string]*fieldTree
}

// parseFields builds the tree of a filter's event_fields; nil keeps every
// field.
func parseFields(paths []string) *fieldTree {
	if paths == nil {
		return nil
	}
	root := &fieldTree{}
	for _, p := range paths {
		n := root
		for _, name := range splitPath(p) {
			if n.keep {
				break // a parent is kept whole
			}
			if n.children == nil {
				n.children = map[string]*fieldTree{}
			}
			c := n.children[name]
			if c == nil {
				c = &fieldTree{}
				n.children[name] = c
			}
			n = c
		}
		n.keep, n.children = true, nil
	}
	return root
}

// splitPath splits a dot-separated path: "\." is a literal dot and "\\" a
// literal backslash; other escapes stay as written.
func splitPath(p string) []string {
	var out []string
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' && i+1 < len(p) && (p[i+1] == '.' || p[i+1] == '\\'):
			b.WriteByte(p[i+1])
			i++
		case c == '.':
			out = append(out, b.String())
			b.Reset()
		default:
			b.WriteByte(c)
		}
	}
	return append(out, b.String())
}

// apply keeps only the tree's fields of a JSON object. A value that is
// not an object where the tree goes deeper is dropped.
func (t *fieldTree) apply(obj json.RawMessage) json.RawMessage {
	if t == nil || t.keep {
		return obj
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil || m == nil {
		return obj
	}
	out := make(map[string]json.RawMessage, len(t.children))
	for name, c := range t.children {
		v, ok := m[name]
		if !ok {
			continue
		}
		if c.keep {
			out[name] = v
			continue
		}
		if len(v) == 0 || v[0] != '{' {
			continue
		}
		out[name] = c.apply(v)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return obj
	}
	return b
}

package stateres_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"polder.dev/polder/internal/stateres"
)

// TestFixtures runs every JSON DAG fixture in testdata/ with the real
// authorization rules (eventauth.Check), and checks what each step of the
// algorithm found against what the fixture's reasoning worked out by hand.
// Each subtest names the step it checks.
func TestFixtures(t *testing.T) {
	for _, path := range fixtureFiles(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			f := loadFixture(t, path)
			r := stateres.New(stateres.Config{Source: f.events})
			got, tr, err := stateres.ResolveTrace(context.Background(), r, f.version, f.states)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			sets := []struct {
				step      string
				got, want []string
			}{
				{"conflicted state set", sortedNames(tr.Conflicted), f.Conflicted},
				{"auth difference", sortedNames(tr.AuthDifference), f.AuthDifference},
				{"conflicted state subgraph", sortedNames(tr.Subgraph), f.Subgraph},
				{"full conflicted set", sortedNames(tr.FullConflicted), f.FullConflicted},
			}
			for _, s := range sets {
				if s.want == nil {
					continue
				}
				t.Run(s.step, func(t *testing.T) {
					if want := sortedCopy(s.want); !slices.Equal(s.got, want) {
						t.Errorf("Resolve: %s = %v, want %v", s.step, s.got, want)
					}
				})
			}
			lists := []struct {
				step      string
				got, want []string
			}{
				{"step 1 reverse topological power ordering", names(tr.PowerOrder), f.PowerOrder},
				{"step 3 mainline", names(tr.Mainline), f.Mainline},
				{"step 3 mainline ordering", names(tr.MainlineOrder), f.MainlineOrder},
			}
			for _, l := range lists {
				if l.want == nil {
					continue
				}
				t.Run(l.step, func(t *testing.T) {
					if !slices.Equal(l.got, l.want) {
						t.Errorf("Resolve: %s = %v, want %v", l.step, l.got, l.want)
					}
				})
			}
			if f.Partial != nil {
				t.Run("step 2 iterative auth checks of power events", func(t *testing.T) {
					for k, want := range f.Partial {
						key := parseKey(k)
						gotID, ok := tr.Partial[key]
						switch {
						case want == "" && ok:
							t.Errorf("Resolve: partial state %v = %s, want absent", key, nameOf(gotID))
						case want != "" && gotID != eventID(want):
							t.Errorf("Resolve: partial state %v = %q, want %s", key, nameOf(gotID), want)
						}
					}
				})
			}
			t.Run("resolved state", func(t *testing.T) {
				want := f.stateOf(t, f.Resolved)
				if describe(got) != describe(want) {
					t.Errorf("Resolve = %s\nwant %s", describe(got), describe(want))
				}
			})
			// The result does not depend on the order of the states.
			t.Run("states reversed", func(t *testing.T) {
				rev := slices.Clone(f.states)
				slices.Reverse(rev)
				again, err := stateres.New(stateres.Config{Source: f.events}).Resolve(context.Background(), f.version, rev)
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				if describe(again) != describe(got) {
					t.Errorf("Resolve(reversed) = %s\nResolve = %s", describe(again), describe(got))
				}
			})
		})
	}
}

package stateres_test

import (
	"context"
	"fmt"
	"testing"

	"polder.dev/polder/internal/stateres"
)

// BenchmarkResolveSmall resolves the forks a busy small room sees on
// ingest (polder-bench's federation scenarios): 100 or 1,000 state events
// with 10 conflicted member entries, authorised by eventauth, with the
// room's Resolver kept (warm) as a server keeps it.
func BenchmarkResolveSmall(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{100, 1000} {
		room := newBenchRoom(b, n, 10)
		states := []stateres.StateMap{room.a, room.b}
		b.Run(fmt.Sprintf("state=%d/conflicts=10", n), func(b *testing.B) {
			r := stateres.New(stateres.Config{Source: room.events})
			if _, err := r.Resolve(ctx, room.version, states); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Resolve(ctx, room.version, states); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package store

import (
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/stateres"
)

func snapshotOf(n int) stateres.StateMap {
	m := make(stateres.StateMap, n)
	for i := range n {
		m[stateres.StateKey{Type: "m.room.member", StateKey: fmt.Sprint(i)}] = id.EventID(fmt.Sprint("$", i))
	}
	return m
}

// The snapshot cache holds many small snapshots, evicts the oldest to stay
// within its entry budget, and does not take a snapshot that would fill it.
func TestSnapshotCache(t *testing.T) {
	var c snapshotCache
	for nid := range int64(2000) {
		c.put(nid, snapshotOf(10))
	}
	if _, ok := c.get(0); !ok {
		t.Error("2,000 small snapshots: the first was evicted; a count cap of 512 is gone")
	}
	big := snapshotOf(snapshotCacheEntries / 8)
	for nid := int64(10_000); nid < 10_010; nid++ {
		c.put(nid, big)
	}
	if c.entries > snapshotCacheEntries {
		t.Errorf("cache holds %d entries, over its budget of %d", c.entries, snapshotCacheEntries)
	}
	if _, ok := c.get(10_009); !ok {
		t.Error("the newest snapshot is not cached")
	}
	if _, ok := c.get(0); ok {
		t.Error("the oldest snapshot stayed although the budget was exceeded")
	}
	c.put(20_000, snapshotOf(snapshotCacheEntries/4+1))
	if _, ok := c.get(20_000); ok {
		t.Error("a snapshot of over a quarter of the budget was cached")
	}
	sum := 0
	for _, s := range c.m {
		sum += len(s)
	}
	if sum != c.entries || len(c.m) != len(c.fifo) {
		t.Errorf("bookkeeping: %d entries counted, %d held; %d snapshots, %d in order", c.entries, sum, len(c.m), len(c.fifo))
	}
}

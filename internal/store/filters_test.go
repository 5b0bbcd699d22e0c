package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestFilters(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f1, err := db.CreateFilter(ctx, "@a:hs", []byte(`{"room":{}}`))
		if err != nil || f1 != 0 {
			t.Fatalf("first CreateFilter = %d, %v; want 0", f1, err)
		}
		f2, err := db.CreateFilter(ctx, "@a:hs", []byte(`{"presence":{}}`))
		if err != nil || f2 != 1 {
			t.Fatalf("second CreateFilter = %d, %v; want 1", f2, err)
		}
		again, err := db.CreateFilter(ctx, "@a:hs", []byte(`{"room":{}}`))
		if err != nil || again != f1 {
			t.Errorf("CreateFilter of a known filter = %d, %v; want its ID %d", again, err, f1)
		}
		other, err := db.CreateFilter(ctx, "@b:hs", []byte(`{"presence":{}}`))
		if err != nil || other != 0 {
			t.Errorf("CreateFilter for another user = %d, %v; want 0 (IDs count per user)", other, err)
		}
		if f, err := db.Filter(ctx, "@a:hs", f2); err != nil || string(f) != `{"presence":{}}` {
			t.Errorf("Filter(a, %d) = %s, %v", f2, f, err)
		}
		if _, err := db.Filter(ctx, "@b:hs", 1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Filter(b, 1): got %v, want ErrNotFound", err)
		}

		// Concurrent uploads get distinct IDs.
		var wg sync.WaitGroup
		ids := make([]int64, 10)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				ids[i], err = db.CreateFilter(ctx, "@c:hs", fmt.Appendf(nil, `{"n":%d}`, i))
				if err != nil {
					t.Errorf("CreateFilter %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		seen := map[int64]bool{}
		for _, id := range ids {
			if seen[id] {
				t.Errorf("concurrent CreateFilter gave ID %d twice: %v", id, ids)
			}
			seen[id] = true
		}
	})
}

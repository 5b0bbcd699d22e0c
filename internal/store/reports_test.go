package store_test

import (
	"context"
	"errors"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestReports(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		score := int64(-50)
		add := func(r store.Report) int64 {
			t.Helper()
			rid, err := db.AddReport(ctx, r)
			if err != nil {
				t.Fatalf("AddReport(%+v): %v", r, err)
			}
			return rid
		}
		r1 := add(store.Report{RoomID: "!a:hs", EventID: "$e1", EventSender: "@bad:hs", UserID: "@alice:hs", Reason: "rude", Score: &score})
		r2 := add(store.Report{RoomID: "!b:hs", EventID: "$e2", EventSender: "@bad:hs", UserID: "@bob:hs"})
		add(store.Report{RoomID: "!a:hs", UserID: "@carol:hs", Reason: "whole room"}) // a room report
		r4 := add(store.Report{RoomID: "!a:hs", EventID: "$e3", EventSender: "@other:hs", UserID: "@bob:hs"})

		list := func(q store.ReportQuery) ([]int64, int) {
			t.Helper()
			if q.Limit == 0 {
				q.Limit = 100
			}
			rs, total, err := db.EventReports(ctx, q)
			if err != nil {
				t.Fatalf("EventReports(%+v): %v", q, err)
			}
			var out []int64
			for _, r := range rs {
				out = append(out, r.ID)
			}
			return out, total
		}
		for _, c := range []struct {
			name  string
			q     store.ReportQuery
			want  []int64
			total int
		}{
			{"all, oldest first", store.ReportQuery{}, []int64{r1, r2, r4}, 3},
			{"newest first", store.ReportQuery{Backwards: true}, []int64{r4, r2, r1}, 3},
			{"page", store.ReportQuery{Offset: 1, Limit: 1}, []int64{r2}, 3},
			{"room", store.ReportQuery{RoomID: "!a:hs"}, []int64{r1, r4}, 2},
			{"reporter", store.ReportQuery{UserID: "@bob:hs"}, []int64{r2, r4}, 2},
			{"sender", store.ReportQuery{EventSender: "@bad:hs", RoomID: "!b:hs"}, []int64{r2}, 1},
		} {
			got, total := list(c.q)
			if total != c.total || len(got) != len(c.want) {
				t.Errorf("%s: got %v of %d, want %v of %d", c.name, got, total, c.want, c.total)
				continue
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("%s: got %v, want %v", c.name, got, c.want)
					break
				}
			}
		}
		r, err := db.Report(ctx, r1)
		if err != nil || r.EventID != "$e1" || r.EventSender != id.UserID("@bad:hs") || r.Reason != "rude" || r.Score == nil || *r.Score != -50 || r.ReceivedTS == 0 {
			t.Errorf("Report(%d) = %+v, %v", r1, r, err)
		}
		if r, _ := db.Report(ctx, r2); r.Score != nil || r.Reason != "" {
			t.Errorf("report without score or reason = %+v", r)
		}
		if err := db.DeleteReport(ctx, r1); err != nil {
			t.Fatalf("DeleteReport: %v", err)
		}
		if err := db.DeleteReport(ctx, r1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteReport twice: %v, want ErrNotFound", err)
		}
		if _, err := db.Report(ctx, r1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Report after delete: %v, want ErrNotFound", err)
		}
	})
}

package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestAdminUsers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for i, a := range []store.Account{
			{Localpart: "alice", IsAdmin: true},
			{Localpart: "bob"},
			{Localpart: "carol", UserType: "bot"},
			{Localpart: "12345", IsGuest: true},
			{Localpart: "dave_x"},
		} {
			a.CreatedTS = int64(1000 + i)
			if err := db.CreateAccount(ctx, a, "Name of "+a.Localpart); err != nil {
				t.Fatalf("CreateAccount(%s): %v", a.Localpart, err)
			}
		}
		if err := db.Deactivate(ctx, "bob"); err != nil {
			t.Fatalf("Deactivate(bob): %v", err)
		}
		if err := db.SetProfileField(ctx, "carol", store.ProfileDisplayName, json.RawMessage(`"Zed Bot"`), 1<<16); err != nil {
			t.Fatalf("SetProfileField: %v", err)
		}
		yes, no := true, false
		for _, c := range []struct {
			name  string
			q     store.AdminUserQuery
			want  []string
			total int
		}{
			{"default: no deactivated", store.AdminUserQuery{}, []string{"12345", "alice", "carol", "dave_x"}, 4},
			{"with deactivated", store.AdminUserQuery{Deactivated: true}, []string{"12345", "alice", "bob", "carol", "dave_x"}, 5},
			{"no guests", store.AdminUserQuery{NoGuests: true}, []string{"alice", "carol", "dave_x"}, 3},
			{"admins", store.AdminUserQuery{Admins: &yes}, []string{"alice"}, 1},
			{"non-admins", store.AdminUserQuery{Admins: &no}, []string{"12345", "carol", "dave_x"}, 3},
			{"not bots", store.AdminUserQuery{NotUserTypes: []string{"bot"}}, []string{"12345", "alice", "dave_x"}, 3},
			{"not plain users", store.AdminUserQuery{NotUserTypes: []string{""}}, []string{"carol"}, 1},
			{"page", store.AdminUserQuery{Offset: 1, Limit: 2}, []string{"alice", "carol"}, 4},
			{"backwards", store.AdminUserQuery{Backwards: true}, []string{"dave_x", "carol", "alice", "12345"}, 4},
			{"by creation", store.AdminUserQuery{OrderBy: "creation_ts", Backwards: true}, []string{"dave_x", "12345", "carol", "alice"}, 4},
			{"by display name", store.AdminUserQuery{OrderBy: "displayname"}, []string{"12345", "alice", "dave_x", "carol"}, 4},
			{"by admin, ties by name", store.AdminUserQuery{OrderBy: "admin", Backwards: true}, []string{"alice", "12345", "carol", "dave_x"}, 4},
			{"name matches display name", store.AdminUserQuery{Name: "zed"}, []string{"carol"}, 1},
			{"name matches localpart", store.AdminUserQuery{Name: "ALI"}, []string{"alice"}, 1},
			{"underscore is no wildcard", store.AdminUserQuery{Name: "e_x"}, []string{"dave_x"}, 1},
			{"user ID", store.AdminUserQuery{UserID: "@carol:hs"}, []string{"carol"}, 1},
			{"user ID of another server", store.AdminUserQuery{UserID: ":other"}, nil, 0},
		} {
			t.Run(c.name, func(t *testing.T) {
				q := c.q
				q.ServerName = "hs.test"
				if q.Limit == 0 {
					q.Limit = 100
				}
				us, total, err := db.AdminUsers(ctx, q)
				if err != nil {
					t.Fatalf("AdminUsers(%+v): %v", q, err)
				}
				var got []string
				for _, u := range us {
					got = append(got, u.Localpart)
				}
				if !slices.Equal(got, c.want) || total != c.total {
					t.Errorf("AdminUsers(%+v) = %v, total %d; want %v, total %d", q, got, total, c.want, c.total)
				}
			})
		}
		u, err := db.AdminUser(ctx, "carol")
		if err != nil {
			t.Fatalf("AdminUser(carol): %v", err)
		}
		if u.DisplayName != "Zed Bot" || u.UserType != "bot" || u.CreatedTS != 1002 || u.IsAdmin {
			t.Errorf("AdminUser(carol) = %+v", u)
		}
		if _, err := db.AdminUser(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("AdminUser(nobody) = %v, want ErrNotFound", err)
		}
		if err := db.Reactivate(ctx, "bob"); err != nil {
			t.Fatalf("Reactivate(bob): %v", err)
		}
		if err := db.SetUserType(ctx, "carol", ""); err != nil {
			t.Fatalf("SetUserType: %v", err)
		}
		if a, _ := db.Account(ctx, "bob"); a.Deactivated {
			t.Errorf("bob still deactivated after Reactivate")
		}
		if a, _ := db.Account(ctx, "carol"); a.UserType != "" {
			t.Errorf("carol's user type = %q after clearing it", a.UserType)
		}
		if err := db.Reactivate(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Reactivate(nobody) = %v, want ErrNotFound", err)
		}
	})
}

func TestAdminRooms(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		rs := newRooms(t, db)
		alice, bob := mustUser(t, db, "alice"), mustUser(t, db, "bob")
		str := func(s string) *string { return &s }
		apple := mustRoom(t, rs, alice, room.CreateRequest{Name: str("Apple"), Preset: "public_chat", Visibility: "public"})
		banana := mustRoom(t, rs, alice, room.CreateRequest{Name: str("banana 100%"), Preset: "private_chat",
			CreationContent: json.RawMessage(`{"m.federate": false}`)})
		nameless := mustRoom(t, rs, bob, room.CreateRequest{Preset: "public_chat"})
		mustJoin(t, rs, bob, apple, room.Join)
		mustState(t, rs, alice, banana, "m.room.encryption", `{"algorithm":"m.megolm.v1.aes-sha2"}`)

		const suffix = ":" + searchServer
		ids := func(rooms []store.AdminRoom) []id.RoomID {
			var out []id.RoomID
			for _, r := range rooms {
				out = append(out, r.RoomID)
			}
			return out
		}
		yes, no := true, false
		for _, c := range []struct {
			name  string
			q     store.AdminRoomQuery
			want  []id.RoomID
			total int
		}{
			{"by name", store.AdminRoomQuery{}, []id.RoomID{nameless, apple, banana}, 3},
			{"by name backwards", store.AdminRoomQuery{Backwards: true}, []id.RoomID{banana, apple, nameless}, 3},
			{"page", store.AdminRoomQuery{Offset: 1, Limit: 1}, []id.RoomID{apple}, 3},
			{"largest first", store.AdminRoomQuery{OrderBy: "joined_members"}, []id.RoomID{apple, roomMin(banana, nameless), roomMax(banana, nameless)}, 3},
			{"local members", store.AdminRoomQuery{OrderBy: "joined_local_members"}, []id.RoomID{apple, roomMin(banana, nameless), roomMax(banana, nameless)}, 3},
			{"federatable", store.AdminRoomQuery{OrderBy: "federatable"}, []id.RoomID{banana, roomMin(apple, nameless), roomMax(apple, nameless)}, 3},
			{"encryption", store.AdminRoomQuery{OrderBy: "encryption", Backwards: true}, []id.RoomID{banana, roomMin(apple, nameless), roomMax(apple, nameless)}, 3},
			{"creator", store.AdminRoomQuery{OrderBy: "creator", Backwards: true}, []id.RoomID{nameless, roomMin(apple, banana), roomMax(apple, banana)}, 3},
			{"search name", store.AdminRoomQuery{Search: "APP"}, []id.RoomID{apple}, 1},
			{"search percent", store.AdminRoomQuery{Search: "0%"}, []id.RoomID{banana}, 1},
			{"search room ID", store.AdminRoomQuery{Search: string(nameless)}, []id.RoomID{nameless}, 1},
			{"public", store.AdminRoomQuery{Public: &yes}, []id.RoomID{apple}, 1},
			{"not public", store.AdminRoomQuery{Public: &no}, []id.RoomID{nameless, banana}, 2},
			{"empty", store.AdminRoomQuery{Empty: &yes}, nil, 0},
		} {
			t.Run(c.name, func(t *testing.T) {
				q := c.q
				q.LocalSuffix = suffix
				if q.Limit == 0 {
					q.Limit = 100
				}
				rooms, total, err := db.AdminRooms(ctx, q)
				if err != nil {
					t.Fatalf("AdminRooms(%+v): %v", q, err)
				}
				if got := ids(rooms); !slices.Equal(got, c.want) || total != c.total {
					t.Errorf("AdminRooms(%+v) = %v, total %d; want %v, total %d", q, got, total, c.want, c.total)
				}
			})
		}

		r, err := db.AdminRoom(ctx, banana, suffix)
		if err != nil {
			t.Fatalf("AdminRoom(banana): %v", err)
		}
		if r.Name != "banana 100%" || r.Federatable || r.Encryption != "m.megolm.v1.aes-sha2" || !r.Encrypted ||
			r.Creator != alice || r.JoinedMembers != 1 || r.JoinedLocalMembers != 1 || r.Public || r.JoinRule != "invite" || r.StateEvents < 5 {
			t.Errorf("AdminRoom(banana) = %+v", r)
		}
		r, err = db.AdminRoom(ctx, apple, suffix)
		if err != nil {
			t.Fatalf("AdminRoom(apple): %v", err)
		}
		if !r.Federatable || r.Encryption != "" || r.JoinedMembers != 2 || r.JoinedLocalMembers != 2 || !r.Public || r.Version == "" {
			t.Errorf("AdminRoom(apple) = %+v", r)
		}
		// Members of another server are not local.
		if r, err := db.AdminRoom(ctx, apple, ":elsewhere"); err != nil || r.JoinedLocalMembers != 0 {
			t.Errorf("AdminRoom(apple, :elsewhere) = %+v, %v; want 0 local members", r, err)
		}
		if _, err := db.AdminRoom(ctx, "!nope:hs.test", suffix); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("AdminRoom(unknown) = %v, want ErrNotFound", err)
		}
	})
}

func roomMin(a, b id.RoomID) id.RoomID { return min(a, b) }
func roomMax(a, b id.RoomID) id.RoomID { return max(a, b) }

func TestBlockedRooms(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const r = id.RoomID("!bad:hs.test")
		if _, err := db.RoomBlock(ctx, r); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("RoomBlock before blocking = %v, want ErrNotFound", err)
		}
		if err := db.BlockRoom(ctx, r, "@admin:hs.test"); err != nil {
			t.Fatalf("BlockRoom: %v", err)
		}
		if err := db.BlockRoom(ctx, r, "@other:hs.test"); err != nil {
			t.Fatalf("BlockRoom again: %v", err)
		}
		b, err := db.RoomBlock(ctx, r)
		if err != nil || b.By != "@admin:hs.test" || b.CreatedTS == 0 {
			t.Errorf("RoomBlock = %+v, %v; want the first block, by @admin", b, err)
		}
		if err := db.UnblockRoom(ctx, r); err != nil {
			t.Fatalf("UnblockRoom: %v", err)
		}
		if err := db.UnblockRoom(ctx, r); err != nil {
			t.Fatalf("UnblockRoom again: %v", err)
		}
		if _, err := db.RoomBlock(ctx, r); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RoomBlock after unblocking = %v, want ErrNotFound", err)
		}
	})
}

func TestRoomDeletions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		add := func(d store.RoomDeletion, keepSince int64) {
			t.Helper()
			if err := db.AddRoomDeletion(ctx, d, keepSince); err != nil {
				t.Fatalf("AddRoomDeletion(%s): %v", d.DeleteID, err)
			}
		}
		add(store.RoomDeletion{DeleteID: "old", RoomID: "!a:hs", Status: "complete", Result: json.RawMessage(`{}`), CreatedTS: 10}, 0)
		add(store.RoomDeletion{DeleteID: "d1", RoomID: "!a:hs", Status: "complete", Result: json.RawMessage(`{"kicked_users":[]}`), CreatedTS: 100}, 50)
		add(store.RoomDeletion{DeleteID: "d2", RoomID: "!a:hs", Status: "failed", Error: "boom", Result: json.RawMessage(`{}`), CreatedTS: 200}, 50)
		if _, err := db.RoomDeletion(ctx, "old", 0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RoomDeletion(old) = %v, want ErrNotFound: pruned", err)
		}
		d, err := db.RoomDeletion(ctx, "d2", 0)
		if err != nil || d.Status != "failed" || d.Error != "boom" || d.RoomID != "!a:hs" {
			t.Errorf("RoomDeletion(d2) = %+v, %v", d, err)
		}
		if _, err := db.RoomDeletion(ctx, "d1", 150); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RoomDeletion(d1, since 150) = %v, want ErrNotFound", err)
		}
		ds, err := db.RoomDeletions(ctx, "!a:hs", 0)
		if err != nil || len(ds) != 2 || ds[0].DeleteID != "d1" || string(ds[0].Result) != `{"kicked_users":[]}` {
			t.Errorf("RoomDeletions = %+v, %v; want d1, d2", ds, err)
		}
	})
}

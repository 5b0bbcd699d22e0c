package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestSlidingPositions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const u, d = "@alice:test", "DEV"
		tok1, err := db.SlidingSave(ctx, u, d, "main", "", 10, 1, nil, []store.SlidingSent{
			{RoomID: "!a:test", SentTo: 10, TimelineLimit: 1, RequiredState: "x"},
			{RoomID: "!b:test", SentTo: 10, TimelineLimit: 1, RequiredState: "x"},
		})
		if err != nil {
			t.Fatalf("SlidingSave(new): %v", err)
		}
		p, err := db.SlidingPos(ctx, u, d, "main", tok1)
		if err != nil || p.Stream != 10 || p.Typing != 1 || string(p.Subscriptions) != "{}" {
			t.Fatalf("SlidingPos(%s) = %+v, %v; want stream 10, typing 1", tok1, p, err)
		}
		if sent, err := db.SlidingSentRooms(ctx, tok1, []id.RoomID{"!a:test", "!b:test", "!c:test"}); err != nil || len(sent) != 2 {
			t.Fatalf("SlidingSentRooms(%s) = %+v, %v; want !a and !b", tok1, sent, err)
		}
		if _, err := db.SlidingPos(ctx, u, d, "other", tok1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SlidingPos(other conn) error = %v, want ErrNotFound", err)
		}
		if _, err := db.SlidingPos(ctx, "@bob:test", d, "main", tok1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SlidingPos(other user) error = %v, want ErrNotFound", err)
		}
		if _, err := db.SlidingPos(ctx, u, d, "main", "garbage"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SlidingPos(garbage) error = %v, want ErrNotFound", err)
		}
		// Two responses from tok1 (a retry): the second replaces the first.
		tok2, err := db.SlidingSave(ctx, u, d, "main", tok1, 20, 1, []byte(`{"!a:test":{}}`), []store.SlidingSent{{RoomID: "!a:test", SentTo: 20, TimelineLimit: 5}})
		if err != nil {
			t.Fatal(err)
		}
		tok2b, err := db.SlidingSave(ctx, u, d, "main", tok1, 21, 1, nil, []store.SlidingSent{{RoomID: "!b:test", SentTo: 21, TimelineLimit: 3}})
		if err != nil {
			t.Fatal(err)
		}
		if tok2 == tok2b {
			t.Fatalf("two responses got the same pos %s", tok2)
		}
		sent, err := db.SlidingSentRooms(ctx, tok2b, []id.RoomID{"!a:test", "!b:test"})
		if err != nil {
			t.Fatal(err)
		}
		if sent["!a:test"].SentTo != 10 || sent["!b:test"].SentTo != 21 || sent["!b:test"].TimelineLimit != 3 {
			t.Errorf("rooms at %s = %+v; want !a at 10 (the dropped response's row gone), !b at 21", tok2b, sent)
		}
		// Taking tok2b drops the rows it superseded: !b's row at tok1.
		tok3, err := db.SlidingSave(ctx, u, d, "main", tok2b, 22, 1, nil, []store.SlidingSent{{RoomID: "!a:test", SentTo: 22, TimelineLimit: 4}})
		if err != nil {
			t.Fatal(err)
		}
		if sent, err = db.SlidingSentRooms(ctx, tok3, []id.RoomID{"!a:test", "!b:test"}); err != nil ||
			sent["!a:test"].SentTo != 22 || sent["!b:test"].SentTo != 21 {
			t.Errorf("rooms at %s = %+v, %v; want !a at 22, !b at 21", tok3, sent, err)
		}
		// Using tok2b acknowledged it: tok1 is gone.
		if _, err := db.SlidingPos(ctx, u, d, "main", tok1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SlidingPos(acknowledged-over %s) error = %v, want ErrNotFound", tok1, err)
		}
		if _, err := db.SlidingSave(ctx, u, d, "main", tok1, 23, 1, nil, nil); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SlidingSave(after old %s) error = %v, want ErrNotFound", tok1, err)
		}
		// A new connection with the same conn_id replaces the old one.
		if _, err := db.SlidingSave(ctx, u, d, "main", "", 30, 0, nil, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SlidingPos(ctx, u, d, "main", tok2b); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SlidingPos(old connection) error = %v, want ErrNotFound", err)
		}
	})
}

// TestSlidingList checks the sliding sync list statement: the server's
// list (ignored inviters, rooms left only when sent before), the order by
// bump position, the range and the exact count, and each filter that is
// a condition in SQL.
func TestSlidingList(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		rs := newRooms(t, db)
		alice, bob, carol := mustUser(t, db, "alice"), mustUser(t, db, "bob"), mustUser(t, db, "carol")
		plain := mustRoom(t, rs, alice, room.CreateRequest{Preset: room.PresetPrivate})
		enc := mustRoom(t, rs, alice, room.CreateRequest{Preset: room.PresetPrivate})
		mustState(t, rs, alice, enc, "m.room.encryption", `{"algorithm":"m.megolm.v1.aes-sha2"}`)
		space := mustRoom(t, rs, alice, room.CreateRequest{Preset: room.PresetPrivate, CreationContent: []byte(`{"type":"m.space"}`)})
		left := mustRoom(t, rs, alice, room.CreateRequest{Preset: room.PresetPublic})
		mustJoin(t, rs, bob, left, room.Join)
		mustJoin(t, rs, alice, left, room.Leave)
		fromBob := mustRoom(t, rs, bob, room.CreateRequest{Preset: room.PresetPrivate, Invite: []id.UserID{alice}})
		fromCarol := mustRoom(t, rs, carol, room.CreateRequest{Preset: room.PresetPrivate, Invite: []id.UserID{alice}})
		mustSend(t, rs, alice, plain, "m.room.message", `{"msgtype":"m.text","body":"newest"}`)
		// Most recent first: plain (a message), then the invites and the
		// others by creation; the room alice left is not listed.
		all := []id.RoomID{plain, fromCarol, fromBob, space, enc}
		yes, no := true, false
		mtSpace := "m.space"
		for _, c := range []struct {
			name  string
			q     store.SlidingListQuery
			want  []id.RoomID
			count int
		}{
			{"all", store.SlidingListQuery{Limit: -1}, all, 5},
			{"range", store.SlidingListQuery{Offset: 1, Limit: 2}, all[1:3], 5},
			{"range past the end", store.SlidingListQuery{Offset: 7, Limit: 3}, nil, 5},
			{"ignored inviter", store.SlidingListQuery{Limit: -1, Ignored: []id.UserID{carol}}, []id.RoomID{plain, fromBob, space, enc}, 4},
			{"is_invite", store.SlidingListQuery{Limit: -1, IsInvite: &yes}, []id.RoomID{fromCarol, fromBob}, 2},
			{"not is_invite", store.SlidingListQuery{Limit: -1, IsInvite: &no}, []id.RoomID{plain, space, enc}, 3},
			{"is_encrypted", store.SlidingListQuery{Limit: -1, IsEncrypted: &yes}, []id.RoomID{enc}, 1},
			{"not is_encrypted", store.SlidingListQuery{Limit: 2, IsEncrypted: &no}, []id.RoomID{plain, fromCarol}, 4},
			{"room_types space", store.SlidingListQuery{Limit: -1, HasRoomTypes: true, RoomTypes: []*string{&mtSpace}}, []id.RoomID{space}, 1},
			{"room_types none", store.SlidingListQuery{Limit: -1, HasRoomTypes: true, RoomTypes: []*string{nil}}, []id.RoomID{plain, fromCarol, fromBob, enc}, 4},
			{"room_types empty", store.SlidingListQuery{Limit: -1, HasRoomTypes: true}, nil, 0},
			{"not_room_types space", store.SlidingListQuery{Limit: -1, NotRoomTypes: []*string{&mtSpace}}, []id.RoomID{plain, fromCarol, fromBob, enc}, 4},
			{"not_room_types none", store.SlidingListQuery{Limit: -1, NotRoomTypes: []*string{nil}}, []id.RoomID{space}, 1},
			{"in sets", store.SlidingListQuery{Limit: -1, In: [][]id.RoomID{{plain, enc, left}, {enc, space}}}, []id.RoomID{enc}, 1},
			{"in empty set", store.SlidingListQuery{Limit: -1, In: [][]id.RoomID{{}}}, nil, 0},
			{"not in sets", store.SlidingListQuery{Limit: -1, NotIn: [][]id.RoomID{{plain}, {fromBob, fromCarol}}}, []id.RoomID{space, enc}, 2},
		} {
			t.Run(c.name, func(t *testing.T) {
				c.q.User = alice
				got, count, err := db.SlidingList(ctx, c.q)
				if err != nil {
					t.Fatalf("SlidingList: %v", err)
				}
				var ids []id.RoomID
				for _, e := range got {
					ids = append(ids, e.RoomID)
				}
				if !slices.Equal(ids, c.want) || count != c.count {
					t.Errorf("SlidingList(%s) = %v, count %d; want %v, count %d", c.name, ids, count, c.want, c.count)
				}
			})
		}
		// A room alice left is listed on a connection that sent it.
		tok, err := db.SlidingSave(ctx, alice, "DEV", "c", "", 1, 0, nil, []store.SlidingSent{{RoomID: left, SentTo: 1}})
		if err != nil {
			t.Fatal(err)
		}
		got, count, err := db.SlidingList(ctx, store.SlidingListQuery{User: alice, After: tok, Limit: -1})
		if err != nil || count != 6 || !slices.ContainsFunc(got, func(e store.SlidingRoomEntry) bool { return e.RoomID == left && e.Membership == room.Leave }) {
			t.Errorf("SlidingList(after %s) = %+v, count %d, %v; want the left room too, count 6", tok, got, count, err)
		}
		// Entries of given rooms, whatever the list's rules.
		es, err := db.SlidingRoomEntries(ctx, alice, []id.RoomID{left, plain, "!unknown:hs.test"})
		if err != nil || len(es) != 2 {
			t.Errorf("SlidingRoomEntries = %+v, %v; want the left room and plain", es, err)
		}
		for _, e := range es {
			if e.RoomID == plain && e.Bump <= e.MemberPos {
				t.Errorf("SlidingRoomEntries: plain's bump %d not after its member event %d", e.Bump, e.MemberPos)
			}
		}
	})
}

package user_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
	"polder.dev/polder/internal/user"
)

func newService(t *testing.T, db *store.DB) (*user.Service, *notify.Notifier) {
	t.Helper()
	pos, err := db.StreamPos(context.Background())
	if err != nil {
		t.Fatalf("StreamPos: %v", err)
	}
	n := notify.New(notify.Position{Stream: pos})
	return user.New(user.Config{ServerName: "hs"}, db, n, slog.New(slog.DiscardHandler)), n
}

// wantErr fails unless err is an *mxerr.Error with the errcode and status.
func wantErr(t *testing.T, call string, err error, status int, code string) {
	t.Helper()
	e, ok := mxerr.As(err)
	if !ok || e.Code != code || e.HTTPStatus() != status {
		t.Errorf("%s: got %v, want %d %s", call, err, status, code)
	}
}

// woken reports whether a /sync waiting for user at the notifier's current
// position is woken by fn.
func woken(t *testing.T, n *notify.Notifier, u id.UserID, fn func()) bool {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Wait(ctx, u, nil, n.Current()); close(done) }()
	for n.Waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	fn()
	// Wake unregisters the waiters it wakes before it returns, and writers
	// wake before they return: a waiter still registered was not woken.
	woke := n.Waiting() == 0
	cancel()
	<-done
	return woke
}

func TestAccountData(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, n := newService(t, db)
		const alice, bob = id.UserID("@alice:hs"), id.UserID("@bob:hs")
		aliceWho := user.Identity{UserID: alice}

		if !woken(t, n, alice, func() {
			if err := s.PutAccountData(ctx, aliceWho, alice, "", "org.example", []byte(` { "a" : 1 } `)); err != nil {
				t.Fatalf("PutAccountData: %v", err)
			}
		}) {
			t.Errorf("PutAccountData did not wake the user's /sync")
		}
		if woken(t, n, bob, func() {
			if err := s.SetAccountData(ctx, alice, "!r:hs", "org.example", []byte(`{"b":2}`)); err != nil {
				t.Fatalf("SetAccountData: %v", err)
			}
		}) {
			t.Errorf("alice's account data woke bob's /sync")
		}
		got, err := s.AccountData(ctx, alice, "", "org.example")
		if err != nil || string(got) != `{"a":1}` {
			t.Errorf("AccountData = %s, %v; want the compacted object", got, err)
		}
		if _, err := s.AccountData(ctx, bob, "", "org.example"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("AccountData(bob): got %v, want store.ErrNotFound", err)
		}
		if got, err := s.GetAccountData(ctx, aliceWho, alice, "!r:hs", "org.example"); err != nil || string(got) != `{"b":2}` {
			t.Errorf("GetAccountData(room) = %s, %v", got, err)
		}
		ads, err := s.AccountDataSince(ctx, alice, 0, n.Current().Stream)
		if err != nil || len(ads) != 2 || ads[0].RoomID != "" || ads[1].RoomID != "!r:hs" {
			t.Errorf("AccountDataSince = %+v, %v; want the global then the room entry", ads, err)
		}

		for _, c := range []struct {
			name    string
			who     id.UserID
			room    id.RoomID
			typ     string
			content string
			status  int
			code    string
		}{
			{"another user's", bob, "", "org.example", `{}`, 403, "M_FORBIDDEN"},
			{"m.fully_read", alice, "", "m.fully_read", `{"event_id":"$x"}`, 405, "M_BAD_JSON"},
			{"m.fully_read in a room", alice, "!r:hs", "m.fully_read", `{"event_id":"$x"}`, 405, "M_BAD_JSON"},
			{"m.push_rules", alice, "", "m.push_rules", `{}`, 405, "M_BAD_JSON"},
			{"not JSON", alice, "", "org.example", `{`, 400, "M_NOT_JSON"},
			{"an array", alice, "", "org.example", `[1]`, 400, "M_BAD_JSON"},
			{"a string", alice, "", "org.example", `"x"`, 400, "M_BAD_JSON"},
			{"a bad room ID", alice, "#alias:hs", "org.example", `{}`, 400, "M_INVALID_PARAM"},
			{"a type too long", alice, "", string(make([]byte, 256)), `{}`, 400, "M_INVALID_PARAM"},
			{"ignored_users not an object", alice, "", "m.ignored_user_list", `{"ignored_users":[]}`, 400, "M_BAD_JSON"},
			{"ignored_users missing", alice, "", "m.ignored_user_list", `{}`, 400, "M_BAD_JSON"},
			{"ignored_users with a bad user ID", alice, "", "m.ignored_user_list", `{"ignored_users":{"bob":{}}}`, 400, "M_INVALID_PARAM"},
		} {
			before := n.Current()
			err := s.PutAccountData(ctx, user.Identity{UserID: c.who}, alice, c.room, c.typ, []byte(c.content))
			wantErr(t, "PutAccountData "+c.name, err, c.status, c.code)
			if n.Current() != before {
				t.Errorf("PutAccountData %s moved the stream", c.name)
			}
		}
		if _, err := s.AccountData(ctx, alice, "", "m.fully_read"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("refused m.fully_read was stored: %v", err)
		}
		// The server itself may set managed types.
		if err := s.SetAccountData(ctx, alice, "", "m.push_rules", []byte(`{"global":{}}`)); err != nil {
			t.Errorf("SetAccountData(m.push_rules): %v", err)
		}
		_, err = s.GetAccountData(ctx, user.Identity{UserID: bob}, alice, "", "org.example")
		wantErr(t, "GetAccountData of another user", err, 403, "M_FORBIDDEN")
		_, err = s.GetAccountData(ctx, aliceWho, alice, "", "org.absent")
		wantErr(t, "GetAccountData of an absent type", err, 404, "M_NOT_FOUND")
		_, err = s.GetAccountData(ctx, aliceWho, alice, "bad", "org.example")
		wantErr(t, "GetAccountData with a bad room ID", err, 400, "M_INVALID_PARAM")
	})
}

func TestIgnoredUsers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, _ := newService(t, db)
		const alice = id.UserID("@alice:hs")
		got, err := s.IgnoredUsers(ctx, alice)
		if err != nil || len(got) != 0 {
			t.Fatalf("IgnoredUsers with none = %v, %v", got, err)
		}
		if err := s.PutAccountData(ctx, user.Identity{UserID: alice}, alice, "", "m.ignored_user_list",
			[]byte(`{"ignored_users":{"@bob:hs":{},"@carol:other":{}}}`)); err != nil {
			t.Fatalf("PutAccountData: %v", err)
		}
		got, err = s.IgnoredUsers(ctx, alice)
		if err != nil || len(got) != 2 || !got["@bob:hs"] || !got["@carol:other"] {
			t.Errorf("IgnoredUsers = %v, %v; want bob and carol", got, err)
		}
		// A malformed list stored by the server ignores no one.
		if err := s.SetAccountData(ctx, alice, "", "m.ignored_user_list", []byte(`{"ignored_users":5}`)); err != nil {
			t.Fatalf("SetAccountData: %v", err)
		}
		if got, err := s.IgnoredUsers(ctx, alice); err != nil || len(got) != 0 {
			t.Errorf("IgnoredUsers of a malformed list = %v, %v; want none", got, err)
		}
	})
}

func TestTagsWithoutMembership(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, n := newService(t, db)
		const alice = id.UserID("@alice:hs")
		who := user.Identity{UserID: alice}
		tags, err := s.Tags(ctx, who, alice, "!r:hs")
		if err != nil || string(tags) != `{}` {
			t.Errorf("Tags with none = %s, %v; want {}", tags, err)
		}
		before := n.Current()
		err = s.SetTag(ctx, who, alice, "!r:hs", "u.work", []byte(`{}`))
		wantErr(t, "SetTag in a room without membership", err, 403, "M_FORBIDDEN")
		err = s.SetTag(ctx, user.Identity{UserID: "@bob:hs"}, alice, "!r:hs", "u.work", []byte(`{}`))
		wantErr(t, "SetTag for another user", err, 403, "M_FORBIDDEN")
		err = s.SetTag(ctx, who, alice, "!r:hs", string(make([]byte, 256)), []byte(`{}`))
		wantErr(t, "SetTag with a 256-byte tag", err, 400, "M_INVALID_PARAM")
		err = s.SetTag(ctx, who, alice, "!r:hs", "u.work", []byte(`{"order":"first"}`))
		wantErr(t, "SetTag with a string order", err, 400, "M_BAD_JSON")
		_, err = s.Tags(ctx, user.Identity{UserID: "@bob:hs"}, alice, "!r:hs")
		wantErr(t, "Tags of another user", err, 403, "M_FORBIDDEN")
		// Deleting an absent tag succeeds and writes nothing.
		if err := s.DeleteTag(ctx, who, alice, "!r:hs", "u.none"); err != nil {
			t.Errorf("DeleteTag of an absent tag: %v", err)
		}
		if n.Current() != before {
			t.Errorf("refused or empty tag changes moved the stream")
		}
		if _, err := s.AccountData(ctx, alice, "!r:hs", "m.tag"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("m.tag exists after refused changes: %v", err)
		}
	})
}

package user_test

import (
	"context"
	"errors"
	"testing"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
	"polder.dev/polder/internal/user"
)

func TestCheckFilter(t *testing.T) {
	for _, c := range []struct {
		name   string
		filter string
		code   string // "" for valid
	}{
		{"empty", `{}`, ""},
		{"spec example", `{"room":{"state":{"types":["m.room.*"],"not_rooms":["!726s6s6q:example.com"]},
			"timeline":{"limit":10,"types":["m.room.message"],"not_rooms":["!726s6s6q:example.com"],"not_senders":["@spam:example.com"]},
			"ephemeral":{"types":["m.receipt","m.typing"],"not_rooms":["!726s6s6q:example.com"],"not_senders":["@spam:example.com"]}},
			"presence":{"types":["m.presence"],"not_senders":["@alice:example.com"]},
			"event_format":"client","event_fields":["type","content","sender"]}`, ""},
		{"room version 12 room ID", `{"room":{"rooms":["!abcdefghijklmnop"]}}`, ""},
		{"lazy loading", `{"room":{"state":{"lazy_load_members":true,"include_redundant_members":false},"include_leave":true}}`, ""},
		{"unknown members allowed", `{"org.example":[1.5],"room":{"org.example":{}}}`, ""},
		{"integral float limit", `{"room":{"timeline":{"limit":10.0}}}`, ""},
		{"not JSON", `{"room":`, "M_NOT_JSON"},
		{"array", `[]`, "M_BAD_JSON"},
		{"room not an object", `{"room":[]}`, "M_BAD_JSON"},
		{"types not an array", `{"presence":{"types":"m.presence"}}`, "M_BAD_JSON"},
		{"types of numbers", `{"account_data":{"types":[1]}}`, "M_BAD_JSON"},
		{"limit a string", `{"room":{"timeline":{"limit":"10"}}}`, "M_BAD_JSON"},
		{"limit zero", `{"room":{"timeline":{"limit":0}}}`, "M_INVALID_PARAM"},
		{"limit negative", `{"presence":{"limit":-1}}`, "M_INVALID_PARAM"},
		{"limit fractional", `{"room":{"timeline":{"limit":1.5}}}`, "M_INVALID_PARAM"},
		{"sender not a user ID", `{"room":{"timeline":{"senders":["alice"]}}}`, "M_INVALID_PARAM"},
		{"room not a room ID", `{"room":{"rooms":["#alias:hs"]}}`, "M_INVALID_PARAM"},
		{"room filter's room not a room ID", `{"room":{"timeline":{"not_rooms":["x"]}}}`, "M_INVALID_PARAM"},
		{"lazy_load_members a string", `{"room":{"state":{"lazy_load_members":"yes"}}}`, "M_BAD_JSON"},
		{"include_leave null", `{"room":{"include_leave":null}}`, "M_BAD_JSON"},
		{"event_format unknown", `{"event_format":"raw"}`, "M_INVALID_PARAM"},
		{"event_fields not strings", `{"event_fields":[1]}`, "M_BAD_JSON"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := user.CheckFilter([]byte(c.filter))
			if c.code == "" {
				if err != nil {
					t.Errorf("CheckFilter(%s) = %v, want nil", c.filter, err)
				}
				return
			}
			wantErr(t, "CheckFilter("+c.filter+")", err, 400, c.code)
		})
	}
}

func TestFilters(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, n := newService(t, db)
		alice := user.Identity{UserID: "@alice:hs"}
		before := n.Current()
		fid, err := s.UploadFilter(ctx, alice, alice.UserID, []byte(`{"room": {"timeline": {"limit": 5}}}`))
		if err != nil || fid != "0" {
			t.Fatalf("UploadFilter = %q, %v; want 0", fid, err)
		}
		// The same filter, written differently, gets the same ID.
		again, err := s.CreateFilter(ctx, alice.UserID, []byte(`{"room":{"timeline":{"limit":5}}}`))
		if err != nil || again != fid {
			t.Errorf("CreateFilter of the same filter = %q, %v; want %q", again, err, fid)
		}
		if n.Current() != before {
			t.Errorf("filters moved the stream; they are not sync data")
		}
		got, err := s.GetFilter(ctx, alice, alice.UserID, fid)
		if err != nil || string(got) != `{"room":{"timeline":{"limit":5}}}` {
			t.Errorf("GetFilter = %s, %v", got, err)
		}
		for _, bad := range []string{"1", "-0", "+0", "00", "x", "", "99999999999999999999"} {
			if _, err := s.Filter(ctx, alice.UserID, bad); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Filter(%q): got %v, want store.ErrNotFound", bad, err)
			}
		}
		_, err = s.GetFilter(ctx, alice, alice.UserID, "7")
		wantErr(t, "GetFilter of an unknown ID", err, 404, "M_NOT_FOUND")
		bob := user.Identity{UserID: "@bob:hs"}
		_, err = s.GetFilter(ctx, bob, alice.UserID, fid)
		wantErr(t, "GetFilter of another user's filter", err, 403, "M_FORBIDDEN")
		_, err = s.UploadFilter(ctx, bob, alice.UserID, []byte(`{}`))
		wantErr(t, "UploadFilter for another user", err, 403, "M_FORBIDDEN")
		_, err = s.UploadFilter(ctx, alice, alice.UserID, []byte(`{"room":{"timeline":{"limit":0}}}`))
		wantErr(t, "UploadFilter of an invalid filter", err, 400, "M_INVALID_PARAM")
		if _, err := s.GetFilter(ctx, bob, bob.UserID, fid); err == nil {
			t.Errorf("bob sees alice's filter %s under his own name", fid)
		}
	})
}

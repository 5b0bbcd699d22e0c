package client_test

import (
	"net/url"
	"slices"
	"testing"

	"polder.dev/polder/internal/hstest"
)

const adminV = "/_synapse/admin"

func adminUserPath(version, userID, rest string) string {
	return adminV + "/" + version + "/users/" + url.PathEscape(userID) + rest
}

type adminUserEntry struct {
	Name        string  `json:"name"`
	IsGuest     bool    `json:"is_guest"`
	Admin       bool    `json:"admin"`
	UserType    *string `json:"user_type"`
	Deactivated bool    `json:"deactivated"`
	DisplayName *string `json:"displayname"`
	AvatarURL   *string `json:"avatar_url"`
	CreationTS  int64   `json:"creation_ts"`
	LastSeenTS  *int64  `json:"last_seen_ts"`
	Locked      bool    `json:"locked"`
	ThreePIDs   []any   `json:"threepids"`
	ExternalIDs []any   `json:"external_ids"`
}

type adminUserList struct {
	Users     []adminUserEntry `json:"users"`
	NextToken *string          `json:"next_token"`
	Total     int              `json:"total"`
}

func userNames(l adminUserList) []string {
	var out []string
	for _, u := range l.Users {
		out = append(out, u.Name)
	}
	return out
}

// passwordLogin tries a password login and returns the raw response.
func passwordLogin(t testing.TB, hs *hstest.Server, user, pw string) *hstest.Response {
	t.Helper()
	return hs.Anon().Do(t, "POST", c3+"/login", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": user}, "password": pw,
	})
}

// The Synapse user admin API: GET/PUT /v2/users, deactivate,
// reset_password, whois, devices, joined_rooms.
func TestAdminUsers(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{Guests: true}, func(t *testing.T, hs *hstest.Server) {
		admin := hs.Admin(t, "admin")
		alice := hs.Register(t, "alice", "alice pw")
		bob := hs.Register(t, "bob", "bob pw")
		guest := hstest.MustOK(t, hs.Anon().Do(t, "POST", c3+"/register?kind=guest", map[string]any{}))
		guestID := hstest.Str(t, guest, "user_id")
		list := func(t *testing.T, query string) adminUserList {
			t.Helper()
			return decodeOK[adminUserList](t, admin.Do(t, "GET", adminV+"/v2/users?"+query, nil))
		}

		t.Run("non-admins are refused", func(t *testing.T) {
			for _, c := range []struct{ method, path string }{
				{"GET", adminV + "/v2/users"},
				{"GET", adminUserPath("v2", bob.UserID, "")},
				{"PUT", adminUserPath("v2", bob.UserID, "")},
				{"POST", adminV + "/v1/deactivate/" + url.PathEscape(bob.UserID)},
				{"POST", adminV + "/v1/reset_password/" + url.PathEscape(bob.UserID)},
				{"GET", adminV + "/v1/whois/" + url.PathEscape(bob.UserID)},
				{"GET", adminUserPath("v2", bob.UserID, "/devices")},
				{"GET", adminUserPath("v2", bob.UserID, "/devices/"+bob.DeviceID)},
				{"DELETE", adminUserPath("v2", bob.UserID, "/devices/"+bob.DeviceID)},
				{"POST", adminUserPath("v2", bob.UserID, "/delete_devices")},
				{"GET", adminUserPath("v1", bob.UserID, "/joined_rooms")},
			} {
				hstest.MustErr(t, alice.Do(t, c.method, c.path, map[string]any{}), 403, "M_FORBIDDEN")
				hstest.MustErr(t, hs.Anon().Do(t, c.method, c.path, map[string]any{}), 401, "M_MISSING_TOKEN")
			}
			bob.MustWhoami(t) // nothing happened to bob
		})

		t.Run("list, filters and pages", func(t *testing.T) {
			l := list(t, "")
			want := []string{admin.UserID, alice.UserID, bob.UserID, guestID}
			slices.Sort(want)
			if got := userNames(l); !slices.Equal(got, want) || l.Total != 4 || l.NextToken != nil {
				t.Fatalf("GET /v2/users = %v (total %d, next %v); want %v, total 4, no next_token", got, l.Total, l.NextToken, want)
			}
			for _, u := range l.Users {
				if u.CreationTS < 1e12 {
					t.Errorf("user %s creation_ts %d is not in milliseconds", u.Name, u.CreationTS)
				}
				if u.Name == admin.UserID && !u.Admin || u.Name == guestID && !u.IsGuest || u.Name == alice.UserID && (u.Admin || u.IsGuest) {
					t.Errorf("user %+v: wrong admin or guest flag", u)
				}
				if u.Name == alice.UserID && (u.DisplayName == nil || *u.DisplayName != "alice" || u.LastSeenTS == nil) {
					t.Errorf("alice = %+v; want displayname alice and a last_seen_ts", u)
				}
			}
			p1 := list(t, "limit=2")
			if p1.NextToken == nil || *p1.NextToken != "2" || len(p1.Users) != 2 || p1.Total != 4 {
				t.Fatalf("GET /v2/users?limit=2 = %+v; want 2 users and next_token \"2\"", p1)
			}
			p2 := list(t, "limit=2&from="+*p1.NextToken)
			if got := append(userNames(p1), userNames(p2)...); !slices.Equal(got, want) || p2.NextToken != nil {
				t.Errorf("two pages = %v (next %v); want %v, then no next_token", got, p2.NextToken, want)
			}
			for _, c := range []struct {
				query string
				want  []string
			}{
				{"guests=false", []string{admin.UserID, alice.UserID, bob.UserID}},
				{"admins=true", []string{admin.UserID}},
				{"name=LIC", []string{alice.UserID}},
				{"user_id=" + url.QueryEscape("@bob:"), []string{bob.UserID}},
				{"guests=false&order_by=creation_ts&dir=b", []string{bob.UserID, alice.UserID, admin.UserID}},
				{"guests=false&order_by=displayname", []string{admin.UserID, alice.UserID, bob.UserID}},
			} {
				if got := userNames(list(t, c.query)); !slices.Equal(got, c.want) {
					t.Errorf("GET /v2/users?%s = %v, want %v", c.query, got, c.want)
				}
			}
			hstest.MustErr(t, admin.Do(t, "GET", adminV+"/v2/users?order_by=shoe_size", nil), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, admin.Do(t, "GET", adminV+"/v2/users?dir=x", nil), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, admin.Do(t, "GET", adminV+"/v2/users?admins=maybe", nil), 400, "M_INVALID_PARAM")
		})

		t.Run("query one user", func(t *testing.T) {
			u := decodeOK[adminUserEntry](t, admin.Do(t, "GET", adminUserPath("v2", alice.UserID, ""), nil))
			if u.Name != alice.UserID || u.Admin || u.Deactivated || u.ThreePIDs == nil || u.ExternalIDs == nil ||
				u.CreationTS > 1e11 || u.CreationTS < 1e9 {
				t.Errorf("GET user alice = %+v; want not admin, not deactivated, empty threepids and external_ids, creation_ts in seconds", u)
			}
			hstest.MustErr(t, admin.Do(t, "GET", adminUserPath("v2", hs.UserID("nobody"), ""), nil), 404, "M_NOT_FOUND")
			hstest.MustErr(t, admin.Do(t, "GET", adminUserPath("v2", "@alice:elsewhere.example", ""), nil), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, admin.Do(t, "GET", adminUserPath("v2", "not-a-user-id", ""), nil), 400, "M_INVALID_PARAM")
		})

		t.Run("create and modify", func(t *testing.T) {
			carol := hs.UserID("carol")
			r := admin.Do(t, "PUT", adminUserPath("v2", carol, ""), map[string]any{
				"password": "carol pw", "displayname": "Carol C", "avatar_url": "mxc://example.org/abc", "user_type": "bot",
				"threepids": []any{}, "external_ids": []any{},
			})
			if r.Status != 201 {
				t.Fatalf("PUT new user: status %d, body %s; want 201", r.Status, r.Body)
			}
			u := hstest.Decode[adminUserEntry](t, r)
			if u.Name != carol || u.DisplayName == nil || *u.DisplayName != "Carol C" || u.AvatarURL == nil ||
				u.UserType == nil || *u.UserType != "bot" || u.Admin {
				t.Errorf("PUT new user = %+v", u)
			}
			c := hs.Login(t, "carol", "carol pw")
			c.MustWhoami(t)
			hstest.MustErr(t, c.Do(t, "GET", adminV+"/v2/users", nil), 403, "M_FORBIDDEN")

			// Modify: display name (seen by clients), admin, user type.
			u = decodeOK[adminUserEntry](t, admin.Do(t, "PUT", adminUserPath("v2", carol, ""), map[string]any{
				"displayname": "Carol Two", "admin": true, "user_type": nil,
			}))
			if u.DisplayName == nil || *u.DisplayName != "Carol Two" || !u.Admin || u.UserType != nil {
				t.Errorf("PUT modify = %+v; want displayname Carol Two, admin, no user_type", u)
			}
			prof := hstest.MustOK(t, alice.Do(t, "GET", c3+"/profile/"+url.PathEscape(carol), nil))
			if prof["displayname"] != "Carol Two" {
				t.Errorf("profile of carol = %v, want displayname Carol Two", prof)
			}
			hstest.MustOK(t, c.Do(t, "GET", adminV+"/v2/users", nil)) // now an admin
			// Removing the avatar with "".
			u = decodeOK[adminUserEntry](t, admin.Do(t, "PUT", adminUserPath("v2", carol, ""), map[string]any{"avatar_url": ""}))
			if u.AvatarURL != nil {
				t.Errorf("avatar_url after removing it = %v", *u.AvatarURL)
			}
			hstest.MustErr(t, admin.Do(t, "PUT", adminUserPath("v2", carol, ""), map[string]any{"avatar_url": "http://x"}), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, admin.Do(t, "PUT", adminUserPath("v2", carol, ""), map[string]any{"threepids": []any{map[string]any{"medium": "email", "address": "c@example.org"}}}), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, admin.Do(t, "PUT", adminUserPath("v2", admin.UserID, ""), map[string]any{"admin": false}), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, admin.Do(t, "PUT", adminUserPath("v2", hs.UserID("Bad Name"), ""), map[string]any{}), 400, "M_INVALID_USERNAME")
			hstest.MustErr(t, admin.Do(t, "PUT", adminUserPath("v2", "@x:elsewhere.example", ""), map[string]any{}), 400, "M_INVALID_PARAM")

			// A new password logs every device out unless logout_devices
			// is false.
			hstest.MustOK(t, admin.Do(t, "PUT", adminUserPath("v2", carol, ""), map[string]any{"password": "carol pw 2", "logout_devices": false}))
			c.MustWhoami(t)
			hstest.MustOK(t, admin.Do(t, "PUT", adminUserPath("v2", carol, ""), map[string]any{"password": "carol pw 3"}))
			hstest.MustErr(t, c.Whoami(t), 401, "M_UNKNOWN_TOKEN")
			hs.Login(t, "carol", "carol pw 3").MustWhoami(t)
		})

		t.Run("reset password", func(t *testing.T) {
			a2 := hs.Login(t, "alice", "alice pw")
			hstest.MustOK(t, admin.Do(t, "POST", adminV+"/v1/reset_password/"+url.PathEscape(alice.UserID),
				map[string]any{"new_password": "new alice pw", "logout_devices": false}))
			a2.MustWhoami(t)
			hstest.MustErr(t, passwordLogin(t, hs, "alice", "alice pw"), 403, "M_FORBIDDEN")
			hs.Login(t, "alice", "new alice pw").MustWhoami(t)
			hstest.MustOK(t, admin.Do(t, "POST", adminV+"/v1/reset_password/"+url.PathEscape(alice.UserID),
				map[string]any{"new_password": "alice pw"}))
			hstest.MustErr(t, a2.Whoami(t), 401, "M_UNKNOWN_TOKEN")
			hstest.MustErr(t, alice.Whoami(t), 401, "M_UNKNOWN_TOKEN")
			alice = hs.Login(t, "alice", "alice pw")
			hstest.MustErr(t, admin.Do(t, "POST", adminV+"/v1/reset_password/"+url.PathEscape(hs.UserID("nobody")),
				map[string]any{"new_password": "x"}), 404, "M_NOT_FOUND")
			hstest.MustErr(t, admin.Do(t, "POST", adminV+"/v1/reset_password/"+url.PathEscape(alice.UserID),
				map[string]any{}), 400, "M_MISSING_PARAM")
		})

		t.Run("whois and devices", func(t *testing.T) {
			second := hs.Login(t, "alice", "alice pw")
			alice.MustWhoami(t) // last seen
			if err := hs.Users().FlushLastSeen(t.Context()); err != nil {
				t.Fatalf("FlushLastSeen: %v", err)
			}
			type whois struct {
				UserID  string `json:"user_id"`
				Devices map[string]struct {
					Sessions []struct {
						Connections []struct {
							IP        string `json:"ip"`
							LastSeen  int64  `json:"last_seen"`
							UserAgent string `json:"user_agent"`
						} `json:"connections"`
					} `json:"sessions"`
				} `json:"devices"`
			}
			wi := decodeOK[whois](t, admin.Do(t, "GET", adminV+"/v1/whois/"+url.PathEscape(alice.UserID), nil))
			d, ok := wi.Devices[alice.DeviceID]
			if wi.UserID != alice.UserID || !ok || len(wi.Devices) != 2 || len(d.Sessions) != 1 || len(d.Sessions[0].Connections) != 1 ||
				d.Sessions[0].Connections[0].IP == "" || d.Sessions[0].Connections[0].LastSeen == 0 {
				t.Errorf("whois alice = %+v; want her 2 devices, %s with a connection", wi, alice.DeviceID)
			}
			hstest.MustErr(t, admin.Do(t, "GET", adminV+"/v1/whois/"+url.PathEscape(hs.UserID("nobody")), nil), 404, "M_NOT_FOUND")

			type device struct {
				DeviceID   string  `json:"device_id"`
				UserID     string  `json:"user_id"`
				LastSeenTS *int64  `json:"last_seen_ts"`
				LastSeenIP *string `json:"last_seen_ip"`
			}
			type devices struct {
				Devices []device `json:"devices"`
				Total   int      `json:"total"`
			}
			ds := decodeOK[devices](t, admin.Do(t, "GET", adminUserPath("v2", alice.UserID, "/devices"), nil))
			if ds.Total != 2 || len(ds.Devices) != 2 || ds.Devices[0].UserID != alice.UserID {
				t.Errorf("devices of alice = %+v; want 2", ds)
			}
			one := decodeOK[device](t, admin.Do(t, "GET", adminUserPath("v2", alice.UserID, "/devices/"+second.DeviceID), nil))
			if one.DeviceID != second.DeviceID {
				t.Errorf("GET device = %+v, want %s", one, second.DeviceID)
			}
			hstest.MustOK(t, admin.Do(t, "DELETE", adminUserPath("v2", alice.UserID, "/devices/"+second.DeviceID), nil))
			hstest.MustErr(t, second.Whoami(t), 401, "M_UNKNOWN_TOKEN")
			alice.MustWhoami(t)
			hstest.MustErr(t, admin.Do(t, "GET", adminUserPath("v2", alice.UserID, "/devices/"+second.DeviceID), nil), 404, "M_NOT_FOUND")
			hstest.MustErr(t, admin.Do(t, "GET", adminUserPath("v2", hs.UserID("nobody"), "/devices"), nil), 404, "M_NOT_FOUND")
			hstest.MustErr(t, admin.Do(t, "DELETE", adminUserPath("v2", hs.UserID("nobody"), "/devices/X"), nil), 404, "M_NOT_FOUND")

			third := hs.Login(t, "alice", "alice pw")
			hstest.MustOK(t, admin.Do(t, "POST", adminUserPath("v2", alice.UserID, "/delete_devices"), map[string]any{"devices": []string{third.DeviceID}}))
			hstest.MustErr(t, third.Whoami(t), 401, "M_UNKNOWN_TOKEN")
		})

		t.Run("joined rooms", func(t *testing.T) {
			r1 := createRoom(t, alice, map[string]any{"preset": "public_chat"})
			r2 := createRoom(t, bob, map[string]any{"preset": "public_chat"})
			join(t, alice, r2)
			type joined struct {
				JoinedRooms []string `json:"joined_rooms"`
				Total       int      `json:"total"`
			}
			j := decodeOK[joined](t, admin.Do(t, "GET", adminUserPath("v1", alice.UserID, "/joined_rooms"), nil))
			slices.Sort(j.JoinedRooms)
			want := []string{r1, r2}
			slices.Sort(want)
			if !slices.Equal(j.JoinedRooms, want) || j.Total != 2 {
				t.Errorf("joined_rooms of alice = %+v, want %v", j, want)
			}
			hstest.MustErr(t, admin.Do(t, "GET", adminUserPath("v1", hs.UserID("nobody"), "/joined_rooms"), nil), 404, "M_NOT_FOUND")
		})

		t.Run("deactivate", func(t *testing.T) {
			roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
			join(t, bob, roomID)
			hstest.MustOK(t, admin.Do(t, "POST", adminV+"/v1/deactivate/"+url.PathEscape(bob.UserID), map[string]any{"erase": true}))
			hstest.MustErr(t, bob.Whoami(t), 401, "M_UNKNOWN_TOKEN")
			hstest.MustErr(t, passwordLogin(t, hs, "bob", "bob pw"), 403, "M_FORBIDDEN")
			u := decodeOK[adminUserEntry](t, admin.Do(t, "GET", adminUserPath("v2", bob.UserID, ""), nil))
			if !u.Deactivated || u.DisplayName != nil {
				t.Errorf("bob after deactivation = %+v; want deactivated, no displayname", u)
			}
			// bob left every room.
			members := hstest.MustOK(t, alice.Do(t, "GET", roomPath(roomID, "/joined_members"), nil))["joined"].(map[string]any)
			if _, in := members[bob.UserID]; in || len(members) != 1 {
				t.Errorf("joined members after bob's deactivation = %v; want alice only", members)
			}
			if names := userNames(list(t, "")); slices.Contains(names, bob.UserID) {
				t.Errorf("GET /v2/users lists deactivated bob: %v", names)
			}
			if names := userNames(list(t, "deactivated=true")); !slices.Contains(names, bob.UserID) {
				t.Errorf("GET /v2/users?deactivated=true leaves out bob: %v", names)
			}
			hstest.MustErr(t, admin.Do(t, "POST", adminV+"/v1/deactivate/"+url.PathEscape(hs.UserID("nobody")), map[string]any{}), 404, "M_NOT_FOUND")

			// Reactivation needs a new password.
			hstest.MustErr(t, admin.Do(t, "PUT", adminUserPath("v2", bob.UserID, ""), map[string]any{"deactivated": false}), 400, "M_INVALID_PARAM")
			u = decodeOK[adminUserEntry](t, admin.Do(t, "PUT", adminUserPath("v2", bob.UserID, ""), map[string]any{"deactivated": false, "password": "bob again"}))
			if u.Deactivated {
				t.Errorf("bob after reactivation = %+v", u)
			}
			hs.Login(t, "bob", "bob again").MustWhoami(t)
			// And PUT can deactivate too.
			hstest.MustOK(t, admin.Do(t, "PUT", adminUserPath("v2", bob.UserID, ""), map[string]any{"deactivated": true}))
			hstest.MustErr(t, passwordLogin(t, hs, "bob", "bob again"), 403, "M_FORBIDDEN")
		})
	})
}

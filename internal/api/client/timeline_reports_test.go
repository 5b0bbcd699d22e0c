package client_test

import (
	"fmt"
	"net/url"
	"testing"

	"polder.dev/polder/internal/hstest"
)

// Reporting events and rooms (client-server API, "Reporting content"), and
// the Synapse admin API that lists event reports.
func TestReports(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		eve := hs.Register(t, "eve", "pw")
		admin := hs.Admin(t, "admin")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Reported", "room_alias_name": "reported"})
		join(t, bob, roomID)
		bad := send(t, bob, roomID, "m.room.message", msg("offensive"))
		report := func(c *hstest.Client, room, eventID string, body any) *hstest.Response {
			return c.Do(t, "POST", roomPath(room, "/report/"+url.PathEscape(eventID)), body)
		}

		hstest.MustOK(t, report(alice, roomID, bad, map[string]any{"reason": "rude", "score": -100}))
		hstest.MustOK(t, report(alice, roomID, bad, map[string]any{})) // reason and score are optional
		// Only joined members may report, and only events they can see.
		hstest.MustErr(t, report(eve, roomID, bad, map[string]any{"reason": "x"}), 404, "M_NOT_FOUND")
		hstest.MustErr(t, report(alice, roomID, "$unknown", map[string]any{"reason": "x"}), 404, "M_NOT_FOUND")
		hstest.MustErr(t, report(alice, "!unknown:"+hs.ServerName(), bad, map[string]any{"reason": "x"}), 404, "M_NOT_FOUND")
		hstest.MustErr(t, report(alice, roomID, bad, map[string]any{"score": 5}), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, report(alice, roomID, bad, map[string]any{"score": "bad"}), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, report(alice, roomID, bad, map[string]any{"reason": 1}), 400, "M_BAD_JSON")
		hstest.MustErr(t, report(alice, roomID, bad, nil), 400, "M_NOT_JSON")

		// Room reports need no membership (v1.13), but a known room.
		hstest.MustOK(t, eve.Do(t, "POST", roomPath(roomID, "/report"), map[string]any{"reason": "spam room"}))
		hstest.MustErr(t, eve.Do(t, "POST", roomPath("!unknown:"+hs.ServerName(), "/report"), map[string]any{"reason": "x"}), 404, "M_NOT_FOUND")
		hstest.MustErr(t, eve.Do(t, "POST", roomPath(roomID, "/report"), map[string]any{}), 400, "M_MISSING_PARAM")

		// The admin API lists event reports, newest first by default.
		type reportJSON struct {
			ID             int64          `json:"id"`
			RoomID         string         `json:"room_id"`
			EventID        string         `json:"event_id"`
			UserID         string         `json:"user_id"`
			Sender         string         `json:"sender"`
			Reason         *string        `json:"reason"`
			Score          *int64         `json:"score"`
			Name           *string        `json:"name"`
			CanonicalAlias *string        `json:"canonical_alias"`
			ReceivedTS     int64          `json:"received_ts"`
			EventJSON      map[string]any `json:"event_json"`
		}
		type list struct {
			EventReports []reportJSON `json:"event_reports"`
			Total        int          `json:"total"`
			NextToken    *int         `json:"next_token"`
		}
		const reports = "/_synapse/admin/v1/event_reports"
		l := decodeOK[list](t, admin.Do(t, "GET", reports, nil))
		if l.Total != 2 || len(l.EventReports) != 2 || l.NextToken != nil {
			t.Fatalf("event reports = %+v, want the 2 event reports", l)
		}
		first := l.EventReports[1] // oldest last
		if first.EventID != bad || first.RoomID != roomID || first.UserID != alice.UserID || first.Sender != bob.UserID ||
			first.Reason == nil || *first.Reason != "rude" || first.Score == nil || *first.Score != -100 || first.ReceivedTS == 0 {
			t.Errorf("first report = %+v", first)
		}
		if first.Name == nil || *first.Name != "Reported" || first.CanonicalAlias == nil || *first.CanonicalAlias != "#reported:"+hs.ServerName() {
			t.Errorf("report's room name/alias = %v %v", first.Name, first.CanonicalAlias)
		}
		if l.EventReports[0].Reason != nil || l.EventReports[0].Score != nil {
			t.Errorf("report without reason or score = %+v", l.EventReports[0])
		}
		p := decodeOK[list](t, admin.Do(t, "GET", reports+"?limit=1&dir=f", nil))
		if len(p.EventReports) != 1 || p.EventReports[0].ID != first.ID || p.NextToken == nil || *p.NextToken != 1 || p.Total != 2 {
			t.Errorf("first page of one = %+v", p)
		}
		if f := decodeOK[list](t, admin.Do(t, "GET", reports+"?user_id="+q(bob.UserID), nil)); f.Total != 0 {
			t.Errorf("reports by bob = %+v", f)
		}
		if f := decodeOK[list](t, admin.Do(t, "GET", reports+"?event_sender_user_id="+q(bob.UserID)+"&room_id="+q(roomID), nil)); f.Total != 2 {
			t.Errorf("reports of bob's events = %+v", f)
		}
		one := decodeOK[reportJSON](t, admin.Do(t, "GET", fmt.Sprintf("%s/%d", reports, first.ID), nil))
		if one.EventJSON["type"] != "m.room.message" || one.EventJSON["sender"] != bob.UserID {
			t.Errorf("report details event_json = %v", one.EventJSON)
		}
		hstest.MustErr(t, admin.Do(t, "GET", reports+"/999", nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, admin.Do(t, "GET", reports+"/abc", nil), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, admin.Do(t, "GET", reports+"?dir=x", nil), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, admin.Do(t, "GET", reports+"?from=-1", nil), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, alice.Do(t, "GET", reports, nil), 403, "M_FORBIDDEN")
		hstest.MustOK(t, admin.Do(t, "DELETE", fmt.Sprintf("%s/%d", reports, first.ID), nil))
		hstest.MustErr(t, admin.Do(t, "DELETE", fmt.Sprintf("%s/%d", reports, first.ID), nil), 404, "M_NOT_FOUND")
		if l := decodeOK[list](t, admin.Do(t, "GET", reports, nil)); l.Total != 1 {
			t.Errorf("after delete: %+v", l)
		}
	})
}

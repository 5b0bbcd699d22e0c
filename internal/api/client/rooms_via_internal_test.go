package client

import (
	"net/url"
	"reflect"
	"testing"

	"maunium.net/go/mautrix/id"
)

// joinVia is unexported and room.Service is concrete, so the servers a
// join passes on are tested here, inside the package.
func TestJoinVia(t *testing.T) {
	for _, tc := range []struct {
		name  string
		query string
		alias []string
		room  id.RoomID
		want  []string
	}{
		{"none, local room", "", nil, "!r:here.test", nil},
		{"named servers only", "via=a.test&via=b.test", nil, "!r:c.test", []string{"a.test", "b.test"}},
		{"room ID domain when none named", "", nil, "!r:c.test", []string{"c.test"}},
		{"server_name after via", "server_name=s.test&via=v.test", nil, "!r:here.test", []string{"v.test", "s.test"}},
		{"alias servers first", "via=v.test", []string{"here.test", "x.test", "v.test"}, "!r:x.test", []string{"x.test", "v.test"}},
		{"dedupe", "via=a.test&server_name=a.test&via=a.test", []string{"a.test"}, "!r:a.test", []string{"a.test"}},
		{"own server left out", "via=here.test", nil, "!r:here.test", nil},
		{"invalid names left out", "via=&via=a/b&via=ok.test:8448&server_name=%5B::1%5D:8448", nil, "!r:here.test", []string{"ok.test:8448", "[::1]:8448"}},
		{"room version 12 room ID has no domain", "via=v.test", nil, "!abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", []string{"v.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			if got := joinVia(q, tc.alias, tc.room, "here.test"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("joinVia(%q, %q, %s) = %q, want %q", tc.query, tc.alias, tc.room, got, tc.want)
			}
		})
	}
}

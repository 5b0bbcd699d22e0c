package room

import (
	"testing"

	"maunium.net/go/mautrix/id"
)

type aclEvent struct{ content string }

func (e aclEvent) EventID() id.EventID        { return "$acl" }
func (e aclEvent) RoomID() id.RoomID          { return "!r:x" }
func (e aclEvent) Type() string               { return "m.room.server_acl" }
func (e aclEvent) StateKey() *string          { s := ""; return &s }
func (e aclEvent) Sender() id.UserID          { return "@a:x" }
func (e aclEvent) Content() []byte            { return []byte(e.content) }
func (e aclEvent) PrevEventIDs() []id.EventID { return nil }
func (e aclEvent) AuthEventIDs() []id.EventID { return nil }
func (e aclEvent) Depth() int64               { return 1 }
func (e aclEvent) OriginServerTS() int64      { return 0 }
func (e aclEvent) Redacts() id.EventID        { return "" }

// The cases follow the spec's "Server Access Control Lists" section.
func TestACLAllows(t *testing.T) {
	for _, tc := range []struct {
		name, content, server string
		want                  bool
	}{
		{"no allow list denies all", `{}`, "a.example", false},
		{"allow star", `{"allow":["*"]}`, "a.example", true},
		{"deny wins over allow", `{"allow":["*"],"deny":["evil.example"]}`, "evil.example", false},
		{"deny glob", `{"allow":["*"],"deny":["*.evil.example"]}`, "x.evil.example", false},
		{"deny glob not the apex", `{"allow":["*"],"deny":["*.evil.example"]}`, "evil.example", true},
		{"port ignored", `{"allow":["good.example"]}`, "good.example:8448", true},
		{"question mark", `{"allow":["h?.example"]}`, "hs.example", true},
		{"question mark needs a char", `{"allow":["h?.example"]}`, "h.example", false},
		{"case insensitive", `{"allow":["Good.Example"]}`, "good.example", true},
		{"ip literal refused", `{"allow":["*"],"allow_ip_literals":false}`, "1.2.3.4:8448", false},
		{"ipv6 literal refused", `{"allow":["*"],"allow_ip_literals":false}`, "[::1]:8448", false},
		{"ip literal allowed by default", `{"allow":["*"]}`, "1.2.3.4", true},
		{"bad content allows", `{"allow":"*"}`, "a.example", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := aclAllows(aclEvent{tc.content}, tc.server); got != tc.want {
				t.Errorf("aclAllows(%s, %s) = %v, want %v", tc.content, tc.server, got, tc.want)
			}
		})
	}
	if !aclAllows(nil, "any.example") {
		t.Error("aclAllows(nil) = false, want true")
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		glob, s string
		want    bool
	}{
		{"*", "", true}, {"a*b", "ab", true}, {"a*b", "axxb", true}, {"a*b", "axxc", false},
		{"*.x", "a.b.x", true}, {"**", "abc", true}, {"a?c*", "abcdef", true}, {"", "", true}, {"", "a", false},
	} {
		if got := globMatch(tc.glob, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.glob, tc.s, got, tc.want)
		}
	}
}

package sync

import (
	"context"
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/store"
)

// notifyingTypes are the event types that count as notifications until
// push rules decide (the default underride rules notify for messages,
// encrypted events, stickers and calls).
var notifyingTypes = []string{"m.room.message", "m.room.encrypted", "m.sticker", "m.call.invite"}

// unread sets the unread notification counts of the joined rooms
// (client-server API, "Receiving notifications"): notification_count is
// the messages from others after the user's read position, highlight_count
// those that mention the user (its user ID in m.mentions.user_ids or,
// without m.mentions, its display name or localpart in the body). With
// unread_thread_notifications the counts are split: unread_notifications
// for the main timeline and unread_thread_notifications per thread root
// (client-server API, "Threading").
func (b *builder) unread(ctx context.Context) error {
	if len(b.joined) == 0 {
		return nil
	}
	localpart, _, _ := b.req.User.Parse()
	var own []id.EventID
	for r := range b.joined {
		own = append(own, b.memberships[r].EventID)
	}
	if err := b.load(ctx, own); err != nil {
		return err
	}
	names := map[id.RoomID]string{}
	rooms := make([]store.UnreadRoom, 0, len(b.joined))
	for r := range b.joined {
		m := b.memberships[r]
		name, _ := getString(b.contentOf(m.EventID), "displayname")
		names[r] = name
		ur := store.UnreadRoom{RoomID: r, Floor: m.StreamPos, To: b.to.Stream}
		for _, n := range []string{localpart, name} {
			if n = needle(n); n != "" && !contains(ur.Needles, n) {
				ur.Needles = append(ur.Needles, n)
			}
		}
		rooms = append(rooms, ur)
	}
	res, err := b.s.db.UnreadCounts(ctx, b.req.User, rooms, notifyingTypes)
	if err != nil {
		return err
	}
	split := b.f.Room.Timeline.UnreadThreadNotifications
	for r, jr := range b.joined {
		u := res[r]
		threads := map[string]*Counts{}
		get := func(t string) *Counts {
			if !split {
				t = ""
			}
			c := threads[t]
			if c == nil {
				c = &Counts{}
				threads[t] = c
			}
			return c
		}
		for t, n := range u.Counts {
			get(t).Notifications += n
		}
		for _, ev := range u.Candidates {
			if isHighlight(ev.JSON, b.req.User, localpart, names[r]) {
				get(ev.Thread).Highlights++
			}
		}
		if c := threads[""]; c != nil {
			jr.Unread = *c
		}
		for t, c := range threads {
			if t == "" {
				continue
			}
			if jr.UnreadThreads == nil {
				jr.UnreadThreads = map[id.EventID]Counts{}
			}
			jr.UnreadThreads[id.EventID(t)] = *c
		}
	}
	return nil
}

// needle is the lower-case form of s as it appears inside a JSON string.
func needle(s string) string {
	if s == "" {
		return ""
	}
	q := cjson.AppendString(nil, strings.ToLower(s))
	return string(q[1 : len(q)-1])
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// isHighlight reports whether an event (federation format) mentions user:
// through m.mentions when the content has it (intentional mentions), else
// through its display name or localpart as a word of the body.
func isHighlight(raw []byte, user id.UserID, localpart, displayName string) bool {
	var ev struct {
		Content struct {
			Mentions *struct {
				UserIDs []id.UserID `json:"user_ids"`
			} `json:"m.mentions"`
			Body any `json:"body"`
		} `json:"content"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		return false
	}
	if m := ev.Content.Mentions; m != nil {
		for _, u := range m.UserIDs {
			if u == user {
				return true
			}
		}
		return false
	}
	body, _ := ev.Content.Body.(string)
	return containsWord(body, displayName) || containsWord(body, localpart)
}

// containsWord reports whether word occurs in s, case-insensitively, with
// no letter or digit right before or after it (as the push rules' body
// patterns match whole words).
func containsWord(s, word string) bool {
	if word == "" {
		return false
	}
	s, word = strings.ToLower(s), strings.ToLower(word)
	for i := 0; ; {
		j := strings.Index(s[i:], word)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(word)
		before, _ := utf8.DecodeLastRuneInString(s[:start])
		after, _ := utf8.DecodeRuneInString(s[end:])
		if (start == 0 || !isWordRune(before)) && (end == len(s) || !isWordRune(after)) {
			return true
		}
		i = start + 1
	}
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' }

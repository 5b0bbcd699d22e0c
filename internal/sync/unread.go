package sync

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"sync"
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
//
// The read position of a thread is the latest of the user's unthreaded
// m.read or m.read.private receipt, its receipt for the thread ("main" for
// the main timeline) and its own latest event in the thread (sending reads
// up to it), and never before its membership event: a user is not
// notified of what happened before it joined.
//
// Counts are kept per user and room (unreadCache): while the receipts stay
// where they were, a sync counts only the events since the position the
// kept counts were made at, so that the cost follows what is new rather
// than everything unread.
func (b *builder) unread(ctx context.Context) error {
	if len(b.joined) == 0 {
		return nil
	}
	user := b.req.User
	localpart, _, _ := user.Parse()
	// The display name, from the user's member event unless the kept
	// counts were made with the same one (the same membership position).
	var need []id.RoomID
	kept := make(map[id.RoomID]*unreadEntry, len(b.joined))
	for r := range b.joined {
		c := b.s.unread.get(user, r)
		kept[r] = c
		if c == nil || c.floor != b.memberships[r].StreamPos {
			need = append(need, r)
		}
	}
	memberEvents, err := b.s.db.MembershipEventIDs(ctx, user, need)
	if err != nil {
		return err
	}
	own := make([]id.EventID, 0, len(memberEvents))
	for _, e := range memberEvents {
		own = append(own, e)
	}
	if err := b.load(ctx, own); err != nil {
		return err
	}
	receipts, err := b.s.db.ReadReceipts(ctx, user)
	if err != nil {
		return err
	}
	to := b.to.Stream
	type work struct {
		room   id.RoomID
		from   int64
		entry  *unreadEntry
		cached *unreadEntry
	}
	var todo []*work
	var ranges []store.StreamRange
	for r := range b.joined {
		m := b.memberships[r]
		c := kept[r]
		var name string
		if c != nil && c.floor == m.StreamPos {
			name = c.name
		} else {
			name, _ = getString(b.contentOf(memberEvents[r]), "displayname")
		}
		e := &unreadEntry{at: to, floor: m.StreamPos, name: name, receipts: map[string]int64{}}
		e.base = m.StreamPos
		for thread, pos := range receipts[r] {
			switch thread {
			case "":
				e.base = max(e.base, pos)
			case "main":
				e.receipts[""] = pos
			default:
				e.receipts[thread] = pos
			}
		}
		w := &work{room: r, entry: e, from: e.base}
		if c != nil && c.at <= to && c.sameInputs(e) {
			w.cached, w.from = c, c.at
		}
		todo = append(todo, w)
		ranges = append(ranges, store.StreamRange{RoomID: r, From: w.from, To: to})
	}
	owns, err := b.s.db.OwnLatest(ctx, user, ranges)
	if err != nil {
		return err
	}
	queries := make([]store.UnreadQuery, len(todo))
	for i, w := range todo {
		e := w.entry
		// The read position per thread beyond base.
		e.read = map[string]int64{}
		if w.cached != nil {
			for t, p := range w.cached.read {
				e.read[t] = p
			}
		} else {
			for t, p := range e.receipts {
				if p > e.base {
					e.read[t] = p
				}
			}
		}
		e.counts = map[string]Counts{}
		if w.cached != nil {
			for t, c := range w.cached.counts {
				e.counts[t] = c
			}
		}
		for t, p := range owns[w.room] {
			if p > e.read[t] && p > e.base {
				e.read[t] = p
				// Everything kept for the thread is at or before the
				// user's new event: read.
				delete(e.counts, t)
			}
		}
		q := store.UnreadQuery{RoomID: w.room, From: w.from, To: to, Read: e.read}
		for _, n := range []string{localpart, e.name} {
			if n = needle(n); n != "" && !contains(q.Needles, n) {
				q.Needles = append(q.Needles, n)
			}
		}
		queries[i] = q
	}
	res, err := b.s.db.UnreadCounts(ctx, user, queries, notifyingTypes)
	if err != nil {
		return err
	}
	split := b.f.Room.Timeline.UnreadThreadNotifications
	for _, w := range todo {
		e := w.entry
		u := res[w.room]
		for t, n := range u.Counts {
			c := e.counts[t]
			c.Notifications += n
			e.counts[t] = c
		}
		for _, ev := range u.Candidates {
			if isHighlight(ev.JSON, user, localpart, e.name) {
				c := e.counts[ev.Thread]
				c.Highlights++
				e.counts[ev.Thread] = c
			}
		}
		b.s.unread.put(user, w.room, e)
		jr := b.joined[w.room]
		for t, c := range e.counts {
			if c.Notifications == 0 && c.Highlights == 0 {
				continue
			}
			if !split || t == "" {
				jr.Unread.Notifications += c.Notifications
				jr.Unread.Highlights += c.Highlights
				continue
			}
			if jr.UnreadThreads == nil {
				jr.UnreadThreads = map[id.EventID]Counts{}
			}
			jr.UnreadThreads[id.EventID(t)] = c
		}
	}
	return nil
}

// unreadEntry is a user's unread counts in a room at a stream position,
// with what they were computed from.
type unreadEntry struct {
	at    int64  // counted up to
	floor int64  // the stream position of the user's member event
	name  string // the display name in that event
	// base is the read position of every thread (unthreaded receipt or
	// floor); receipts the threaded receipts ("" for main) and read the
	// read positions beyond base, receipts and own events together.
	base     int64
	receipts map[string]int64
	read     map[string]int64
	counts   map[string]Counts // per thread, "" for the main timeline
}

// sameInputs reports whether counts kept in c can be carried forward to e:
// the same membership, display name and receipts.
func (c *unreadEntry) sameInputs(e *unreadEntry) bool {
	return c.floor == e.floor && c.name == e.name && c.base == e.base && maps.Equal(c.receipts, e.receipts)
}

// unreadCache keeps the latest unread counts per user and room.
type unreadCache struct {
	mu sync.Mutex
	m  map[unreadKey]*unreadEntry
}

type unreadKey struct {
	user id.UserID
	room id.RoomID
}

// unreadCacheSize bounds the cache; when full it starts over.
const unreadCacheSize = 200000

func (c *unreadCache) get(u id.UserID, r id.RoomID) *unreadEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[unreadKey{u, r}]
}

func (c *unreadCache) put(u id.UserID, r id.RoomID, e *unreadEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= unreadCacheSize {
		c.m = map[unreadKey]*unreadEntry{}
	}
	if old := c.m[unreadKey{u, r}]; old != nil && old.at > e.at {
		return // a sync further on got there first
	}
	c.m[unreadKey{u, r}] = e
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

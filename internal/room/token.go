package room

import (
	"fmt"
	"strconv"
	"strings"

	"polder.dev/polder/internal/notify"
)

// Token is a pagination or sync token, as clients see it.
//
// Two kinds exist:
//   - a stream token "s{stream}_{typing}": a position in the server's
//     streams, as /sync's next_batch and (mostly) prev_batch;
//   - a topological token "t{depth}_{stream}": a position in a room's
//     topological order (depth, then stream position), as /messages'
//     start and end. It is exclusive: paginating backwards from it
//     returns the events strictly before it.
//
// /messages accepts both: a stream token stands for the position just
// after the room's last event (in topological order) at or below its
// stream position, and a backwards page from it returns only events at or
// below that stream position. So /messages from a sync timeline's
// prev_batch, the stream position before the timeline's first event,
// returns exactly the events that arrived before it, newest first in
// topological order, even those of a fork that arrived late with a lower
// depth than events the client has (as Synapse does).
type Token struct {
	Topological bool
	Depth       int64 // topological tokens only
	Stream      int64
	Typing      int64 // stream tokens only
}

// StreamToken is the stream token of a notifier position.
func StreamToken(p notify.Position) Token { return Token{Stream: p.Stream, Typing: p.Typing} }

// TopoToken is the topological token of an event position.
func TopoToken(depth, stream int64) Token {
	return Token{Topological: true, Depth: depth, Stream: stream}
}

// Position is the notifier position of a stream token.
func (t Token) Position() notify.Position { return notify.Position{Stream: t.Stream, Typing: t.Typing} }

func (t Token) String() string {
	if t.Topological {
		return fmt.Sprintf("t%d_%d", t.Depth, t.Stream)
	}
	return fmt.Sprintf("s%d_%d", t.Stream, t.Typing)
}

// ParseToken parses a token; it returns an error for anything malformed.
func ParseToken(s string) (Token, error) {
	if len(s) < 2 || (s[0] != 's' && s[0] != 't') {
		return Token{}, fmt.Errorf("malformed token %q", s)
	}
	a, b, ok := strings.Cut(s[1:], "_")
	if !ok {
		return Token{}, fmt.Errorf("malformed token %q", s)
	}
	x, err1 := strconv.ParseInt(a, 10, 64)
	y, err2 := strconv.ParseInt(b, 10, 64)
	// Backfilled events have negative stream positions (store migration
	// 0010), so a topological token's stream part may be negative.
	if err1 != nil || err2 != nil || x < 0 || (y < 0 && s[0] != 't') {
		return Token{}, fmt.Errorf("malformed token %q", s)
	}
	if s[0] == 't' {
		return Token{Topological: true, Depth: x, Stream: y}, nil
	}
	return Token{Stream: x, Typing: y}, nil
}

package event

import (
	"errors"
	"strconv"

	"polder.dev/polder/internal/cjson"
)

// StrippedStateTypes are the state events that stripped state should hold
// (client-server API, "Stripped state"). The m.room.create event is
// required in invite_state and knock_state since v1.16.
var StrippedStateTypes = []string{
	TypeCreate,
	"m.room.name",
	"m.room.avatar",
	"m.room.topic",
	TypeJoinRules,
	"m.room.canonical_alias",
	"m.room.encryption",
}

// ErrNotState is returned by Stripped for a message event.
var ErrNotState = errors.New("not a state event")

// Stripped returns the event's stripped form (client-server API, "Stripped
// state"): canonical JSON with only content, sender, state_key and type, as
// sent to clients in invite_state and knock_state. Over federation
// (invite_room_state, knock_room_state) full PDUs are sent instead since
// v1.16. It returns ErrNotState for a message event.
func (p *PDU) Stripped() ([]byte, error) {
	if p.stateKey == nil {
		return nil, ErrNotState
	}
	out := make([]byte, 0, len(p.content)+len(p.sender)+len(*p.stateKey)+len(p.typ)+48)
	out = append(out, `{"content":`...)
	out = append(out, p.content...)
	if p.typ == TypeCreate {
		// The create event goes whole, so that clients can check the
		// room ID against it (room version 12; spec v1.16, MSC4311).
		out = append(out, `,"event_id":`...)
		out = cjson.AppendString(out, string(p.eventID))
		out = append(out, `,"origin_server_ts":`...)
		out = strconv.AppendInt(out, p.ts, 10)
		out = append(out, `,"room_id":`...)
		out = cjson.AppendString(out, string(p.roomID))
	}
	out = append(out, `,"sender":`...)
	out = cjson.AppendString(out, string(p.sender))
	out = append(out, `,"state_key":`...)
	out = cjson.AppendString(out, *p.stateKey)
	out = append(out, `,"type":`...)
	out = cjson.AppendString(out, p.typ)
	return append(out, '}'), nil
}

// StrippedState returns the stripped forms of the state events as a JSON
// array, skipping message events.
func StrippedState(events []*PDU) []byte {
	out := []byte{'['}
	n := 0
	for _, e := range events {
		s, err := e.Stripped()
		if err != nil {
			continue
		}
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, s...)
		n++
	}
	return append(out, ']')
}

package client

import (
	"polder.dev/polder/internal/directory"
	"polder.dev/polder/internal/e2ee"
	"polder.dev/polder/internal/media"
	"polder.dev/polder/internal/presence"
	"polder.dev/polder/internal/push"
	"polder.dev/polder/internal/receipt"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/sync"
	"polder.dev/polder/internal/typing"
)

// Services are the domain services the client API calls, beside users.
// Each area's handlers use their own fields; server wires them.
type Services struct {
	Rooms *room.Service
	// Directory serves aliases, the room and user directories and search.
	Directory *directory.Service
	// Sync serves /sync.
	Sync *sync.Service
	// Typing, Receipts and Presence serve userdata_*.go (account data and
	// tags are on the user service).
	Typing   *typing.Service
	Receipts *receipt.Service
	Presence *presence.Service
	// E2EE serves keys.go, todevice.go, roomkeys.go and dehydrated.go.
	E2EE *e2ee.Service
	// Media serves media.go: the media repository.
	Media *media.Service
	// Push serves push.go: push rules, pushers, notifications; nil:
	// the predefined rules only.
	Push *push.Service
	// Spaces serves hierarchy.go: the space hierarchy and room summaries.
	Spaces *room.Spaces
}

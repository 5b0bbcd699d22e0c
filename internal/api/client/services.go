package client

import (
	"polder.dev/polder/internal/directory"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/sync"
)

// Services are the domain services the client API calls, beside users.
// Each area's handlers use their own fields; server wires them.
type Services struct {
	Rooms *room.Service
	// Directory serves aliases, the room and user directories and search.
	Directory *directory.Service
	Sync      *sync.Service
}

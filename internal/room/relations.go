package room

import (
	"context"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
)

// bundled returns the bundled aggregations (unsigned m.relations) of
// events: thread summaries, the latest edit and references (client-server
// API, "Aggregations of child events").
func (s *Service) bundled(ctx context.Context, evs []*store.Event, v Viewer) (map[id.EventID][]byte, error) {
	return nil, nil
}

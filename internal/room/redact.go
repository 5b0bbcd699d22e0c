package room

import (
	"context"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/eventauth"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
)

// redaction is a redaction applied in a persist, for the cache.
type redaction struct {
	target   id.EventID
	redacted *event.PDU
}

// checkRedaction refuses, before it is sent, a local redaction that would
// not apply: the target must be an event of the room, and the sender must
// have the redact power level unless it sent the target (client-server
// API, "Redactions"; the same test the server applies when the redaction
// arrives).
func (s *Service) checkRedaction(ctx context.Context, rs *roomState, roomID id.RoomID, redaction *event.PDU) (*store.Event, error) {
	target, err := s.db.Event(ctx, redaction.Redacts())
	if errors.Is(err, store.ErrNotFound) {
		// An event this server has not received (yet): the redaction is
		// sent anyway, as Synapse does, and applies where the event is.
		return nil, nil
	}
	if err == nil && target.RoomID() != roomID {
		return nil, mxerr.NotFound("Event not found")
	}
	if err != nil {
		return nil, err
	}
	pl, err := rs.powerLevels()
	if err != nil {
		return nil, err
	}
	ok, err := eventauth.RedactionApplies(rs.version, redaction, target, pl)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, mxerr.Forbidden("You don't have permission to redact this event")
	}
	return target, nil
}

// applyRedaction redacts the target of a persisted redaction in the same
// transaction, if it is stored, not yet redacted, and the redaction
// applies.
func (s *Service) applyRedaction(ctx context.Context, tx *store.Tx, rs *roomState, state stateres.StateMap, get func(id.EventID) *event.PDU, pdu *event.PDU) (*redaction, error) {
	target, err := s.db.Event(ctx, pdu.Redacts())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if target.RoomID() != pdu.RoomID() || target.RedactedBy != "" {
		return nil, nil
	}
	lookup := func(typ, sk string) eventauth.Event {
		if p := get(state[stateres.StateKey{Type: typ, StateKey: sk}]); p != nil {
			return p
		}
		return nil
	}
	pl, err := eventauth.NewPowerLevels(rs.version, lookup(event.TypeCreate, ""), lookup(event.TypePowerLevels, ""))
	if err != nil {
		return nil, err
	}
	if ok, err := eventauth.RedactionApplies(rs.version, pdu, target, pl); err != nil || !ok {
		return nil, err
	}
	red := target.PDU.Redacted()
	if err := tx.RedactEvent(ctx, target.EventID(), red.JSON(), pdu.EventID()); err != nil {
		return nil, fmt.Errorf("redact %s: %w", target.EventID(), err)
	}
	return &redaction{target: target.EventID(), redacted: red}, nil
}

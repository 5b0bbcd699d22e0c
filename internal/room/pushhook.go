package room

import (
	"context"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/store"
)

// PushWrite stores an event's push notification rows in the event's own
// transaction, at the stream position it got (Service.Push).
type PushWrite = func(ctx context.Context, tx *store.Tx, pos int64) error

// PushDone is told, after the transaction, the persisted event, or nil if
// the transaction failed (Service.Push).
type PushDone = func(ev *store.Event)

// pushes are the push notifications of the events of one transaction, in
// the order they are persisted: worked out before the transaction,
// written in it, finished after it. A nil *pushes does nothing.
type pushes struct {
	write []PushWrite
	done  []PushDone
}

// preparePush works out the push notifications of events about to be
// persisted in one transaction, in order. Pass only events that go into
// the timeline as accepted (not rejected, soft-failed, outliers or
// backfilled: they notify nobody).
func (s *Service) preparePush(ctx context.Context, evs ...*store.Event) *pushes {
	if s.Push == nil {
		return nil
	}
	p := &pushes{}
	p.write = make([]PushWrite, len(evs))
	p.done = make([]PushDone, len(evs))
	for i, ev := range evs {
		p.write[i], p.done[i] = s.Push(ctx, ev)
	}
	return p
}

// preparePushLocal is preparePush for local events.
func (s *Service) preparePushLocal(ctx context.Context, pdus []*event.PDU) *pushes {
	if s.Push == nil {
		return nil
	}
	evs := make([]*store.Event, len(pdus))
	for i, pdu := range pdus {
		evs[i] = &store.Event{PDU: pdu}
	}
	return s.preparePush(ctx, evs...)
}

// writeAt writes the rows of the i-th event, persisted at pos, in its
// transaction.
func (p *pushes) writeAt(ctx context.Context, tx *store.Tx, i int, pos int64) error {
	if p == nil || i >= len(p.write) || p.write[i] == nil {
		return nil
	}
	return p.write[i](ctx, tx, pos)
}

// finish tells each event's hook how its transaction ended: err is the
// transaction's error, evs the persisted events (in order) when it is nil.
func (p *pushes) finish(err error, evs ...*store.Event) {
	if p == nil {
		return
	}
	for i, done := range p.done {
		if done == nil {
			continue
		}
		if err != nil || i >= len(evs) {
			done(nil)
		} else {
			done(evs[i])
		}
	}
}

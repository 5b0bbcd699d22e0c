package room

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"golang.org/x/sync/errgroup"
	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/eventauth"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
)

// KeySource gives other servers' verify keys (the key cache of
// internal/keys, fetching as needed).
type KeySource interface {
	// VerifyKey returns serverName's key keyID and until when it is
	// valid, fetching it if needed.
	VerifyKey(ctx context.Context, serverName string, keyID id.KeyID) (ed25519.PublicKey, time.Time, error)
	// Prefetch fetches the keys of many servers at once, ahead of
	// verifying many events.
	Prefetch(ctx context.Context, want map[string][]id.KeyID) error
}

// dbSource is the stateres.EventSource over the store, and over events
// being ingested that are not stored yet (a new event takes part in the
// resolution of the current state before it is written). Rejected events
// are included (store.Event says so through Rejected).
type dbSource struct {
	db      *store.DB
	mu      gosync.Mutex
	pending map[id.EventID]*event.PDU
}

// hold makes p visible to the resolver until the returned func is called.
func (d *dbSource) hold(p *event.PDU) func() {
	d.mu.Lock()
	if d.pending == nil {
		d.pending = map[id.EventID]*event.PDU{}
	}
	d.pending[p.EventID()] = p
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		delete(d.pending, p.EventID())
		d.mu.Unlock()
	}
}

func (d *dbSource) Events(ctx context.Context, ids []id.EventID) ([]eventauth.Event, error) {
	evs, err := d.db.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[id.EventID]eventauth.Event, len(evs))
	for _, ev := range evs {
		byID[ev.EventID()] = ev
	}
	if len(evs) < len(ids) {
		d.mu.Lock()
		for _, eid := range ids {
			if p, ok := d.pending[eid]; ok {
				byID[eid] = p
			}
		}
		d.mu.Unlock()
	}
	out := make([]eventauth.Event, len(ids))
	for i, eid := range ids {
		ev := byID[eid]
		if ev == nil {
			return nil, fmt.Errorf("%w: %s", stateres.ErrNotFound, eid)
		}
		out[i] = ev
	}
	return out, nil
}

// keyFunc gives VerifySignatures the keys of ks, and our own key.
func (s *Service) keyFunc(ctx context.Context) event.KeyFunc {
	return func(server string, keyID id.KeyID) (event.VerifyKey, error) {
		if server == s.cfg.ServerName && s.cfg.Key != nil && keyID == s.cfg.Key.KeyID() {
			return event.VerifyKey{Key: s.cfg.Key.Public(), ValidUntil: time.Now().Add(7 * 24 * time.Hour)}, nil
		}
		if s.cfg.Keys == nil {
			return event.VerifyKey{}, fmt.Errorf("%w: no key source", event.ErrKeyNotFound)
		}
		pub, until, err := s.cfg.Keys.VerifyKey(ctx, server, keyID)
		if err != nil {
			return event.VerifyKey{}, fmt.Errorf("%w: %v", event.ErrKeyNotFound, err)
		}
		return event.VerifyKey{Key: pub, ValidUntil: until}, nil
	}
}

// signatureKeys lists the key IDs each signing server of the events used.
func signatureKeys(pdus []*event.PDU) map[string][]id.KeyID {
	want := map[string][]id.KeyID{}
	for _, p := range pdus {
		for _, server := range p.SigningServers() {
			enc := cjson.AppendString(nil, server)
			sigs, ok := cjson.Get(p.Signatures(), string(enc[1:len(enc)-1]))
			if !ok {
				continue
			}
			for k := range cjson.Members(sigs) {
				kid, err := cjson.Unquote(append(append([]byte{'"'}, k...), '"'))
				if err != nil || !strings.HasPrefix(kid, "ed25519:") {
					continue
				}
				if !slices.Contains(want[server], id.KeyID(kid)) {
					want[server] = append(want[server], id.KeyID(kid))
				}
			}
		}
	}
	return want
}

// verifyAll checks the signatures of events (server-server API, "Checks
// performed on receipt of a PDU", step 2) with the keys fetched in one
// batch, in parallel, and their content hashes (step 3: an event whose
// hash does not match is replaced by its redacted form). It returns the
// events that passed, in order, and the error of each that did not.
func (s *Service) verifyAll(ctx context.Context, pdus []*event.PDU) ([]*event.PDU, map[id.EventID]error) {
	if s.cfg.Keys != nil {
		want := signatureKeys(pdus)
		delete(want, s.cfg.ServerName)
		if len(want) > 0 {
			if err := s.cfg.Keys.Prefetch(ctx, want); err != nil {
				s.log.Debug("prefetch keys", "err", err)
			}
		}
	}
	errs := make([]error, len(pdus))
	out := make([]*event.PDU, len(pdus))
	kf := s.keyFunc(ctx)
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	const batch = 64
	for lo := 0; lo < len(pdus); lo += batch {
		hi := min(lo+batch, len(pdus))
		g.Go(func() error {
			for i := lo; i < hi; i++ {
				p := pdus[i]
				if err := p.VerifySignatures(kf); err != nil {
					errs[i] = err
					continue
				}
				if err := p.VerifyContentHash(); err != nil {
					p = p.Redacted()
				}
				out[i] = p
			}
			return nil
		})
	}
	_ = g.Wait()
	bad := map[id.EventID]error{}
	kept := out[:0:0]
	for i, p := range out {
		if errs[i] != nil {
			bad[pdus[i].EventID()] = errs[i]
			continue
		}
		kept = append(kept, p)
	}
	return kept, bad
}

// parseAll parses raw PDUs of a room version, dropping those that do not
// parse or belong to another room.
func parseAll(version id.RoomVersion, roomID id.RoomID, raws [][]byte) ([]*event.PDU, error) {
	out := make([]*event.PDU, 0, len(raws))
	var firstErr error
	for _, raw := range raws {
		p, err := event.Parse(version, raw)
		if err == nil && p.RoomID() != roomID {
			err = fmt.Errorf("event %s is in room %s, not %s", p.EventID(), p.RoomID(), roomID)
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		out = append(out, p)
	}
	return out, firstErr
}

// authOrder sorts events so that each comes after those of its auth
// events that are among them (a topological order of the auth DAG),
// breaking ties by depth. Events in an auth cycle are left out.
func authOrder(pdus []*event.PDU) []*event.PDU {
	byID := make(map[id.EventID]*event.PDU, len(pdus))
	for _, p := range pdus {
		byID[p.EventID()] = p
	}
	slices.SortStableFunc(pdus, func(a, b *event.PDU) int {
		return int(a.Depth() - b.Depth())
	})
	out := make([]*event.PDU, 0, len(pdus))
	state := make(map[id.EventID]uint8, len(pdus)) // 1 visiting, 2 done
	var visit func(p *event.PDU) bool
	visit = func(p *event.PDU) bool {
		switch state[p.EventID()] {
		case 1:
			return false
		case 2:
			return true
		}
		state[p.EventID()] = 1
		for _, a := range p.AuthEventIDs() {
			if ap := byID[a]; ap != nil && !visit(ap) {
				return false
			}
		}
		state[p.EventID()] = 2
		out = append(out, p)
		return true
	}
	for _, p := range pdus {
		visit(p)
	}
	return out
}

// authAgainst checks an event against its own auth events (step 4),
// looked up in known. It returns the eventauth error, or
// eventauth.ErrMissingAuthEvent wrapped when one is unknown.
func authAgainstOwn(version id.RoomVersion, p *event.PDU, known func(id.EventID) eventauth.Event) error {
	auth := make([]eventauth.Event, 0, len(p.AuthEventIDs()))
	for _, a := range p.AuthEventIDs() {
		ev := known(a)
		if ev == nil {
			return fmt.Errorf("%w: %s", eventauth.ErrMissingAuthEvent, a)
		}
		auth = append(auth, ev)
	}
	if err := eventauth.CheckAuthEvents(version, p, auth); err != nil {
		return err
	}
	lookup := eventauth.LookupEvents(auth...)
	if cid := createEventID(p.RoomID()); cid != "" {
		// Room version 12: the create event is not among the auth
		// events; the room ID names it.
		create := known(cid)
		inner := lookup
		lookup = func(typ, stateKey string) eventauth.Event {
			if typ == event.TypeCreate && stateKey == "" && create != nil {
				return create
			}
			return inner(typ, stateKey)
		}
	}
	return eventauth.Check(version, p, lookup)
}

// createEventID is, for a room ID without a server name (room version
// 12), the ID of its m.room.create event; "" otherwise.
func createEventID(roomID id.RoomID) id.EventID {
	if strings.Contains(string(roomID), ":") || len(roomID) < 2 {
		return ""
	}
	return id.EventID("$" + string(roomID[1:]))
}

// lookupIn is an eventauth.Lookup over a state map and its events.
func lookupIn(state stateres.StateMap, get func(id.EventID) eventauth.Event) eventauth.Lookup {
	return func(typ, stateKey string) eventauth.Event {
		eid, ok := state[stateres.StateKey{Type: typ, StateKey: stateKey}]
		if !ok {
			return nil
		}
		return get(eid)
	}
}

// errNoFederation is returned when a remote operation is asked of a
// server without federation.
var errNoFederation = errors.New("federation is not configured")

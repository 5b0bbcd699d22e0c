package stateres

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

// ErrUnknownVersion is wrapped by the errors for room versions this package
// has no algorithm for.
var ErrUnknownVersion = errors.New("stateres: unknown room version")

// AuthFunc decides whether an event is allowed given its auth events
// through a Lookup; nil means allowed. eventauth.Check is one.
type AuthFunc func(version id.RoomVersion, ev eventauth.Event, auth eventauth.Lookup) error

// Config is what a Resolver needs.
type Config struct {
	// Source gives the events of the room. Required.
	Source EventSource
	// Chains answers auth chain questions. If nil, the Resolver keeps an
	// AuthChainCache over Source, for as long as it lives.
	Chains AuthChains
	// Auth checks events against the authorization rules. If nil,
	// eventauth.Check.
	Auth AuthFunc
}

// Resolver resolves the state of one room, or of several rooms that share
// an EventSource. It is safe for concurrent use.
type Resolver struct {
	src    EventSource
	auth   AuthFunc
	chains AuthChains

	// defaultChains is created on first use when Config.Chains is nil.
	once          sync.Once
	defaultChains *AuthChainCache
}

// New returns a Resolver. It panics if cfg.Source is nil.
func New(cfg Config) *Resolver {
	if cfg.Source == nil {
		panic("stateres: Config.Source is nil")
	}
	r := &Resolver{src: cfg.Source, auth: cfg.Auth, chains: cfg.Chains}
	if r.auth == nil {
		r.auth = eventauth.Check
	}
	return r
}

func (r *Resolver) authChains() AuthChains {
	if r.chains != nil {
		return r.chains
	}
	r.once.Do(func() { r.defaultChains = NewAuthChainCache(r.src) })
	return r.defaultChains
}

// Resolve returns the resolution of states with the algorithm of the room
// version (rooms/v1.md, v2.md and v12.md, "State resolution"). The states
// are not modified; the result is a new map, except that the resolution of
// a single state is that state itself.
//
// Errors wrap ErrUnknownVersion for an unknown room version, ErrNotFound
// when an event of the states or of their auth chains is missing, and the
// context's error when ctx ends.
func (r *Resolver) Resolve(ctx context.Context, version id.RoomVersion, states []StateMap) (StateMap, error) {
	out, _, err := r.resolve(ctx, version, states, false)
	return out, err
}

// resolve is Resolve, also returning what each step found when withTrace is
// set (for tests; see export_test.go).
func (r *Resolver) resolve(ctx context.Context, version id.RoomVersion, states []StateMap, withTrace bool) (StateMap, *trace, error) {
	if !version.IsKnown() {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownVersion, version)
	}
	var tr *trace
	if withTrace {
		tr = &trace{}
	}
	switch len(states) {
	case 0:
		return StateMap{}, tr, nil
	case 1:
		return states[0], tr, nil
	}
	var (
		out StateMap
		err error
	)
	switch version.StateResVersion() {
	case id.StateResV1:
		out, err = r.resolveV1(ctx, version, states, tr)
	case id.StateResV2:
		out, err = r.resolveV2(ctx, version, states, false, tr)
	case id.StateResV2_1:
		out, err = r.resolveV2(ctx, version, states, true, tr)
	default:
		return nil, nil, fmt.Errorf("%w %q: state resolution %d", ErrUnknownVersion, version, version.StateResVersion())
	}
	if err != nil {
		return nil, nil, fmt.Errorf("resolve %d states (room version %s): %w", len(states), version, err)
	}
	return out, tr, nil
}

// StateBefore returns the state before an event given the states after its
// prev_events (rooms/v2.md: "The room state S(E) before E is the resolution
// of the set of states {S′(E1), S′(E2), …} after the prev_events"): the
// empty state for none (an m.room.create event), that state itself for
// one, their resolution for several. Every path that computes the state of
// a room must go through here, so that all agree (DESIGN-NOTES, "State
// resets"). The result must not be modified: it may be one of the inputs.
//
// Errors are those of Resolve.
func (r *Resolver) StateBefore(ctx context.Context, version id.RoomVersion, prevStates []StateMap) (StateMap, error) {
	return r.Resolve(ctx, version, prevStates)
}

// AuthChain returns the union of the auth chains of the events (rooms/v2.md
// "Auth chain"), in no particular order. Errors wrap ErrNotFound when an
// event is missing.
func (r *Resolver) AuthChain(ctx context.Context, ids ...id.EventID) ([]id.EventID, error) {
	return r.authChains().AuthChain(ctx, ids)
}

// AuthDifference returns the auth difference of states (rooms/v2.md "Auth
// difference"), in no particular order. Errors wrap ErrNotFound when an
// event is missing.
func (r *Resolver) AuthDifference(ctx context.Context, states []StateMap) ([]id.EventID, error) {
	if len(states) < 2 {
		return nil, nil
	}
	s := splitStates(states, true)
	return r.authChains().AuthDifference(ctx, s.unconflictedIDs(), s.perState)
}

// trace is what the steps of a resolution found, for tests.
type trace struct {
	Unconflicted   StateMap
	Conflicted     []id.EventID // the conflicted state set
	AuthDifference []id.EventID
	Subgraph       []id.EventID // v2.1: the conflicted state subgraph
	FullConflicted []id.EventID
	PowerOrder     []id.EventID // step 1: X in reverse topological power order
	Partial        StateMap     // step 2: the partially resolved state
	MainlineOrder  []id.EventID // step 3: the other events in mainline order
	Mainline       []id.EventID // step 3: the mainline, P0 first
}

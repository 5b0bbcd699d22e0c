package e2ee

// What /sync may skip. Every incremental /sync asks for the device's
// to-device messages and its one-time key counts; almost always nothing
// changed. When this process is the database's only writer
// (Config.SoleWriter), it sees every write of those tables and keeps in
// memory enough to answer without a read:
//
//   - to-device: per user, the stream position of the newest message
//     stored for it; per device, the position up to which a read found
//     nothing left to deliver (clean). A device is clean as long as no
//     message was stored for its user since: ToDevice then returns nothing
//     without a statement. Deliveries are acknowledged (deleted) by the
//     read after the one that returned them, since the device is not clean
//     until a read returns nothing.
//   - key counts: the counts read per device, valid while the user's
//     generation is unchanged; every write of one-time or fallback keys
//     (upload, claim, device deletion) bumps it after it committed.
//
// Nothing is skipped that this process has not read itself: after a
// restart the maps are empty, and every device reads once. Several
// processes sharing one PostgreSQL do not see each other's writes, so
// SoleWriter is false there and every read happens as before.

import (
	gosync "sync"

	"maunium.net/go/mautrix/id"
)

// positionsMax bounds each map; when one is full it starts over (which
// costs a read per device, nothing else).
const positionsMax = 100000

type deviceRef struct {
	user   id.UserID
	device id.DeviceID
}

// positions is what the service knows of its own writes (see above). The
// zero value knows nothing.
type positions struct {
	mu gosync.Mutex
	// inflight counts to-device writes between their start and the
	// recording of their position: no device is clean meanwhile.
	inflight int
	toDevice map[id.UserID]int64 // newest message stored per user
	clean    map[deviceRef]int64 // device: nothing to deliver up to this position
	// keyGen is set to a new generation (gen, never reused) after each
	// key write of a user; a user not in it is at base, the generation at
	// which the map last started over.
	gen, base uint64
	keyGen    map[id.UserID]uint64
	counts    map[deviceRef]keyCounts // counts read, with the generation then
}

type keyCounts struct {
	gen      uint64
	counts   map[string]int
	fallback []string
}

// toDeviceStart is called before a to-device write; done after it, with
// the position and users it committed (none when it failed).
func (p *positions) toDeviceStart() (done func(pos int64, users []string)) {
	p.mu.Lock()
	p.inflight++
	p.mu.Unlock()
	return func(pos int64, users []string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.inflight--
		if pos == 0 {
			return
		}
		if p.toDevice == nil || len(p.toDevice) >= positionsMax {
			// Forgetting a user's newest message would let its devices
			// look clean: forget the devices too.
			p.toDevice, p.clean = map[id.UserID]int64{}, map[deviceRef]int64{}
		}
		for _, u := range users {
			p.toDevice[id.UserID(u)] = max(p.toDevice[id.UserID(u)], pos)
		}
	}
}

// toDeviceClean reports whether the device has nothing to be delivered:
// a read up to a position found nothing, and no message was stored for
// its user after that.
func (p *positions) toDeviceClean(user id.UserID, device id.DeviceID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.clean[deviceRef{user, device}]
	return ok && p.inflight == 0 && p.toDevice[user] <= at
}

// setToDeviceClean records what a read up to position to found: nothing
// (the device is clean up to to) or messages (it is not).
func (p *positions) setToDeviceClean(user id.UserID, device id.DeviceID, to int64, empty bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := deviceRef{user, device}
	if !empty {
		delete(p.clean, k)
		return
	}
	if p.clean == nil || len(p.clean) >= positionsMax {
		p.clean = map[deviceRef]int64{}
	}
	p.clean[k] = to
}

// keyGeneration is the user's key generation, to be read before reading
// the counts that keyCountsRead then records.
func (p *positions) keyGeneration(user id.UserID) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.genOf(user)
}

func (p *positions) genOf(user id.UserID) uint64 {
	if g, ok := p.keyGen[user]; ok {
		return g
	}
	return p.base
}

// cachedKeyCounts returns the device's counts if they were read at the
// user's current key generation.
func (p *positions) cachedKeyCounts(user id.UserID, device id.DeviceID) (map[string]int, []string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.counts[deviceRef{user, device}]
	if !ok || c.gen != p.genOf(user) {
		return nil, nil, false
	}
	return c.counts, c.fallback, true
}

// keyCountsRead records counts read at generation gen (dropped if a key
// write came in between).
func (p *positions) keyCountsRead(user id.UserID, device id.DeviceID, gen uint64, counts map[string]int, fallback []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.genOf(user) != gen {
		return
	}
	if p.counts == nil || len(p.counts) >= positionsMax {
		p.counts = map[deviceRef]keyCounts{}
	}
	p.counts[deviceRef{user, device}] = keyCounts{gen: gen, counts: counts, fallback: fallback}
}

// keysChanged is called after a write of users' one-time or fallback keys
// (committed or not).
func (p *positions) keysChanged(users ...id.UserID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	if p.keyGen == nil || len(p.keyGen) >= positionsMax {
		// Everyone not written again is at a new base generation: the
		// counts read before are stale for all.
		p.base = p.gen
		p.gen++
		p.keyGen, p.counts = map[id.UserID]uint64{}, map[deviceRef]keyCounts{}
	}
	for _, u := range users {
		p.keyGen[u] = p.gen
	}
}

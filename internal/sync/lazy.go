package sync

import (
	"cmp"
	"slices"
	gosync "sync"

	"maunium.net/go/mautrix/id"
)

// lazyCache remembers, per device, which member events lazy-loading syncs
// have sent, so that later syncs can leave out "redundant membership
// events" (client-server API, "Lazy-loading room members"). A member event
// counts as known to the client only once the client has shown that it
// received the response that carried it: by syncing from that response's
// next_batch or a later one. A lost response therefore never hides a
// member event. The cache is bounded and per process; a miss only costs a
// redundant event.
type lazyCache struct {
	mu      gosync.Mutex
	devices map[deviceKey]*deviceMembers
	clock   uint64
}

const (
	lazyMaxDevices       = 10000
	lazyMaxPerDevice     = 20000
	lazyEvictDevicesFrac = 10 // evict a tenth of the devices when full
)

type deviceKey struct {
	user   id.UserID
	device id.DeviceID
}

type roomUser struct {
	room id.RoomID
	user id.UserID
}

type sentMember struct {
	event id.EventID
	at    int64 // the next_batch stream position of the response that sent it
}

type deviceMembers struct {
	sent map[roomUser]sentMember
	used uint64
}

func newLazyCache() *lazyCache {
	return &lazyCache{devices: map[deviceKey]*deviceMembers{}}
}

// known reports whether the device has member event eid of u in r, sent
// in a response whose next_batch is at or before since.
func (c *lazyCache) known(k deviceKey, r id.RoomID, u id.UserID, eid id.EventID, since int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.devices[k]
	if d == nil {
		return false
	}
	s, ok := d.sent[roomUser{r, u}]
	return ok && s.event == eid && s.at <= since
}

// record notes member events sent in a response with next_batch at.
func (c *lazyCache) record(k deviceKey, at int64, sent map[roomUser]id.EventID) {
	if len(sent) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clock++
	d := c.devices[k]
	if d == nil {
		if len(c.devices) >= lazyMaxDevices {
			c.evictLocked()
		}
		d = &deviceMembers{sent: map[roomUser]sentMember{}}
		c.devices[k] = d
	}
	d.used = c.clock
	if len(d.sent)+len(sent) > lazyMaxPerDevice {
		d.sent = map[roomUser]sentMember{}
	}
	for ru, eid := range sent {
		if old, ok := d.sent[ru]; ok && old.event == eid && old.at <= at {
			continue // known earlier already
		}
		d.sent[ru] = sentMember{event: eid, at: at}
	}
}

// evictLocked drops the least recently used tenth of the devices.
func (c *lazyCache) evictLocked() {
	type entry struct {
		k    deviceKey
		used uint64
	}
	all := make([]entry, 0, len(c.devices))
	for k, d := range c.devices {
		all = append(all, entry{k, d.used})
	}
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(a.used, b.used) })
	for _, e := range all[:max(1, len(all)/lazyEvictDevicesFrac)] {
		delete(c.devices, e.k)
	}
}

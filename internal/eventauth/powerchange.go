package eventauth

import (
	"encoding/json/jsontext"
	"slices"

	"maunium.net/go/mautrix/id"
)

// checkPowerLevels applies the m.room.power_levels rule (10 in v1–5 and v12,
// 9 in v6–11) to c.ev, after the rules before it allowed it.
func (c *checker) checkPowerLevels() error {
	n := c.n
	nc := decode[powerLevelsContent](c.ev.Content())

	// Validation. v10 added 9.1 and 9.2 (MSC3667); in v1–9 only users is
	// validated, and a top-level, events or notifications value that is not
	// a level is ignored (the spec does not say what it means; ignoring it
	// applies the default, as when reading levels).
	var next levels
	for i, raw := range nc.top() {
		if !present(raw) {
			continue
		}
		v, ok, outOfRange := parseLevel(n, raw)
		switch {
		case ok:
			next.top[i] = optLevel{v, true}
		case n >= 10:
			return c.reject(RulePowerTopNotInteger, "%s is %s", topNames[i], raw)
		case outOfRange:
			return c.reject(RulePowerFloatRange, "%s is %s", topNames[i], raw)
		}
	}
	var err error
	if next.events, err = c.levelMap("events", nc.Events); err != nil {
		return err
	}
	if next.notifications, err = c.levelMap("notifications", nc.Notifications); err != nil {
		return err
	}
	if present(nc.Users) {
		m, ok := object(nc.Users)
		if !ok {
			return c.reject(RulePowerUsers, "users is %s", nc.Users)
		}
		next.users = make(map[string]int64, len(m))
		for k, raw := range m {
			if !validUserID(k) {
				return c.reject(RulePowerUsers, "%q is not a user ID", k)
			}
			v, ok, _ := parseLevel(n, raw)
			if !ok {
				return c.reject(RulePowerUsers, "level of %s is %s", k, raw)
			}
			next.users[k] = v
		}
	}
	if n >= 12 {
		// MSC4289: creators cannot be given a level.
		for _, u := range c.creators {
			if _, ok := next.users[string(u)]; ok {
				return c.reject(RulePowerCreatorInUsers, "%s is a creator", u)
			}
		}
	}

	prevEv := c.auth(typePowerLevels, "")
	if prevEv == nil {
		return nil
	}
	prev := parseLevels(n, prevEv.Content())
	sl := c.powerLevels().UserLevel(c.sender)

	// Top-level properties, in the order of the rule: added, changed or
	// removed.
	for i := range topCount {
		old, new := prev.top[i], next.top[i]
		if old == new {
			continue
		}
		if old.ok && old.v > sl {
			return c.reject(RulePowerTopCurrent, "%s: current %d > sender %d", topNames[i], old.v, sl)
		}
		if new.ok && new.v > sl {
			return c.reject(RulePowerTopNew, "%s: new %d > sender %d", topNames[i], new.v, sl)
		}
	}

	// events, and from v6 notifications (MSC2209): first every entry
	// changed or removed (current value), then every entry added or
	// changed (new value).
	maps := [][2]map[string]int64{{prev.events, next.events}}
	names := []string{"events"}
	if n >= 6 {
		maps = append(maps, [2]map[string]int64{prev.notifications, next.notifications})
		names = append(names, "notifications")
	}
	for i, m := range maps {
		for _, k := range sortedKeys(m[0]) {
			old := m[0][k]
			if new, ok := m[1][k]; (!ok || new != old) && old > sl {
				return c.reject(RulePowerEventsCurrent, "%s[%q]: current %d > sender %d", names[i], k, old, sl)
			}
		}
	}
	for i, m := range maps {
		for _, k := range sortedKeys(m[1]) {
			new := m[1][k]
			if old, ok := m[0][k]; (!ok || new != old) && new > sl {
				return c.reject(RulePowerEventsNew, "%s[%q]: new %d > sender %d", names[i], k, new, sl)
			}
		}
	}

	// users: changed or removed entries other than the sender's own, then
	// added or changed entries.
	for _, k := range sortedKeys(prev.users) {
		old := prev.users[k]
		if id.UserID(k) == c.sender {
			continue
		}
		if new, ok := next.users[k]; (!ok || new != old) && old >= sl {
			return c.reject(RulePowerUsersCurrent, "users[%q]: current %d >= sender %d", k, old, sl)
		}
	}
	for _, k := range sortedKeys(next.users) {
		new := next.users[k]
		if old, ok := prev.users[k]; (!ok || new != old) && new > sl {
			return c.reject(RulePowerUsersNew, "users[%q]: new %d > sender %d", k, new, sl)
		}
	}
	return nil
}

// levelMap reads events or notifications of a new power levels event.
func (c *checker) levelMap(name string, raw jsontext.Value) (map[string]int64, error) {
	if !present(raw) {
		return nil, nil
	}
	m, ok := object(raw)
	if !ok {
		if c.n >= 10 {
			return nil, c.reject(RulePowerMapNotInteger, "%s is %s", name, raw)
		}
		return nil, nil
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		l, ok, outOfRange := parseLevel(c.n, v)
		switch {
		case ok:
			out[k] = l
		case c.n >= 10:
			return nil, c.reject(RulePowerMapNotInteger, "%s[%q] is %s", name, k, v)
		case outOfRange:
			return nil, c.reject(RulePowerFloatRange, "%s[%q] is %s", name, k, v)
		}
	}
	return out, nil
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

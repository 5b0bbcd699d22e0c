package e2ee

// Send-to-device messaging (client-server API, "Send-to-Device
// messaging"; server-server API, "Send-to-device messaging"). Storage is
// store/todevice.go; migration 0013_to_device.sql.
//
// Sending (PUT /sendToDevice, SendToDevice): messages for local users are
// stored one row per recipient device, all at one new stream position, and
// wake the recipients' /sync. Unknown local users and devices are skipped
// without an error, as Synapse does. Messages for users of other servers
// go to each server in m.direct_to_device EDUs through the durable
// federation queue, split so that one EDU stays under toDeviceMaxEDU
// bytes (Synapse splits at 64 KiB as well); without federation they are
// dropped (Synapse, with federation sending off, stores them and never
// sends them: the client sees the same 200 either way).
//
// Idempotency: a request is done once per (user, device, txnId). The
// remote EDUs are queued before the local rows and the transaction ID are
// committed, and their message_id is a hash of the request (sender,
// device, txnId, destination and the EDU's messages): a request retried
// after a crash between the two queues the same EDUs again, which the
// remote drops by message_id.
//
// Limits (Synapse has none but the body size; these keep one request and
// one /sync response bounded): at most toDeviceMaxMessages (user, device)
// entries per request ("*" counts once), 413 M_TOO_LARGE beyond; one
// message's content at most toDeviceMaxContent bytes (413 M_TOO_LARGE),
// so that any message fits in an EDU; a user ID that is not one, an event
// type or a device ID that is empty in the wrong place, too long or holds
// NUL is 400 M_INVALID_PARAM; a content that is not a JSON object is 400
// M_BAD_JSON.
//
// Delivery (/sync, ToDevice): a device's messages at or below the
// response's stream position, oldest first, at most toDeviceSyncLimit
// (the spec's recommended 100, as Synapse). They are deleted only when
// the client acknowledges the response: a later sync whose since is at or
// after that response's next_batch (the spec: "the server should infer
// that any send-to-device messages in that response have been delivered
// successfully, and delete them"). A sync retried from an older since
// gets them again. When more than the limit wait, the server takes a new
// stream position and wakes the user, so that the next long-poll from
// next_batch returns the rest at once instead of waiting for news.
//
// Receiving (m.direct_to_device EDUs, ReceiveToDevice): the sender must
// be a user of the origin, recipients users of this server; each EDU is
// delivered once per (origin, message_id) for a day. A database failure
// is returned, so that the transaction fails and the origin sends it
// again.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/store"
)

const (
	// toDeviceSyncLimit is the most messages one /sync returns.
	toDeviceSyncLimit = 100
	// toDeviceMaxMessages is the most (user, device) entries of one
	// request.
	toDeviceMaxMessages = 10000
	// toDeviceMaxContent is the largest content of one message, in bytes
	// of JSON.
	toDeviceMaxContent = 56 << 10
	// toDeviceMaxEDU bounds an outbound m.direct_to_device EDU as JSON
	// ({"edu_type":…,"content":…}); a transaction of 100 of them stays
	// under 6 MiB. A message of toDeviceMaxContent with IDs of 255 bytes
	// fits.
	toDeviceMaxEDU = 60 << 10
	// toDeviceMaxID is the longest user ID, device ID, event type or
	// message ID accepted.
	toDeviceMaxID = 255
)

// SendToDevice sends messages of type typ from a device of a local user
// (PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}): per user and
// device ("*": each of the user's devices) a content. A txnID already
// used by the device does nothing. Errors: M_INVALID_PARAM, M_BAD_JSON,
// M_TOO_LARGE (see the limits above).
func (s *Service) SendToDevice(ctx context.Context, sender id.UserID, device id.DeviceID, txnID, typ string,
	messages map[id.UserID]map[id.DeviceID]json.RawMessage) error {
	if !toDeviceValidID(txnID) {
		return mxerr.InvalidParam("Invalid transaction ID")
	}
	if !toDeviceValidID(typ) {
		return mxerr.InvalidParam("Invalid event type")
	}
	n := 0
	for user, devs := range messages {
		if _, ok := toDeviceUserServer(user); !ok {
			return mxerr.InvalidParam("Invalid user ID %q", user)
		}
		for dev, content := range devs {
			if n++; n > toDeviceMaxMessages {
				return mxerr.TooLarge("At most %d messages may be sent in one request", toDeviceMaxMessages)
			}
			if !toDeviceValidID(string(dev)) {
				return mxerr.InvalidParam("Invalid device ID %q of %s", dev, user)
			}
			if !isObject(content) {
				return mxerr.BadJSON("The message for %s %s is not a JSON object", user, dev)
			}
			if len(content) > toDeviceMaxContent {
				return mxerr.TooLarge("The message for %s %s is larger than %d bytes", user, dev, toDeviceMaxContent)
			}
		}
	}

	if seen, err := s.db.ToDeviceTxnSeen(ctx, string(sender), string(device), txnID); err != nil || seen {
		return err
	}
	// Once the request is accepted, the client going away does not stop
	// it half way.
	ctx = context.WithoutCancel(ctx)

	var local []store.ToDeviceRecipient
	remote := map[string]map[id.UserID]map[id.DeviceID]json.RawMessage{}
	for user, devs := range messages {
		if len(devs) == 0 {
			continue
		}
		server, _ := toDeviceUserServer(user)
		if server == s.cfg.ServerName {
			local = append(local, toDeviceRecipient(user, devs))
			continue
		}
		if s.cfg.Queue == nil {
			continue // federation is off: dropped (see above)
		}
		if remote[server] == nil {
			remote[server] = map[id.UserID]map[id.DeviceID]json.RawMessage{}
		}
		remote[server][user] = devs
	}

	// Every EDU is built before any is queued: one too large fails the
	// request before anything is sent.
	type queued struct {
		server string
		edu    federation.EDU
	}
	var out []queued
	key := string(sender) + "\x00" + string(device) + "\x00" + txnID
	for _, server := range slices.Sorted(maps.Keys(remote)) {
		edus, err := toDeviceEDUs(sender, typ, key+"\x00"+server, remote[server])
		if err != nil {
			return err
		}
		for _, e := range edus {
			out = append(out, queued{server, e})
		}
	}
	for _, q := range out {
		if err := s.cfg.Queue.SendEDU(ctx, []string{q.server}, q.edu, ""); err != nil {
			return err
		}
	}

	slices.SortFunc(local, func(a, b store.ToDeviceRecipient) int { return strings.Compare(a.UserID, b.UserID) })
	done := s.pos.toDeviceStart()
	pos, users, err := s.db.PutToDevice(ctx, store.ToDeviceBatch{
		Sender: string(sender), Type: typ,
		TxnUser: string(sender), TxnDevice: string(device), TxnID: txnID,
		Recipients: local,
	})
	done(pos, users)
	if errors.Is(err, store.ErrConflict) {
		return nil // a concurrent retry of the same request stored it
	}
	if err != nil {
		return err
	}
	s.wakeToDevice(pos, users)
	s.log.Debug("sent to-device messages", "user_id", sender, "device_id", device, "txn_id", txnID,
		"type", typ, "local_users", len(users), "edus", len(out))
	return nil
}

// ToDevice returns the messages for the device at or below stream
// position to, oldest first, at most toDeviceSyncLimit, as /sync's
// to_device events ({"sender","type","content"}). since is the stream
// position of the client's since token (0 for none): the messages that
// the responses up to it carried are deleted first (sync.ToDevice).
func (s *Service) ToDevice(ctx context.Context, user id.UserID, device id.DeviceID, since, to int64) ([]json.RawMessage, error) {
	if device == "" {
		return nil, nil
	}
	if s.cfg.SoleWriter && s.pos.toDeviceClean(user, device) {
		return nil, nil
	}
	ms, bumped, err := s.db.ToDeviceSync(ctx, string(user), string(device), since, to, toDeviceSyncLimit)
	if err != nil {
		return nil, err
	}
	s.pos.setToDeviceClean(user, device, to, len(ms) == 0)
	if len(ms) == 0 {
		return nil, nil
	}
	if bumped > 0 {
		// More wait: the client's next sync, from to, sees the notifier
		// past its since and reads them without waiting.
		s.n.Wake(bumped, notify.Change{Users: []id.UserID{user}})
	}
	out := make([]json.RawMessage, len(ms))
	for i, m := range ms {
		b, err := json.Marshal(struct {
			Sender  string          `json:"sender"`
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
		}{m.Sender, m.Type, m.Content})
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// ReceiveToDevice delivers an m.direct_to_device EDU from origin to local
// users. An EDU whose sender is not a user of origin, or with a malformed
// type or message ID, is ignored, as are recipients of other servers and
// messages that are not JSON objects. An EDU seen before (same origin and
// message_id, within a day) is not delivered again. Errors: the
// database's (the transaction should fail, for the origin to retry).
func (s *Service) ReceiveToDevice(ctx context.Context, origin string, m federation.DirectToDevice) error {
	log := s.log.With("origin", origin, "message_id", m.MessageID)
	if server, ok := toDeviceUserServer(m.Sender); !ok || server != origin {
		log.Debug("ignored a to-device EDU: sender not of origin", "sender", m.Sender)
		return nil
	}
	if !toDeviceValidID(m.Type) || len(m.MessageID) > toDeviceMaxID || strings.IndexByte(m.MessageID, 0) >= 0 {
		log.Debug("ignored a malformed to-device EDU")
		return nil
	}
	var local []store.ToDeviceRecipient
	for user, devs := range m.Messages {
		if server, ok := toDeviceUserServer(user); !ok || server != s.cfg.ServerName {
			log.Debug("ignored to-device messages for a user not of this server", "user_id", user)
			continue
		}
		ok := make(map[id.DeviceID]json.RawMessage, len(devs))
		for dev, content := range devs {
			if isObject(content) && toDeviceValidID(string(dev)) {
				ok[dev] = content
			}
		}
		if len(ok) > 0 {
			local = append(local, toDeviceRecipient(user, ok))
		}
	}
	slices.SortFunc(local, func(a, b store.ToDeviceRecipient) int { return strings.Compare(a.UserID, b.UserID) })
	done := s.pos.toDeviceStart()
	pos, users, err := s.db.PutToDevice(ctx, store.ToDeviceBatch{
		Sender: string(m.Sender), Type: m.Type,
		Origin: origin, MessageID: m.MessageID,
		Recipients: local,
	})
	done(pos, users)
	if errors.Is(err, store.ErrConflict) {
		log.Debug("ignored a to-device EDU received before")
		return nil
	}
	if err != nil {
		return err
	}
	s.wakeToDevice(pos, users)
	return nil
}

// toDeviceDevicesDeleted deletes the messages waiting for deleted devices
// of a local user (nil: every device it no longer has), what was
// delivered to them and their transaction IDs.
func (s *Service) toDeviceDevicesDeleted(ctx context.Context, user id.UserID, devices []id.DeviceID) error {
	if !s.isLocal(user) {
		return nil
	}
	var devs []string
	if devices != nil {
		devs = make([]string, len(devices))
		for i, d := range devices {
			devs[i] = string(d)
		}
	}
	return s.db.DeleteToDeviceOfGoneDevices(ctx, string(user), user.Localpart(), devs)
}

// wakeToDevice wakes the /sync of users who got messages at pos.
func (s *Service) wakeToDevice(pos int64, users []string) {
	if pos == 0 || len(users) == 0 {
		return
	}
	ids := make([]id.UserID, len(users))
	for i, u := range users {
		ids[i] = id.UserID(u)
	}
	s.n.Wake(pos, notify.Change{Users: ids})
}

// toDeviceRecipient is a local user's messages for the store: "*" is the
// content of each device without its own.
func toDeviceRecipient(user id.UserID, devs map[id.DeviceID]json.RawMessage) store.ToDeviceRecipient {
	r := store.ToDeviceRecipient{UserID: string(user), Localpart: user.Localpart(), Devices: make(map[string]json.RawMessage, len(devs))}
	for dev, content := range devs {
		if dev == "*" {
			r.All = content
			continue
		}
		r.Devices[string(dev)] = content
	}
	return r
}

// toDeviceEDUs splits one destination's messages into m.direct_to_device
// EDUs of at most toDeviceMaxEDU bytes each, in (user, device) order. A
// user's devices may be spread over several EDUs. Each EDU's message_id
// is a hash of key and its messages. Errors: M_TOO_LARGE if one message
// cannot fit: a content under toDeviceMaxContent may still grow too much
// on the wire, where json.Marshal writes <, > and & as \u003c and so on.
func toDeviceEDUs(sender id.UserID, typ, key string, msgs map[id.UserID]map[id.DeviceID]json.RawMessage) ([]federation.EDU, error) {
	// The size of an EDU without messages, with a message ID of the
	// length toDeviceMessageID gives.
	emptyContent, err := json.Marshal(federation.DirectToDevice{
		Sender: sender, Type: typ, MessageID: strings.Repeat("x", 22), Messages: map[id.UserID]map[id.DeviceID]json.RawMessage{},
	})
	if err != nil {
		return nil, err
	}
	empty, err := json.Marshal(federation.EDU{Type: federation.EDUDirectToDevice, Content: emptyContent})
	if err != nil {
		return nil, err
	}
	var out []federation.EDU
	cur := map[id.UserID]map[id.DeviceID]json.RawMessage{}
	size := len(empty)
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		c := federation.DirectToDevice{Sender: sender, Type: typ, Messages: cur}
		b, err := json.Marshal(c.Messages)
		if err != nil {
			return err
		}
		c.MessageID = toDeviceMessageID(key, b)
		content, err := json.Marshal(c)
		if err != nil {
			return err
		}
		out = append(out, federation.EDU{Type: federation.EDUDirectToDevice, Content: content})
		cur, size = map[id.UserID]map[id.DeviceID]json.RawMessage{}, len(empty)
		return nil
	}
	for _, user := range slices.Sorted(maps.Keys(msgs)) {
		devs := msgs[user]
		u, err := json.Marshal(user)
		if err != nil {
			return nil, err
		}
		userSize := len(u) + 4 // "user":{} and a comma
		for _, dev := range slices.Sorted(maps.Keys(devs)) {
			// "device":content and a comma, as json.Marshal writes them
			// (compacted, HTML characters escaped).
			c, err := json.Marshal(devs[dev])
			if err != nil {
				return nil, err
			}
			d, err := json.Marshal(dev)
			if err != nil {
				return nil, err
			}
			n := len(d) + 2 + len(c)
			need := n
			if cur[user] == nil {
				need += userSize
			}
			if size+need > toDeviceMaxEDU && len(cur) > 0 {
				if err := flush(); err != nil {
					return nil, err
				}
				need = n + userSize
			}
			if size+need > toDeviceMaxEDU {
				return nil, mxerr.TooLarge("The message for %s %s does not fit in a federation EDU", user, dev)
			}
			if cur[user] == nil {
				cur[user] = map[id.DeviceID]json.RawMessage{}
			}
			cur[user][dev] = c
			size += need
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// toDeviceMessageID is the message_id of an EDU: 22 characters of a hash
// of the request's key and the EDU's messages.
func toDeviceMessageID(key string, messages []byte) string {
	h := sha256.New()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write(messages)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

// toDeviceUserServer returns the server name of a user ID, and false if
// it is not a user ID this code accepts.
func toDeviceUserServer(user id.UserID) (string, bool) {
	if len(user) > toDeviceMaxID || strings.IndexByte(string(user), 0) >= 0 {
		return "", false
	}
	local, server, err := user.Parse()
	if err != nil || local == "" || server == "" {
		return "", false
	}
	return server, true
}

// toDeviceValidID reports whether s is a non-empty ID of at most
// toDeviceMaxID bytes without NUL (which PostgreSQL's text refuses).
func toDeviceValidID(s string) bool {
	return s != "" && len(s) <= toDeviceMaxID && strings.IndexByte(s, 0) < 0
}

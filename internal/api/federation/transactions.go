package federation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/presence"
	"polder.dev/polder/internal/store"
)

// TxnStore keeps the answers to inbound transactions (*store.DB).
type TxnStore interface {
	// InboundTxn returns a stored answer or store.ErrNotFound.
	InboundTxn(ctx context.Context, origin, txnID string) ([]byte, error)
	PutInboundTxn(ctx context.Context, origin, txnID string, response []byte) error
	PruneInboundTxns(ctx context.Context, before time.Time) (int64, error)
}

var _ TxnStore = (*store.DB)(nil)

// txnRetention is how long the answer to a transaction is kept for a
// retry. A sender retries until it gets an answer, with backoff, but not
// for days.
const txnRetention = 24 * time.Hour

// inflight is the transactions being processed, so that a retry arriving
// meanwhile (the sender timed out) waits for the first to finish instead
// of processing the transaction a second time. It is per process: several
// processes behind one name would each process a retry that arrives while
// another is still busy (harmless, PDUs are deduplicated; only the EDUs
// would be applied twice).
type inflight struct {
	mu sync.Mutex
	m  map[txnKey]chan struct{}
}

type txnKey struct{ origin, txnID string }

// PUT /_matrix/federation/v1/send/{txnId}
//
// The transaction's PDUs go to the room service, then its EDUs are
// applied. The answer is the result of each PDU; a retried txnId gets the
// first answer again without processing anything (server-server API,
// "Transactions"). At most 50 PDUs and 100 EDUs: more is M_BAD_JSON. The
// body's origin must be the request's signer.
func (a *API) send(w http.ResponseWriter, r *http.Request) error {
	origin, txnID := Origin(r.Context()), r.PathValue("txnId")
	var txn federation.Transaction
	if err := api.DecodeJSON(r, &txn); err != nil {
		return err
	}
	if txn.Origin != origin {
		return mxerr.Forbidden("The transaction's origin %q is not the server that signed the request (%s)", txn.Origin, origin)
	}
	if len(txn.PDUs) > federation.MaxPDUsPerTxn {
		return mxerr.BadJSON("A transaction may hold at most %d PDUs, this one has %d", federation.MaxPDUsPerTxn, len(txn.PDUs))
	}
	if len(txn.EDUs) > federation.MaxEDUsPerTxn {
		return mxerr.BadJSON("A transaction may hold at most %d EDUs, this one has %d", federation.MaxEDUsPerTxn, len(txn.EDUs))
	}
	resp, err := a.once(r.Context(), origin, txnID, func(ctx context.Context) ([]byte, error) {
		return a.process(ctx, origin, txnID, &txn)
	})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(resp)
	return err
}

// once runs process for the transaction unless it was answered before, and
// returns its answer. A concurrent duplicate waits for the first. process
// runs on a context that the sender going away does not cancel: the work
// is done once, and a retry is answered from the store.
func (a *API) once(ctx context.Context, origin, txnID string, process func(context.Context) ([]byte, error)) ([]byte, error) {
	key := txnKey{origin, txnID}
	var done chan struct{}
	for {
		a.txns.mu.Lock()
		wait, busy := a.txns.m[key]
		if !busy {
			if a.txns.m == nil {
				a.txns.m = map[txnKey]chan struct{}{}
			}
			done = make(chan struct{})
			a.txns.m[key] = done
		}
		a.txns.mu.Unlock()
		if !busy {
			break
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	defer func() {
		a.txns.mu.Lock()
		delete(a.txns.m, key)
		a.txns.mu.Unlock()
		close(done)
	}()

	if a.svc.Txns != nil {
		resp, err := a.svc.Txns.InboundTxn(ctx, origin, txnID)
		if err == nil {
			return resp, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	pctx := context.WithoutCancel(ctx)
	resp, err := process(pctx)
	if err != nil {
		return nil, err
	}
	if a.svc.Txns != nil {
		if err := a.svc.Txns.PutInboundTxn(pctx, origin, txnID, resp); err != nil {
			// The transaction was processed; a retry would process it again,
			// which PDU deduplication makes harmless.
			a.log.Warn("store the answer to a transaction", "origin", origin, "txn_id", txnID, "err", err)
		}
	}
	return resp, nil
}

// process handles the PDUs and EDUs of a transaction and returns the
// answer's body.
func (a *API) process(ctx context.Context, origin, txnID string, txn *federation.Transaction) ([]byte, error) {
	rooms := roomChecks{a: a, origin: origin, acl: map[id.RoomID]bool{}, in: map[id.RoomID]bool{}}
	results := make(map[id.EventID]federation.PDUResult, len(txn.PDUs))
	var allowed []json.RawMessage
	for _, raw := range txn.PDUs {
		var pdu struct {
			RoomID id.RoomID `json:"room_id"`
		}
		if json.Unmarshal(raw, &pdu) != nil || pdu.RoomID == "" {
			allowed = append(allowed, raw) // the room service drops what it cannot parse
			continue
		}
		ok, err := rooms.allowed(ctx, pdu.RoomID)
		if err != nil {
			return nil, err
		}
		if ok {
			allowed = append(allowed, raw)
			continue
		}
		// Server ACLs apply per PDU (server-server API, "Server Access
		// Control Lists"): the PDU is dropped with an error result.
		if eventID, ok := a.eventID(ctx, pdu.RoomID, raw); ok {
			results[eventID] = federation.PDUResult{Error: "Server " + origin + " is banned from room " + string(pdu.RoomID) + " by its server ACL"}
		}
	}
	if len(allowed) > 0 {
		for eventID, err := range a.svc.Rooms.ReceivePDUs(ctx, origin, allowed) {
			var res federation.PDUResult
			if err != nil {
				res.Error = err.Error()
				if mx, ok := mxerr.As(err); ok {
					res.Error = mx.Msg
				}
			}
			results[eventID] = res
		}
	}
	for _, edu := range txn.EDUs {
		if edu.Type == federation.EDUDirectToDevice {
			// Unlike other EDUs, a failure to store to-device messages
			// fails the transaction (500): the origin sends it again, and
			// the messages, deduplicated by message_id, are not lost.
			if err := a.receiveToDevice(ctx, origin, edu); err != nil {
				return nil, err
			}
			continue
		}
		a.applyEDU(ctx, &rooms, origin, edu)
	}
	a.log.Debug("received a transaction", "origin", origin, "txn_id", txnID, "pdus", len(txn.PDUs), "edus", len(txn.EDUs))
	return json.Marshal(federation.TransactionResponse{PDUs: results})
}

// eventID computes the ID of a PDU of a room this server knows (the
// version says how); false if it cannot.
func (a *API) eventID(ctx context.Context, roomID id.RoomID, raw json.RawMessage) (id.EventID, bool) {
	version, err := a.svc.Rooms.Version(ctx, roomID)
	if err != nil {
		return "", false
	}
	pdu, err := event.Parse(version, raw)
	if err != nil {
		return "", false
	}
	return pdu.EventID(), true
}

// roomChecks remembers, for one transaction, whether the room's ACL
// allows origin and whether origin has joined members in it.
type roomChecks struct {
	a      *API
	origin string
	acl    map[id.RoomID]bool
	in     map[id.RoomID]bool
}

func (c *roomChecks) allowed(ctx context.Context, roomID id.RoomID) (bool, error) {
	if ok, seen := c.acl[roomID]; seen {
		return ok, nil
	}
	ok, err := c.a.svc.Rooms.ServerAllowed(ctx, roomID, c.origin)
	if err != nil {
		return false, err
	}
	c.acl[roomID] = ok
	return ok, nil
}

// edusAllowed reports whether origin's EDUs about the room are to be
// applied: the room's ACL allows origin and origin has a joined member.
func (c *roomChecks) edusAllowed(ctx context.Context, roomID id.RoomID) (bool, error) {
	if ok, err := c.allowed(ctx, roomID); err != nil || !ok {
		return false, err
	}
	if in, seen := c.in[roomID]; seen {
		return in, nil
	}
	in, err := c.a.svc.Rooms.ServerInRoom(ctx, roomID, c.origin)
	if err != nil {
		return false, err
	}
	c.in[roomID] = in
	return in, nil
}

// The contents of the EDUs applied (server-server API, "EDUs").
type (
	typingEDU struct {
		RoomID id.RoomID `json:"room_id"`
		UserID string    `json:"user_id"`
		Typing bool      `json:"typing"`
	}
	// receiptEDU maps room ID → receipt type → user ID → receipt.
	receiptEDU map[id.RoomID]map[string]map[string]struct {
		EventIDs []id.EventID `json:"event_ids"`
		Data     struct {
			TS       int64  `json:"ts"`
			ThreadID string `json:"thread_id"`
		} `json:"data"`
	}
	presenceEDU struct {
		Push []struct {
			UserID          string `json:"user_id"`
			Presence        string `json:"presence"`
			StatusMsg       string `json:"status_msg"`
			LastActiveAgo   int64  `json:"last_active_ago"`
			CurrentlyActive bool   `json:"currently_active"`
		} `json:"push"`
	}
)

// applyEDU applies one EDU. EDUs are best effort: one that is malformed,
// about users of another server or about a room origin may not speak for
// is ignored, and a failure to apply one does not fail the transaction.
func (a *API) applyEDU(ctx context.Context, rooms *roomChecks, origin string, edu federation.EDU) {
	log := a.log.With("origin", origin, "edu_type", edu.Type)
	ignore := func(msg string, args ...any) { log.Debug("ignored an EDU: "+msg, args...) }
	fail := func(err error, args ...any) {
		if _, ok := mxerr.As(err); ok {
			// The service refused it (not joined, unknown event): ignored.
			log.Debug("ignored an EDU", append(args, "err", err)...)
			return
		}
		log.Warn("apply an EDU", append(args, "err", err)...)
	}
	switch edu.Type {
	case federation.EDUTyping:
		if a.svc.Typing == nil {
			return
		}
		var c typingEDU
		if err := json.Unmarshal(edu.Content, &c); err != nil {
			ignore("malformed", "err", err)
			return
		}
		user, server, err := userOf(c.UserID)
		if err != nil || server != origin {
			ignore("user of another server", "user_id", c.UserID)
			return
		}
		if ok, err := rooms.edusAllowed(ctx, c.RoomID); err != nil || !ok {
			if err != nil {
				fail(err, "room_id", c.RoomID)
			} else {
				ignore("origin may not speak for the room", "room_id", c.RoomID)
			}
			return
		}
		if err := a.svc.Typing.SetRemote(ctx, user, c.RoomID, c.Typing); err != nil {
			fail(err, "room_id", c.RoomID, "user_id", user)
		}

	case federation.EDUReceipt:
		if a.svc.Receipts == nil {
			return
		}
		var c receiptEDU
		if err := json.Unmarshal(edu.Content, &c); err != nil {
			ignore("malformed", "err", err)
			return
		}
		for roomID, byType := range c {
			// Spec: all receipts of a room are ignored if its ACL denies origin.
			if ok, err := rooms.edusAllowed(ctx, roomID); err != nil || !ok {
				if err != nil {
					fail(err, "room_id", roomID)
				} else {
					ignore("origin may not speak for the room", "room_id", roomID)
				}
				continue
			}
			for typ, byUser := range byType {
				if typ != "m.read" {
					// Private receipts never leave their server; other types
					// are unknown.
					ignore("receipt type not federated", "room_id", roomID, "receipt_type", typ)
					continue
				}
				for rawUser, rc := range byUser {
					user, server, err := userOf(rawUser)
					if err != nil || server != origin {
						ignore("user of another server", "room_id", roomID, "user_id", rawUser)
						continue
					}
					for _, eventID := range rc.EventIDs {
						if err := a.svc.Receipts.PutRemote(ctx, user, roomID, eventID, rc.Data.ThreadID, rc.Data.TS); err != nil {
							fail(err, "room_id", roomID, "user_id", user, "event_id", eventID)
						}
					}
				}
			}
		}

	case federation.EDUPresence:
		if a.svc.Presence == nil {
			return
		}
		var c presenceEDU
		if err := json.Unmarshal(edu.Content, &c); err != nil {
			ignore("malformed", "err", err)
			return
		}
		for _, p := range c.Push {
			user, server, err := userOf(p.UserID)
			if err != nil || server != origin {
				ignore("user of another server", "user_id", p.UserID)
				continue
			}
			if err := a.svc.Presence.SetRemote(ctx, presence.Remote{
				UserID: user, State: p.Presence, StatusMsg: p.StatusMsg,
				LastActiveAgo: time.Duration(p.LastActiveAgo) * time.Millisecond, CurrentlyActive: p.CurrentlyActive,
			}); err != nil {
				fail(err, "user_id", user)
			}
		}

	case federation.EDUDeviceListUpdate:
		if a.svc.E2EE == nil {
			return
		}
		var c federation.DeviceListUpdate
		if err := json.Unmarshal(edu.Content, &c); err != nil {
			ignore("malformed", "err", err)
			return
		}
		if err := a.svc.E2EE.ReceiveDeviceListUpdate(ctx, origin, c); err != nil {
			fail(err, "user_id", c.UserID, "device_id", c.DeviceID)
		}

	case federation.EDUSigningKeyUpdate:
		if a.svc.E2EE == nil {
			return
		}
		var c federation.SigningKeyUpdate
		if err := json.Unmarshal(edu.Content, &c); err != nil {
			ignore("malformed", "err", err)
			return
		}
		if err := a.svc.E2EE.ReceiveSigningKeyUpdate(ctx, origin, c); err != nil {
			fail(err, "user_id", c.UserID)
		}

	default:
		ignore("unknown EDU type")
	}
}

// receiveToDevice applies an m.direct_to_device EDU. A malformed one, or
// one the service refuses, is ignored; other errors (the database's) are
// returned.
func (a *API) receiveToDevice(ctx context.Context, origin string, edu federation.EDU) error {
	if a.svc.E2EE == nil {
		return nil
	}
	var c federation.DirectToDevice
	if err := json.Unmarshal(edu.Content, &c); err != nil {
		a.log.Debug("ignored an EDU: malformed", "origin", origin, "edu_type", edu.Type, "err", err)
		return nil
	}
	err := a.svc.E2EE.ReceiveToDevice(ctx, origin, c)
	if _, refused := mxerr.As(err); refused {
		a.log.Debug("ignored an EDU", "origin", origin, "edu_type", edu.Type, "sender", c.Sender, "message_id", c.MessageID, "err", err)
		return nil
	}
	return err
}

// Run prunes the answers to old transactions every hour until ctx ends.
func (a *API) Run(ctx context.Context) error {
	if a.svc.Txns == nil {
		return nil
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := a.svc.Txns.PruneInboundTxns(ctx, time.Now().Add(-txnRetention)); err != nil && ctx.Err() == nil {
			a.log.Warn("prune answered transactions", "err", err)
		} else if n > 0 {
			a.log.Debug("pruned answered transactions", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
)

// The outbound queue (docs/federation.md "Outbound queue"; server-server
// API "Transactions"). Everything sent to other servers in transactions
// goes through a Queue:
//
//   - PDUs are persisted before SendPDU returns: stored once, with a row per
//     destination that still waits for them (store/fedqueue.go). A row
//     leaves when its destination acknowledged the transaction that
//     carried it (any 200 answer: per-PDU errors in it are the remote's
//     verdict on the event, not a reason to send it again).
//   - EDUs that must not be lost (receipts, to-device messages, device
//     list updates: every type but m.typing and m.presence) are persisted
//     too, per destination, in order, or coalesced by a key. m.typing and
//     m.presence are held in memory only, coalesced by key: only the
//     latest matters, and after a restart they are stale anyway.
//   - Each destination with work has one worker goroutine, started when
//     work arrives and ending when none is left, so at most one
//     transaction is in flight per destination (the spec: wait for a 200
//     before sending a transaction with another ID). A transaction carries
//     up to 50 PDUs and 100 EDUs, oldest first.
//   - A transaction that failed is sent again as it was, under the same ID,
//     so that a remote that did receive it answers from its cache. Its ID
//     and content are in the database, so this holds across a restart.
//   - Failures back a destination off exponentially (MinBackoff doubling
//     to MaxBackoff, plus up to 25% jitter), persisted so a restart keeps
//     backing off; a success or Wake (the destination contacted us)
//     resets it. No goroutine waits out a backoff: a timer starts the
//     worker again.
//   - Catch-up: when a destination failing for longer than CatchUpAfter is
//     tried again, only the newest CatchUpPerRoom PDUs of each room are
//     kept for it; it fetches the gap before them with
//     get_missing_events when it receives them (as Synapse's catch-up).

// Transport sends a transaction to a destination. *Client implements it;
// tests use a fake.
type Transport interface {
	SendTransaction(ctx context.Context, dest, txnID string, txn Transaction) (*TransactionResponse, error)
}

var _ Transport = (*Client)(nil)

// Defaults of QueueConfig.
const (
	DefaultMinBackoff     = 2 * time.Second
	DefaultMaxBackoff     = time.Hour
	DefaultSendTimeout    = 2 * time.Minute
	DefaultCatchUpAfter   = 10 * time.Minute
	DefaultCatchUpPerRoom = 50
)

const (
	// typingTTL: a typing EDU not sent within this long is dropped (a
	// remote times typing out after a minute anyway).
	typingTTL = time.Minute
	// maxMemoryEDUs bounds the in-memory EDUs of one destination; the
	// oldest go first.
	maxMemoryEDUs = 10000
)

// QueueConfig configures a Queue. Zero fields take the defaults.
type QueueConfig struct {
	// ServerName is this server: the origin of transactions, and never a
	// destination.
	ServerName string
	// MinBackoff is the backoff after a first failure; it doubles with
	// each further failure up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// SendTimeout bounds one attempt to send a transaction.
	SendTimeout time.Duration
	// CatchUpAfter and CatchUpPerRoom: see "Catch-up" above.
	CatchUpAfter   time.Duration
	CatchUpPerRoom int
	// RoomServers returns the servers with joined members in a room
	// ((*room.Service).JoinedServers). The event and EDU fan-out
	// (RoomEvent, Typing, Receipt, Presence) needs it; SendPDU and SendEDU
	// do not.
	RoomServers func(ctx context.Context, roomID id.RoomID) ([]string, error)
	// RoomServersJoined, if set, is what the event fan-out uses instead
	// of RoomServers: each joined server and the stream position from
	// which it has been in the room ((*room.Service).ServersJoined). An
	// event goes to the servers that were in the room at its position,
	// not to one that joined between the send and the fan-out.
	RoomServersJoined func(ctx context.Context, roomID id.RoomID) (map[string]int64, error)
}

// Queue is the durable per-destination outbound queue. Its methods are
// safe for concurrent use. Work queued before Run starts is sent once it
// runs.
type Queue struct {
	cfg       QueueConfig
	db        *store.DB
	transport Transport
	log       *slog.Logger
	// idPrefix makes the IDs of transactions of in-memory EDUs only
	// unique: this process's start, in base 36, and '-' (stored
	// transactions' IDs have a '.').
	idPrefix string
	memTxns  atomic.Int64

	mu    sync.Mutex
	ctx   context.Context // Run's; nil before Run
	wg    sync.WaitGroup  // workers
	dests map[string]*dest

	txnsSent, txnsFailed, pdusSent, edusSent, dropped atomic.Int64

	fan fanout
}

// dest is the state of one destination. Fields are guarded by Queue.mu,
// except inflight which only its worker touches.
type dest struct {
	name    string
	running bool // a worker runs
	again   bool // work arrived while it ran
	timer   *time.Timer
	// retryAt: no attempt before (zero: not backing off).
	retryAt      time.Time
	failures     int
	backoff      time.Duration
	failingSince time.Time
	// pendingPDUs and pendingEDUs count stored rows. They may count too
	// many (coalesced EDUs), never too few, and are set exactly whenever
	// the queue is found empty: a worker stops when they are 0.
	pendingPDUs, pendingEDUs int
	edus                     []memEDU // in memory, oldest first
	inflight                 *inflight
}

type memEDU struct {
	key     string // type and coalescing key; "" never coalesces
	edu     EDU
	expires time.Time // zero: never
}

// inflight is a transaction sent and not acknowledged: it is sent again
// exactly as it was.
type inflight struct {
	id     string
	stored bool // ClaimFedTxn gave it; acknowledging dequeues rows
	txn    Transaction
	// stored rows it carries, for the pending counts
	nPDUs, nEDUs int
}

// NewQueue returns a queue over db that sends with transport.
func NewQueue(cfg QueueConfig, db *store.DB, transport Transport, log *slog.Logger) *Queue {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = DefaultSendTimeout
	}
	if cfg.CatchUpAfter <= 0 {
		cfg.CatchUpAfter = DefaultCatchUpAfter
	}
	if cfg.CatchUpPerRoom <= 0 {
		cfg.CatchUpPerRoom = DefaultCatchUpPerRoom
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := &Queue{
		cfg: cfg, db: db, transport: transport, log: log,
		idPrefix: strconv.FormatInt(time.Now().UnixNano(), 36) + "-",
		dests:    map[string]*dest{},
	}
	q.fan.init()
	return q
}

// Run sends until ctx ends: it reads back what waits in the database and
// each destination's backoff, starts the workers, and runs the fan-out of
// RoomEvent, Typing, Receipt and Presence. It returns when ctx ends and
// every worker stopped; a transaction cut off is sent again (same ID) at
// the next start. Errors: reading the queue at start.
func (q *Queue) Run(ctx context.Context) error {
	// Read under q.mu, so that the counts are never too low: SendPDU
	// counts what it stored after it stored it, under q.mu, so its row is
	// either counted here and not by it yet, or not stored when read here.
	// (The one overcount: a row stored before the read and counted after.)
	q.mu.Lock()
	ds, err := q.db.FedDestinations(ctx)
	if err != nil {
		q.mu.Unlock()
		if ctx.Err() != nil {
			return nil // shut down before it started
		}
		return fmt.Errorf("read federation queue: %w", err)
	}
	now := time.Now()
	q.ctx = ctx
	for _, s := range ds {
		d := q.dest(s.Name)
		d.failures, d.backoff, d.failingSince = s.Failures, s.Backoff, s.FailingSince
		if s.RetryAt.After(now) {
			d.retryAt = s.RetryAt
		}
		d.pendingPDUs, d.pendingEDUs = s.PendingPDUs, s.PendingEDUs
	}
	for _, d := range q.dests {
		if d.hasWork() {
			q.kick(d)
		}
	}
	q.mu.Unlock()
	if len(ds) > 0 {
		q.log.Info("federation queue resumed", "destinations", len(ds))
	}

	fanDone := make(chan struct{})
	go func() {
		defer close(fanDone)
		q.fan.run(ctx)
	}()
	<-ctx.Done()
	q.mu.Lock()
	for _, d := range q.dests {
		if d.timer != nil {
			d.timer.Stop()
			d.timer = nil
		}
	}
	q.mu.Unlock()
	<-fanDone
	q.wg.Wait()
	return nil
}

// dest returns the state of a destination, creating it. The caller holds
// q.mu.
func (q *Queue) dest(name string) *dest {
	d := q.dests[name]
	if d == nil {
		d = &dest{name: name}
		q.dests[name] = d
	}
	return d
}

func (d *dest) hasWork() bool {
	return d.pendingPDUs > 0 || d.pendingEDUs > 0 || len(d.edus) > 0 || d.inflight != nil
}

// destinations returns dests without this server, empty names and repeats.
func (q *Queue) destinations(dests []string) []string {
	out := make([]string, 0, len(dests))
	for _, d := range dests {
		if d == "" || d == q.cfg.ServerName {
			continue
		}
		dup := false
		for _, o := range out {
			if o == d {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, d)
		}
	}
	return out
}

// SendPDU queues a PDU (federation format, as JSON) for destinations: it
// is in the database when SendPDU returns, and sent in the order queued.
// This server and repeats in destinations are left out. Errors: the
// database's.
func (q *Queue) SendPDU(ctx context.Context, pdu []byte, eventID id.EventID, roomID id.RoomID, destinations []string) error {
	if err := q.sendPDUs(ctx, []store.FedPDU{{EventID: eventID, RoomID: roomID, PDU: pdu, Destinations: destinations}}); err != nil {
		return fmt.Errorf("queue %s: %w", eventID, err)
	}
	return nil
}

// sendPDUs queues PDUs in one database transaction.
func (q *Queue) sendPDUs(ctx context.Context, pdus []store.FedPDU) error {
	n := 0
	for i := range pdus {
		pdus[i].Destinations = q.destinations(pdus[i].Destinations)
		n += len(pdus[i].Destinations)
	}
	if n == 0 {
		return nil
	}
	if err := q.db.QueueFedPDUs(ctx, pdus); err != nil {
		return err
	}
	q.mu.Lock()
	for _, p := range pdus {
		for _, name := range p.Destinations {
			d := q.dest(name)
			d.pendingPDUs++
			q.kick(d)
		}
	}
	q.mu.Unlock()
	return nil
}

// ephemeral reports whether EDUs of a type are kept in memory only.
func ephemeral(eduType string) bool {
	return eduType == EDUTyping || eduType == EDUPresence
}

// SendEDU queues an EDU for destinations. With a coalesceKey, it replaces
// an EDU of the same type and key that still waits for a destination;
// with "" every EDU is sent. m.typing and m.presence EDUs are kept in
// memory (lost at a restart; typing ones are dropped after a minute);
// every other type is in the database when SendEDU returns, and EDUs
// without a key are sent once each, in order (to-device messages, device
// list updates). Errors: the database's.
func (q *Queue) SendEDU(ctx context.Context, destinations []string, edu EDU, coalesceKey string) error {
	dests := q.destinations(destinations)
	if len(dests) == 0 {
		return nil
	}
	if ephemeral(edu.Type) {
		var expires time.Time
		if edu.Type == EDUTyping {
			expires = time.Now().Add(typingTTL)
		}
		key := ""
		if coalesceKey != "" {
			key = edu.Type + "\x00" + coalesceKey
		}
		q.mu.Lock()
		for _, name := range dests {
			d := q.dest(name)
			d.addEDU(memEDU{key: key, edu: edu, expires: expires})
			q.kick(d)
		}
		q.mu.Unlock()
		return nil
	}
	if err := q.db.QueueFedEDU(ctx, dests, edu.Type, edu.Content, coalesceKey); err != nil {
		return fmt.Errorf("queue %s edu: %w", edu.Type, err)
	}
	q.mu.Lock()
	for _, name := range dests {
		d := q.dest(name)
		d.pendingEDUs++
		q.kick(d)
	}
	q.mu.Unlock()
	return nil
}

// addEDU adds an in-memory EDU, replacing one of the same key. The caller
// holds q.mu.
func (d *dest) addEDU(e memEDU) {
	if e.key != "" {
		for i, o := range d.edus {
			if o.key == e.key {
				d.edus = append(d.edus[:i], d.edus[i+1:]...)
				break
			}
		}
	}
	if len(d.edus) >= maxMemoryEDUs {
		d.edus = d.edus[1:]
	}
	d.edus = append(d.edus, e)
}

// Wake says that destination is reachable (a request of its own reached
// us): its backoff is reset and whatever waits for it is sent now. It
// does not block; a destination nothing waits for costs nothing.
func (q *Queue) Wake(destination string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.dests[destination]
	if d == nil || (d.failures == 0 && d.retryAt.IsZero()) {
		return
	}
	d.failures, d.backoff, d.retryAt = 0, 0, time.Time{}
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.hasWork() {
		q.kick(d)
	}
}

// kick starts the destination's worker unless it runs (then it looks
// again before it ends) or the destination is backing off (then its
// timer will). The caller holds q.mu.
func (q *Queue) kick(d *dest) {
	if q.ctx == nil || q.ctx.Err() != nil {
		return
	}
	if d.running {
		d.again = true
		return
	}
	if !d.retryAt.IsZero() {
		if wait := time.Until(d.retryAt); wait > 0 {
			if d.timer == nil {
				d.timer = time.AfterFunc(wait, func() { q.retry(d) })
			}
			return
		}
		d.retryAt = time.Time{}
	}
	d.running = true
	q.wg.Add(1)
	go q.work(d)
}

// retry is a backoff timer's end.
func (q *Queue) retry(d *dest) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d.timer = nil
	d.retryAt = time.Time{}
	q.kick(d)
}

// work is a destination's worker: it sends transactions until nothing
// waits, a send fails (the timer starts it again) or Run's ctx ends.
func (q *Queue) work(d *dest) {
	defer q.wg.Done()
	ctx := q.ctx
	log := q.log.With("destination", d.name)
	for {
		q.mu.Lock()
		d.again = false
		q.mu.Unlock()
		more, err := q.step(ctx, d, log)
		q.mu.Lock()
		switch {
		case ctx.Err() != nil:
		case err != nil:
			q.failedLocked(ctx, d, err, log)
			if d.retryAt.IsZero() && d.again {
				// Woken while the failure was recorded: try again now.
				q.mu.Unlock()
				continue
			}
		case more || d.again:
			q.mu.Unlock()
			continue
		}
		d.running = false
		if !d.hasWork() && d.failures == 0 && d.timer == nil {
			delete(q.dests, d.name)
		}
		q.mu.Unlock()
		return
	}
}

// step sends one transaction. It reports whether there may be more to
// send; an error is a failed attempt.
func (q *Queue) step(ctx context.Context, d *dest, log *slog.Logger) (more bool, err error) {
	if d.inflight == nil {
		if err := q.next(ctx, d, log); err != nil {
			return false, err
		}
		if d.inflight == nil {
			return false, nil
		}
	}
	f := d.inflight
	var resp *TransactionResponse
	// A stored transaction whose EDUs were all replaced by newer ones
	// since it was sent has nothing to send again.
	if len(f.txn.PDUs) > 0 || len(f.txn.EDUs) > 0 {
		sctx, cancel := context.WithTimeout(ctx, q.cfg.SendTimeout)
		resp, err = q.transport.SendTransaction(sctx, d.name, f.id, f.txn)
		cancel()
		if err != nil {
			return false, fmt.Errorf("send transaction %s: %w", f.id, err)
		}
	}
	if err := q.acked(ctx, d, f, resp, log); err != nil {
		return false, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return d.hasWork(), nil
}

// next builds the destination's next transaction into d.inflight (left nil
// when nothing waits): the stored one in flight if any, else the oldest
// stored PDUs and EDUs, with in-memory EDUs after them.
func (q *Queue) next(ctx context.Context, d *dest, log *slog.Logger) error {
	now := time.Now()
	q.mu.Lock()
	catchUp := !d.failingSince.IsZero() && now.Sub(d.failingSince) >= q.cfg.CatchUpAfter
	q.mu.Unlock()
	if catchUp {
		n, err := q.db.TrimFedPDUs(ctx, d.name, q.cfg.CatchUpPerRoom)
		if err != nil {
			return fmt.Errorf("catch up: %w", err)
		}
		if n > 0 {
			log.Info("catching up: older events left for the server to fetch", "dropped_pdus", n, "per_room", q.cfg.CatchUpPerRoom)
			q.mu.Lock()
			d.pendingPDUs = max(d.pendingPDUs-n, 0)
			q.mu.Unlock()
		}
	}
	st, err := q.db.ClaimFedTxn(ctx, d.name, MaxPDUsPerTxn, MaxEDUsPerTxn)
	if err != nil {
		return fmt.Errorf("read queue: %w", err)
	}
	f := &inflight{id: st.ID, stored: st.ID != "", nPDUs: len(st.PDUs), nEDUs: len(st.EDUs)}
	f.txn.PDUs = make([]json.RawMessage, len(st.PDUs))
	for i, p := range st.PDUs {
		f.txn.PDUs[i] = p
	}
	for _, e := range st.EDUs {
		f.txn.EDUs = append(f.txn.EDUs, EDU{Type: e.Type, Content: e.Content})
	}
	q.mu.Lock()
	if st.ID == "" {
		d.pendingPDUs, d.pendingEDUs = 0, 0
	}
	if !st.Retry {
		// In-memory EDUs join a new transaction only: a retry must be
		// the same transaction.
		kept := d.edus[:0]
		for _, e := range d.edus {
			switch {
			case !e.expires.IsZero() && now.After(e.expires):
				q.dropped.Add(1)
			case len(f.txn.EDUs) < MaxEDUsPerTxn:
				f.txn.EDUs = append(f.txn.EDUs, e.edu)
			default:
				kept = append(kept, e)
			}
		}
		clear(d.edus[len(kept):])
		d.edus = kept
	}
	q.mu.Unlock()
	if len(f.txn.PDUs) == 0 && len(f.txn.EDUs) == 0 && !st.Retry {
		return nil
	}
	if f.id == "" {
		f.id = q.idPrefix + strconv.FormatInt(q.memTxns.Add(1), 10)
	}
	f.txn.Origin = q.cfg.ServerName
	f.txn.OriginServerTS = now.UnixMilli()
	q.mu.Lock()
	d.inflight = f
	q.mu.Unlock()
	return nil
}

// acked records that the destination acknowledged the transaction in
// flight.
func (q *Queue) acked(ctx context.Context, d *dest, f *inflight, resp *TransactionResponse, log *slog.Logger) error {
	now := time.Now()
	q.mu.Lock()
	// A transaction of in-memory EDUs only is not written down unless it
	// ends a failure streak: typing would otherwise cost a write each.
	write := f.stored || d.failures > 0 || !d.failingSince.IsZero()
	q.mu.Unlock()
	if write {
		if err := q.db.FedTxnSent(ctx, d.name, f.id, now); err != nil {
			// Not dequeued: the transaction is sent again (same ID, the
			// remote answers from its cache) after a backoff.
			return fmt.Errorf("record transaction %s as sent: %w", f.id, err)
		}
	}
	q.txnsSent.Add(1)
	q.pdusSent.Add(int64(len(f.txn.PDUs)))
	q.edusSent.Add(int64(len(f.txn.EDUs)))
	if resp != nil {
		for eventID, r := range resp.PDUs {
			if r.Error != "" {
				log.Debug("destination refused event", "txn_id", f.id, "event_id", eventID, "error", r.Error)
			}
		}
	}
	q.mu.Lock()
	d.inflight = nil
	if d.failures > 0 {
		log.Info("destination is reachable again", "failures", d.failures)
	}
	d.failures, d.backoff, d.retryAt, d.failingSince = 0, 0, time.Time{}, time.Time{}
	d.pendingPDUs = max(d.pendingPDUs-f.nPDUs, 0)
	d.pendingEDUs = max(d.pendingEDUs-f.nEDUs, 0)
	q.mu.Unlock()
	return nil
}

// backoff returns the backoff after the given number of failures.
func (q *Queue) backoff(failures int) time.Duration {
	b := q.cfg.MinBackoff
	for i := 1; i < failures && b < q.cfg.MaxBackoff; i++ {
		b *= 2
	}
	return min(b, q.cfg.MaxBackoff)
}

// failedLocked backs the destination off after a failed attempt. The
// caller holds q.mu; it is released while the store is written.
func (q *Queue) failedLocked(ctx context.Context, d *dest, err error, log *slog.Logger) {
	q.txnsFailed.Add(1)
	now := time.Now()
	d.failures++
	d.backoff = q.backoff(d.failures)
	wait := d.backoff + rand.N(d.backoff/4+1)
	d.retryAt = now.Add(wait)
	if d.failingSince.IsZero() {
		d.failingSince = now
	}
	failures, backoff, retryAt := d.failures, d.backoff, d.retryAt
	q.mu.Unlock()
	var remote *RemoteError
	if errors.As(err, &remote) || errors.Is(err, ErrUnreachable) || errors.Is(err, context.DeadlineExceeded) {
		log.Warn("destination unreachable, backing off", "err", err, "failures", failures, "retry_in", wait.Round(time.Millisecond))
	} else {
		log.Warn("sending to destination failed, backing off", "err", err, "failures", failures, "retry_in", wait.Round(time.Millisecond))
	}
	if werr := q.db.FedTxnFailed(ctx, d.name, failures, backoff, retryAt, now); werr != nil && ctx.Err() == nil {
		log.Warn("record destination backoff", "err", werr)
	}
	q.mu.Lock()
	// Wake may have reset the backoff meanwhile (retryAt is then zero).
	if d.timer == nil && !d.retryAt.IsZero() {
		d.timer = time.AfterFunc(time.Until(d.retryAt), func() { q.retry(d) })
	}
}

// QueueStats are the queue's counters since it was made.
type QueueStats struct {
	// TxnsSent and TxnsFailed count transactions acknowledged and
	// attempts that failed.
	TxnsSent, TxnsFailed int64
	// PDUsSent and EDUsSent count what acknowledged transactions carried.
	PDUsSent, EDUsSent int64
	// EDUsDropped counts typing EDUs that expired before they could be
	// sent.
	EDUsDropped int64
	// Destinations is how many destinations have something waiting;
	// BackingOff how many are backing off; PendingPDUs and PendingEDUs
	// sum what waits for all of them (approximately).
	Destinations, BackingOff, PendingPDUs, PendingEDUs int
}

// Stats returns the queue's counters.
func (q *Queue) Stats() QueueStats {
	s := QueueStats{
		TxnsSent: q.txnsSent.Load(), TxnsFailed: q.txnsFailed.Load(),
		PDUsSent: q.pdusSent.Load(), EDUsSent: q.edusSent.Load(), EDUsDropped: q.dropped.Load(),
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, d := range q.dests {
		if d.hasWork() {
			s.Destinations++
		}
		if !d.retryAt.IsZero() {
			s.BackingOff++
		}
		s.PendingPDUs += d.pendingPDUs
		s.PendingEDUs += d.pendingEDUs + len(d.edus)
	}
	return s
}

// Pending returns how many PDUs and EDUs wait for destination
// (approximately: stored rows are counted as they are queued and sent).
func (q *Queue) Pending(destination string) (pdus, edus int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.dests[destination]
	if d == nil {
		return 0, 0
	}
	return d.pendingPDUs, d.pendingEDUs + len(d.edus)
}

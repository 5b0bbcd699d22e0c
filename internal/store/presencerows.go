package store

import (
	"runtime"
	"sync"
	"weak"

	"maunium.net/go/mautrix/id"
)

// presenceRowCache keeps the presence rows that DB.Presence read, on
// SQLite, where this process is the database's only writer and sees every
// write of the table (UpdatePresence, SetPresenceTimes). A write forgets
// the user's row before it starts and again after it ended, and moves the
// generation each time: a read that overlapped a write is not kept (its
// generation moved), and a row kept before the write committed is
// forgotten once it has. PostgreSQL may be shared by several processes:
// it has no cache.
type presenceRowCache struct {
	mu   sync.Mutex
	gen  uint64
	rows map[id.UserID]presenceRow
}

type presenceRow struct {
	p     Presence
	found bool
}

// presenceRowsMax bounds the cache; when full it starts over.
const presenceRowsMax = 100000

// presenceCaches holds each SQLite DB's cache (a DB's struct is db.go's),
// dropped when the DB is collected.
var presenceCaches sync.Map // weak.Pointer[DB] → *presenceRowCache

func (db *DB) presenceRows() *presenceRowCache {
	if db.dialect != SQLite {
		return nil
	}
	return dbLocal(&presenceCaches, db, func() *presenceRowCache { return &presenceRowCache{} })
}

// dbLocal returns db's value in m (a map of weak.Pointer[DB] to *T), made
// by mk the first time and deleted from m once db is collected: per-DB
// state kept outside the DB struct (db.go's).
func dbLocal[T any](m *sync.Map, db *DB, mk func() *T) *T {
	key := weak.Make(db)
	if v, ok := m.Load(key); ok {
		return v.(*T)
	}
	v, loaded := m.LoadOrStore(key, mk())
	if !loaded {
		runtime.AddCleanup(db, func(k weak.Pointer[DB]) { m.Delete(k) }, key)
	}
	return v.(*T)
}

func (c *presenceRowCache) get(user id.UserID) (Presence, bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.rows[user]
	return r.p, r.found, ok
}

func (c *presenceRowCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put keeps a row read at generation gen, unless a write began since.
func (c *presenceRowCache) put(user id.UserID, p Presence, found bool, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.rows == nil || len(c.rows) >= presenceRowsMax {
		c.rows = map[id.UserID]presenceRow{}
	}
	c.rows[user] = presenceRow{p: p, found: found}
}

func (c *presenceRowCache) forget(user id.UserID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.rows, user)
}

// presenceWritten is called before a write of user's presence row; the
// func it returns after the write ended (committed or not).
func (db *DB) presenceWritten(user id.UserID) (done func()) {
	c := db.presenceRows()
	if c == nil {
		return func() {}
	}
	c.forget(user)
	return func() { c.forget(user) }
}

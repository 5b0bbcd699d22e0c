package suite

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"polder.dev/polder/bench/sqlitedriver/sqlitebench"
)

// Benchmarks runs Polder's storage workloads against d. Statements are
// prepared once on the pool, as the store will do, and used through
// Tx.StmtContext inside transactions.
func Benchmarks(b *testing.B, d sqlitebench.Driver) {
	for _, sync := range []string{"NORMAL", "FULL"} {
		b.Run("InsertCommit/sync="+sync, func(b *testing.B) { benchInsertCommit(b, d, sync) })
	}
	b.Run("BatchInsert100", func(b *testing.B) { benchBatchInsert(b, d) })
	b.Run("PointSelect/serial", func(b *testing.B) { benchPointSelect(b, d, true, nTokens) })
	b.Run("PointSelect/unprepared", func(b *testing.B) { benchPointSelect(b, d, false, nTokens) })
	b.Run("PointSelect/hot1k", func(b *testing.B) { benchPointSelect(b, d, true, 1000) })
	b.Run("PointSelect/parallel4", benchPointSelectParallel(d))
	b.Run("RangeScan50", func(b *testing.B) { benchRangeScan(b, d) })
	b.Run("Mixed1W4R", func(b *testing.B) { benchMixed(b, d) })
}

// newWriteDB returns pools on a new database with the schema and the rooms.
func newWriteDB(b *testing.B, d sqlitebench.Driver, sync string) *sqlitebench.Pools {
	b.Helper()
	ctx := context.Background()
	p := mustOpen(b, d, filepath.Join(b.TempDir(), "w.db"), sync, 1)
	if err := sqlitebench.Migrate(ctx, p.W); err != nil {
		b.Fatal(err)
	}
	if err := insertRooms(ctx, p.W); err != nil {
		b.Fatal(err)
	}
	return p
}

func mustPrepare(b *testing.B, db *sql.DB, q string) *sql.Stmt {
	b.Helper()
	s, err := db.PrepareContext(context.Background(), q)
	if err != nil {
		b.Fatalf("Prepare(%q): %v", q, err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// insertOne sends one message: BEGIN IMMEDIATE, INSERT … RETURNING, COMMIT.
func insertOne(ctx context.Context, w *sql.DB, ins *sql.Stmt, i int) error {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var pos int64
	if err := tx.StmtContext(ctx, ins).QueryRowContext(ctx, i%nRooms+1, "$w"+strconv.Itoa(i),
		"@alice:example.org", "m.room.message", sqlitebench.Content).Scan(&pos); err != nil {
		return err
	}
	return tx.Commit()
}

// benchInsertCommit: workload 1, one INSERT per transaction commit.
func benchInsertCommit(b *testing.B, d sqlitebench.Driver, sync string) {
	ctx := context.Background()
	p := newWriteDB(b, d, sync)
	ins := mustPrepare(b, p.W, sqlitebench.InsertEvent)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := insertOne(ctx, p.W, ins, i); err != nil {
			b.Fatalf("insert %d: %v", i, err)
		}
	}
}

// benchBatchInsert: workload 2, 100 INSERTs in one transaction (group
// commit). One op is one batch of 100 rows.
func benchBatchInsert(b *testing.B, d sqlitebench.Driver) {
	ctx := context.Background()
	p := newWriteDB(b, d, "NORMAL")
	ins := mustPrepare(b, p.W, sqlitebench.InsertEvent)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for range b.N {
		err := withTx(ctx, p.W, func(tx *sql.Tx) error {
			s := tx.StmtContext(ctx, ins)
			for range 100 {
				var pos int64
				if err := s.QueryRowContext(ctx, n%nRooms+1, "$b"+strconv.Itoa(n),
					"@alice:example.org", "m.room.message", sqlitebench.Content).Scan(&pos); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			b.Fatalf("batch: %v", err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/row")
}

type tokenRow struct {
	user, device string
	created      int64
}

// benchPointSelect: workload 3, access-token lookup by primary key, with a
// statement prepared once (prepared) or the SQL string on every call. Keys
// are drawn from the first keys tokens: all 100k (most pages come from the
// OS page cache, not SQLite's 2 MiB cache) or 1,000 (hot1k: every page is
// in SQLite's cache, so the time is mostly driver and SQLite CPU).
func benchPointSelect(b *testing.B, d sqlitebench.Driver, prepared bool, keys int) {
	ctx := context.Background()
	path, tokens := mustFixture(b, d)
	p := mustOpen(b, d, path, "NORMAL", 1)
	sel := mustPrepare(b, p.R, sqlitebench.SelectToken)
	r := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		var row tokenRow
		var err error
		tok := tokens[r.IntN(keys)]
		if prepared {
			err = sel.QueryRowContext(ctx, tok).Scan(&row.user, &row.device, &row.created)
		} else {
			err = p.R.QueryRowContext(ctx, sqlitebench.SelectToken, tok).Scan(&row.user, &row.device, &row.created)
		}
		if err != nil {
			b.Fatalf("select token: %v", err)
		}
	}
}

// benchPointSelectParallel: workload 3 on a pool of 4 reader connections
// with 4 goroutines (2 per core).
func benchPointSelectParallel(d sqlitebench.Driver) func(*testing.B) {
	return func(b *testing.B) {
		ctx := context.Background()
		path, tokens := mustFixture(b, d)
		p := mustOpen(b, d, path, "NORMAL", 4)
		sel := mustPrepare(b, p.R, sqlitebench.SelectToken)
		var seed atomic.Uint64
		b.ReportAllocs()
		b.SetParallelism(2)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(seed.Add(1), 2))
			for pb.Next() {
				var row tokenRow
				if err := sel.QueryRowContext(ctx, tokens[r.IntN(len(tokens))]).Scan(&row.user, &row.device, &row.created); err != nil {
					b.Errorf("select token: %v", err)
					return
				}
			}
		})
	}
}

type eventRow struct {
	pos             int64
	id, sender, typ string
	content         []byte
}

// rangeScan reads 50 events of a random room after a random position, as
// an incremental /sync of one room does.
func rangeScan(ctx context.Context, sel *sql.Stmt, r *rand.Rand, buf []eventRow) ([]eventRow, error) {
	room := r.IntN(nRooms) + 1
	since := r.IntN(nEvents - 60*nRooms) // leaves ≥ 50 events of every room after since
	rows, err := sel.QueryContext(ctx, room, since)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	buf = buf[:0]
	for rows.Next() {
		var e eventRow
		if err := rows.Scan(&e.pos, &e.id, &e.sender, &e.typ, &e.content); err != nil {
			return nil, err
		}
		buf = append(buf, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(buf) != 50 {
		return nil, errShort(len(buf))
	}
	return buf, nil
}

type errShort int

func (e errShort) Error() string {
	return "range scan returned " + strconv.Itoa(int(e)) + " rows; want 50"
}

// benchRangeScan: workload 4, 50 events by (room, stream position).
func benchRangeScan(b *testing.B, d sqlitebench.Driver) {
	ctx := context.Background()
	path, _ := mustFixture(b, d)
	p := mustOpen(b, d, path, "NORMAL", 1)
	sel := mustPrepare(b, p.R, sqlitebench.RangeEvents)
	r := rand.New(rand.NewPCG(3, 4))
	buf := make([]eventRow, 0, 50)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		var err error
		if buf, err = rangeScan(ctx, sel, r, buf); err != nil {
			b.Fatalf("range scan: %v", err)
		}
	}
}

// benchMixed: workload 5, one writer goroutine committing one message per
// transaction (sync=NORMAL) without pause while 4 reader goroutines run
// range scans on a pool of 4 readers. One op is one range scan; writes/s is
// what the writer achieved meanwhile.
func benchMixed(b *testing.B, d sqlitebench.Driver) {
	ctx := context.Background()
	path, _ := mustCopyFixture(b, d)
	p := mustOpen(b, d, path, "NORMAL", 4)
	ins := mustPrepare(b, p.W, sqlitebench.InsertEvent)
	sel := mustPrepare(b, p.R, sqlitebench.RangeEvents)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()

	stop := make(chan struct{})
	var writes atomic.Int64
	var werr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := insertOne(ctx, p.W, ins, i); err != nil {
				werr = err
				return
			}
			writes.Add(1)
		}
	}()
	var next atomic.Int64
	var rwg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 5))
			buf := make([]eventRow, 0, 50)
			for next.Add(1) <= int64(b.N) {
				var err error
				if buf, err = rangeScan(ctx, sel, r, buf); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	rwg.Wait()
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatalf("reader: %v", err)
	}
	if werr != nil {
		b.Fatalf("writer: %v", werr)
	}
	b.ReportMetric(float64(writes.Load())/elapsed.Seconds(), "writes/s")
}

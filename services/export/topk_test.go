package export_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/logtally/logtally/internal/apptest"
	"github.com/logtally/logtally/internal/dims"
	"github.com/logtally/logtally/internal/ducktest"
	"github.com/logtally/logtally/internal/pgtest"
	"github.com/logtally/logtally/services/export"
)

// A field window exported in full and then cut to its top values (the
// aggregator's -aggregator.dims.top-k) loses the rows of the values it
// folded, and its (other) row sums them over every partition: in
// PostgreSQL and in the Parquet files, per window, the kept values keep
// their exact counts and kept plus other equals the reference total.
func TestExportFollowsTopKCut(t *testing.T) {
	const k, parts = 3, 2
	pg := pgtest.Start(t)
	duck := ducktest.Open(t)
	dir := t.TempDir()
	a := apptest.Start(t, fmt.Sprintf("-parser.partitions=%d", parts), fmt.Sprintf("-aggregator.dims.top-k=%d", k), "-aggregator.dims.grace=1m",
		"-export.postgres.dsn="+pg.DSN(), "-export.parquet.dir="+dir, "-export.parquet.close-after=0s", "-export.interval=100ms")
	ctx := context.Background()
	db, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	send := func(lines []string) { apptest.SendLines(t, a.Ingest.TCPAddr(), lines) }

	old := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Minute)
	// 20 paths, path i with 200-10i lines: a clear ranking in each
	// partition.
	full := map[rowKey]counters{}
	kept := map[rowKey]counters{}
	perPart := map[int]int{}
	var lines []string
	var total int64
	for i := range 20 {
		p := fmt.Sprintf("/p%02d", i)
		key, _ := dims.Key(dims.Path, []byte(p))
		part := dims.Partition(key, parts)
		n := int64(200 - 10*i)
		for range n {
			lines = append(lines, fmt.Sprintf(`203.0.113.%d - - [%s] "GET %s HTTP/1.1" 200 10`, i, old.Format("02/Jan/2006:15:04:05 -0700"), p))
		}
		total += n
		for _, w := range []struct {
			res  string
			size time.Duration
		}{{"1m", time.Minute}, {"1h", time.Hour}} {
			rk := rowKey{w.res, old.Truncate(w.size).Unix(), p}
			full[rk] = counters{n, 0, 0, 0, 10 * n}
			if perPart[part] < k {
				kept[rk] = full[rk]
			}
		}
		perPart[part]++
	}
	for p := range parts {
		if perPart[p] < k+1 {
			t.Fatalf("partition %d holds %d paths: the test needs more than %d in each", p, perPart[p], k)
		}
	}
	send(lines)
	onlyOld := func(m map[rowKey]counters) map[rowKey]counters {
		out := map[rowKey]counters{}
		for rk, c := range m {
			if rk.start <= old.Unix() && rk.start >= old.Truncate(time.Hour).Unix() {
				out[rk] = c
			}
		}
		return out
	}
	eventually(t, "every path before the cut", func() string { return diff(onlyOld(pgRows(t, db, "logtally_path_counts", "path")), full) })

	// Current lines move every partition's event time past the old
	// windows' grace: they are cut.
	lines = lines[:0]
	for i := range 40 {
		lines = append(lines, fmt.Sprintf(`198.51.100.%d - - [%s] "GET /now HTTP/1.1" 200 10`, i, time.Now().UTC().Format("02/Jan/2006:15:04:05 -0700")))
	}
	send(lines)
	want := map[rowKey]counters{}
	var keptSum int64
	for rk, c := range kept {
		want[rk] = c
		if rk.res == "1m" {
			keptSum += c[0]
		}
	}
	for _, w := range []struct {
		res  string
		size time.Duration
	}{{"1m", time.Minute}, {"1h", time.Hour}} {
		want[rowKey{w.res, old.Truncate(w.size).Unix(), export.OtherValue}] = counters{total - keptSum, 0, 0, 0, 10 * (total - keptSum)}
	}
	eventually(t, "postgres after the cut", func() string { return diff(onlyOld(pgRows(t, db, "logtally_path_counts", "path")), want) })
	eventually(t, "parquet after the cut", func() string {
		return diff(onlyOld(duckRows(t, duck, dir, "logtally_path_counts", "path")), want)
	})
	t.Logf("%d paths in, %d kept per window, other = %d of %d lines", 20, len(kept)/2, total-keptSum, total)
}

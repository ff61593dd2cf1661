package export_test

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/logtally/logtally/internal/apptest"
	"github.com/logtally/logtally/internal/ducktest"
	"github.com/logtally/logtally/internal/pgtest"
)

// counters as exported: requests, 4xx, 5xx, auth failures, bytes.
type counters [5]int64

// rowKey is one row of a counts table: resolution, window start (unix
// seconds) and the key column's text.
type rowKey struct {
	res   string
	start int64
	key   string
}

// reference counts lines the way the export must show them.
type reference map[string]map[rowKey]*counters // table → rows

func (r reference) add(tbl, key string, ts time.Time, status int, size int64) {
	if r[tbl] == nil {
		r[tbl] = map[rowKey]*counters{}
	}
	for _, w := range []struct {
		res  string
		size time.Duration
	}{{"1m", time.Minute}, {"1h", time.Hour}} {
		k := rowKey{w.res, ts.Truncate(w.size).Unix(), key}
		c := r[tbl][k]
		if c == nil {
			c = &counters{}
			r[tbl][k] = c
		}
		c[0]++
		if status >= 400 && status < 500 {
			c[1]++
		}
		if status >= 500 {
			c[2]++
		}
		if status == 401 {
			c[3]++
		}
		c[4] += size
	}
}

func (r reference) flat(tbl string) map[rowKey]counters {
	out := map[rowKey]counters{}
	for k, c := range r[tbl] {
		out[k] = *c
	}
	return out
}

var (
	paths    = []string{"/", "/login", "/wp-login.php", "/assets/" + strings.Repeat("a", 40) + ".js", "/api/v1/items"}
	statuses = []int{200, 200, 304, 401, 404, 500}
)

// sendLines sends n combined lines stamped within the hour at base and
// counts them into ref; seed varies the IPs, paths and minutes.
func sendLines(t *testing.T, addr net.Addr, ref reference, base time.Time, n, seed int) {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := bufio.NewWriter(c)
	for i := range n {
		j := i + seed
		ip := fmt.Sprintf("10.%d.%d.%d", j%3, j%7, j%61)
		if j%5 == 0 {
			ip = fmt.Sprintf("2001:db8::%x", j%97)
		}
		ts := base.Add(time.Duration(j%4)*time.Minute + time.Duration(j%50)*time.Second)
		path, status, size := paths[j%len(paths)], statuses[j%len(statuses)], int64(j%1000)
		fmt.Fprintf(w, "%s - - [%s] \"GET %s?x=%d HTTP/1.1\" %d %d \"-\" \"curl/8.5.0\"\n", ip, ts.Format("02/Jan/2006:15:04:05 -0700"), path, j, status, size)
		ref.add("logtally_ip_counts", netip.MustParseAddr(ip).String(), ts, status, size)
		ref.add("logtally_path_counts", path, ts, status, size)
		ref.add("logtally_status_counts", strconv.Itoa(status), ts, status, size)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// pgRows reads a counts table (nil until the export created it).
func pgRows(t *testing.T, db *pgx.Conn, tbl, col string) map[rowKey]counters {
	t.Helper()
	rows, err := db.Query(context.Background(), fmt.Sprintf(`SELECT resolution, window_start, %s::text, requests, status_4xx, status_5xx, auth_failures, bytes FROM %s`, col, tbl))
	if err != nil {
		if strings.Contains(err.Error(), "SQLSTATE 42P01") {
			return nil
		}
		t.Fatal(err)
	}
	out := map[rowKey]counters{}
	var k rowKey
	var ts time.Time
	var c counters
	_, err = pgx.ForEachRow(rows, []any{&k.res, &ts, &k.key, &c[0], &c[1], &c[2], &c[3], &c[4]}, func() error {
		k.start = ts.Unix()
		if col == "ip" {
			k.key = strings.TrimSuffix(strings.TrimSuffix(k.key, "/32"), "/128")
		}
		out[k] = c
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// duckRows reads the Parquet files of a table with DuckDB.
func duckRows(t *testing.T, duck *ducktest.DB, dir, tbl, col string) map[rowKey]counters {
	t.Helper()
	glob := filepath.Join(dir, tbl, "*", "*.parquet")
	out := map[rowKey]counters{}
	if m, _ := filepath.Glob(glob); len(m) == 0 {
		return out
	}
	for _, r := range duck.Query(t, fmt.Sprintf(`SELECT resolution, epoch(window_start)::BIGINT AS start, %s AS key, requests, status_4xx, status_5xx, auth_failures, bytes FROM read_parquet('%s')`, col, glob)) {
		num := func(k string) int64 {
			switch v := r[k].(type) {
			case string:
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatalf("%s = %q", k, v)
				}
				return n
			case float64:
				return int64(v)
			}
			t.Fatalf("%s = %#v", k, r[k])
			return 0
		}
		k := rowKey{res: r["resolution"].(string), start: num("start"), key: r["key"].(string)}
		if _, dup := out[k]; dup {
			t.Fatalf("%s: row %v twice", tbl, k)
		}
		out[k] = counters{num("requests"), num("status_4xx"), num("status_5xx"), num("auth_failures"), num("bytes")}
	}
	return out
}

// eventually waits until check returns "", failing with its last answer.
func eventually(t *testing.T, what string, check func() string) {
	t.Helper()
	var last string
	deadline := time.Now().Add(time.Minute)
	for {
		if last = check(); last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no match after 1m:\n%s", what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func diff(got, want map[rowKey]counters) string {
	var out []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			out = append(out, fmt.Sprintf("missing %v (want %v)", k, w))
		} else if g != w {
			out = append(out, fmt.Sprintf("%v = %v, want %v", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("extra %v = %v", k, g))
		}
	}
	slices.Sort(out)
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("... %d more", len(out)-10))
	}
	return strings.Join(out, "\n")
}

// The export target writes every window to a real PostgreSQL and the
// closed hours to Parquet files that a real DuckDB reads back; both equal
// a reference counted from the same lines, for the IPs and the fields,
// and both follow a late line into a window written before.
func TestExportMatchesReference(t *testing.T) {
	pg := pgtest.Start(t)
	duck := ducktest.Open(t)
	dir := t.TempDir()
	a := apptest.Start(t, "-parser.partitions=4",
		"-export.postgres.dsn="+pg.DSN(), "-export.parquet.dir="+dir,
		"-export.parquet.close-after=0s", "-export.interval=100ms")
	ctx := context.Background()
	db, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)

	ref := reference{}
	// Two closed hours, so that the Parquet files are due at once.
	hour := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	sendLines(t, a.Ingest.TCPAddr(), ref, hour, 3000, 0)
	sendLines(t, a.Ingest.TCPAddr(), ref, hour.Add(time.Hour), 1000, 17)

	tables := []struct{ name, col string }{{"logtally_ip_counts", "ip"}, {"logtally_path_counts", "path"}, {"logtally_status_counts", "status"}}
	converge := func(stage string) {
		t.Helper()
		for _, tb := range tables {
			want := ref.flat(tb.name)
			eventually(t, stage+": postgres "+tb.name, func() string { return diff(pgRows(t, db, tb.name, tb.col), want) })
			eventually(t, stage+": parquet "+tb.name, func() string { return diff(duckRows(t, duck, dir, tb.name, tb.col), want) })
		}
	}
	converge("first export")
	if n := apptest.Metric(t, a, "logtally_export_parquet_files_total", "kind", "new"); n == 0 {
		t.Fatal("no new Parquet file counted")
	}

	// Late lines into the first hour: the rows and the files follow.
	sendLines(t, a.Ingest.TCPAddr(), ref, hour, 200, 5)
	converge("after late lines")
	if n := apptest.Metric(t, a, "logtally_export_parquet_files_total", "kind", "rewrite"); n == 0 {
		t.Fatal("late lines did not rewrite a Parquet file")
	}

	// Every window's newest revision is recorded with its rows.
	var states int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM logtally_export_state WHERE revision > 0`).Scan(&states); err != nil {
		t.Fatal(err)
	}
	if states == 0 {
		t.Fatal("logtally_export_state is empty")
	}
	t.Logf("%d rows in logtally_ip_counts, %d windows in logtally_export_state, %d tables", len(ref.flat("logtally_ip_counts")), states, len(slices.Collect(maps.Keys(ref))))
}

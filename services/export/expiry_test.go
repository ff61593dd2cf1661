package export_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/apptest"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/ducktest"
)

// An hour file whose windows partly left NATS (retention; a deleted
// manifest is seen the same way) is not rewritten by a later change, which
// would drop the rows of the gone windows: the file keeps its counts, and
// the skip is counted and logged.
func TestParquetKeepsHourWithExpiredWindows(t *testing.T) {
	duck := ducktest.Open(t)
	dir := t.TempDir()
	a := apptest.Start(t, "-parser.partitions=2", "-export.parquet.dir="+dir, "-export.parquet.close-after=0s", "-export.interval=100ms")
	ref := reference{}
	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	sendLines(t, a.Ingest.TCPAddr(), ref, hour, 800, 0)
	want := ref.flat("logtally_ip_counts")
	eventually(t, "first file", func() string { return diff(duckRows(t, duck, dir, "logtally_ip_counts", "ip"), want) })
	file := filepath.Join(dir, "logtally_ip_counts", "1m", hour.Format("2006-01-02T15")+".parquet")
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	// The first minute's windows go, as at the end of their retention.
	ctx := context.Background()
	kv, err := a.NATS().JS.KeyValue(ctx, "logtally_counts_1m")
	if err != nil {
		t.Fatal(err)
	}
	for p := range 2 {
		if err := kv.Delete(ctx, counts.Key(hour, p)); err != nil {
			t.Fatal(err)
		}
	}
	// A late line into the hour's second minute.
	apptest.SendAccessLines(t, a.Ingest.TCPAddr(), hour.Add(90*time.Second), 1, "10.9.9.9")
	apptest.Eventually(t, "the skip counted", 30*time.Second, func() bool {
		return apptest.Metric(t, a, "logtally_export_parquet_skipped_total") > 0
	})
	after, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Fatal("the hour file was rewritten without its expired windows")
	}
	// The 1h file has all its windows: it follows the late line.
	ref.add("logtally_ip_counts", "10.9.9.9", hour.Add(90*time.Second), 200, 12)
	want1h := map[rowKey]counters{}
	for k, c := range ref.flat("logtally_ip_counts") {
		if k.res == "1h" {
			want1h[k] = c
		}
	}
	eventually(t, "1h file after the late line", func() string {
		got := duckRows(t, duck, dir, "logtally_ip_counts", "ip")
		for k := range got {
			if k.res != "1h" {
				delete(got, k)
			}
		}
		return diff(got, want1h)
	})
}

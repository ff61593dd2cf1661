package export_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/logtally/logtally/internal/apptest"
	"github.com/logtally/logtally/internal/ducktest"
	"github.com/logtally/logtally/internal/natstest"
	"github.com/logtally/logtally/internal/pgtest"
	"github.com/logtally/logtally/test/chaos"
)

// The export process is killed with SIGKILL again and again while lines
// flow, and once its state table is wiped as well (every window is then
// written again); afterwards PostgreSQL and the Parquet files hold exactly
// the reference, and the lag gauge is back at 0. NATS runs with the
// production max_payload of 1 MiB.
func TestExportExactAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it: skipped with -short")
	}
	pg := pgtest.Start(t)
	duck := ducktest.Open(t)
	bin := chaos.Binary(t)
	t.Cleanup(chaos.RemoveBinary)
	srv := natstest.RunBasicJetStreamServer(t, natstest.MaxPayload(1<<20))
	url := srv.ClientURL()
	a := apptest.Start(t, "-nats.url="+url, "-target=ingest,parser,aggregator", "-parser.partitions=4")
	dir := t.TempDir()
	exp := chaos.StartStage(t, bin, "export", "export", url, "-nats.replicas=1",
		"-export.postgres.dsn="+pg.DSN(), "-export.parquet.dir="+dir,
		"-export.parquet.close-after=0s", "-export.interval=50ms")
	ctx := context.Background()
	db, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)

	ref := reference{}
	rnd := rand.New(rand.NewPCG(3, 9))
	hours := []time.Time{
		time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour),
		time.Now().UTC().Truncate(time.Hour).Add(-time.Hour),
		time.Now().UTC().Truncate(time.Hour), // the open hour (lines up to 4m ahead are accepted)
	}
	kills, busy := 0, 0
	for round := range 8 {
		sendLines(t, a.Ingest.TCPAddr(), ref, hours[round%len(hours)], 1500, round*101)
		time.Sleep(time.Duration(50+rnd.IntN(400)) * time.Millisecond)
		if v, err := exp.Metric("logtally_export_windows_total"); err == nil && v > 0 {
			busy++ // killed after it wrote windows of this run, likely mid-work
		}
		exp.Kill(t)
		kills++
		if round == 4 {
			// A lost state table: every window is written again and must
			// converge to the same rows.
			if _, err := db.Exec(ctx, `DELETE FROM logtally_export_state`); err != nil {
				t.Fatal(err)
			}
		}
		exp.Start(t)
	}
	exp.WaitReady(t, time.Minute)
	for _, tb := range []struct{ name, col string }{{"logtally_ip_counts", "ip"}, {"logtally_path_counts", "path"}, {"logtally_status_counts", "status"}} {
		want := ref.flat(tb.name)
		eventually(t, "postgres "+tb.name, func() string { return diff(pgRows(t, db, tb.name, tb.col), want) })
		// The open hour has no file yet; the closed ones must be exact.
		eventually(t, "parquet "+tb.name, func() string {
			closed := map[rowKey]counters{}
			for k, c := range want {
				if time.Unix(k.start, 0).Truncate(time.Hour).Add(time.Hour).Before(time.Now()) {
					closed[k] = c
				}
			}
			return diff(duckRows(t, duck, dir, tb.name, tb.col), closed)
		})
	}
	apptest.Eventually(t, "export lag back to 0", 30*time.Second, func() bool {
		v, err := exp.Metric("logtally_export_lag_seconds")
		return err == nil && v == 0
	})
	if busy < 3 {
		t.Fatalf("only %d of %d kills came after the process had written windows: the test did not kill it at work", busy, kills)
	}
	t.Logf("%d kills (%d after writes); %d rows of logtally_ip_counts exact", kills, busy, len(ref.flat("logtally_ip_counts")))
}

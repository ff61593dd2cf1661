package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/app"
)

// TestLeastPrivilegePermissions runs every stage with its own user from the
// shipped sample deploy/nats/permissions.conf: the pipeline must stay exact,
// and a stage must not be able to write another stage's data.
func TestLeastPrivilegePermissions(t *testing.T) {
	opts, err := server.ProcessConfigFile("../../deploy/nats/permissions.conf")
	if err != nil {
		t.Fatalf("sample permissions: %v", err)
	}
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(srv.Shutdown)
	url := "-nats.url=" + srv.ClientURL()
	as := func(user string) []string {
		return []string{url, "-nats.user=" + user, "-nats.password=" + user + "-sample-password"}
	}
	front := startApp(t, "ingest", newConfig(t, append(as("ingest"), "-target=ingest")...))
	startApp(t, "parser", newConfig(t, append(as("parser"), "-target=parser")...))
	startApp(t, "aggregator", newConfig(t, append(as("aggregator"), "-target=aggregator")...))
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte("rules:\n  - {name: flood, key: ip, range: 5m, threshold: 1000, ban: 10m, class: requests}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startApp(t, "detector", newConfig(t, append(as("detector"), "-target=detector", "-rules.file="+rules, "-detector.interval=200ms")...))
	q := startApp(t, "query", newConfig(t, append(as("query"), "-target=query", "-http.addr=127.0.0.1:0", "-rules.file="+rules)...))

	w := newWorkload(t, 20000, 7)
	sendTCP(t, front.Ingest.TCPAddr(), w.tcpWithMalformed())
	c := newClient(t, q)
	ref := w.tcpRef
	c.waitTotals(t, w.from, w.to, ref.total, uint64(len(w.malformed)), 2*time.Minute)
	verify(t, c, ref, w.from, w.to, uint64(len(w.malformed)))

	// The export stage, as its own user, reads every counts bucket and the
	// names: the closed hours of the workload become Parquet files of both
	// tables at both resolutions, with no failed write and no unknown name.
	// A path longer than 14 bytes is hashed: its text is read from the names bucket.
	at := w.from.Add(5 * time.Minute).UTC().Format("02/Jan/2006:15:04:05 -0700")
	sendTCP(t, front.Ingest.TCPAddr(), [][]byte{[]byte("198.51.100.200 - - [" + at + "] \"GET /a/path/longer/than/fourteen/bytes HTTP/1.1\" 200 10 \"-\" \"e2e\"")})
	c.waitTotals(t, w.from, w.to, ref.total+1, uint64(len(w.malformed)), time.Minute)
	parquet := t.TempDir()
	exp := startApp(t, "export", newConfig(t, append(as("export"), "-target=export", "-export.parquet.dir="+parquet,
		"-export.parquet.close-after=0s", "-export.interval=200ms")...))
	waitParquet(t, exp, parquet, 2*time.Minute)

	// The detector, as its own user, bans a flood of now; query serves it.
	flood := make([][]byte, 1500)
	ts := time.Now().UTC().Format("02/Jan/2006:15:04:05 -0700")
	for i := range flood {
		flood[i] = []byte("203.0.113.250 - - [" + ts + "] \"GET / HTTP/1.1\" 200 1")
	}
	sendTCP(t, front.Ingest.TCPAddr(), flood)
	deadline := time.Now().Add(time.Minute)
	for {
		var ds struct{ Items []struct{ Key, Rule string } }
		c.getJSON(t, "/api/v1/decisions", &ds)
		if len(ds.Items) == 1 && ds.Items[0].Key == "203.0.113.250/32" && ds.Items[0].Rule == "flood" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no decision for the flood: %+v", ds.Items)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Ingest may not forge parsed records, query may not write counts.
	denied := func(user, subject string) {
		t.Helper()
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, user+"-sample-password"))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = js.Publish(ctx, subject, []byte("x"))
		if err == nil {
			t.Fatalf("%s could publish to %s", user, subject)
		}
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrPermissionViolation) {
			t.Logf("%s → %s refused: %v", user, subject, err)
		}
	}
	denied("ingest", "logs.parsed.0")
	denied("query", "$KV.logtally_counts_1m.1.0")
	denied("parser", "$KV.logtally_state.cp.0")
	denied("detector", "$KV.logtally_counts_1m.1.0")
	denied("ingest", "$KV.logtally_decisions.d.flood.203_0_113_1")
	denied("export", "$KV.logtally_counts_1m.1.0")
	denied("export", "$KV.logtally_names.x")
}

// waitParquet waits until dir holds Parquet files of every table and
// resolution, and checks the export stage's failure and unknown-name counters.
func waitParquet(t *testing.T, a *app.App, dir string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		tables, _ := os.ReadDir(dir)
		for _, res := range []string{"1m", "1h"} {
			for _, tb := range tables {
				files, _ := filepath.Glob(filepath.Join(dir, tb.Name(), res, "*.parquet"))
				if len(files) == 0 {
					missing = append(missing, tb.Name()+"/"+res)
				}
			}
		}
		// Caught up: every change taken is written.
		if len(tables) >= 2 && len(missing) == 0 && gauge(t, a, "logtally_export_lag_seconds") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("export: no Parquet files of %v (tables %d) within %s", missing, len(tables), timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "logtally_export_failures_total", "logtally_export_unknown_names_total":
			for _, m := range mf.GetMetric() {
				if v := m.GetCounter().GetValue(); v != 0 {
					t.Errorf("export: %s = %v", mf.GetName(), v)
				}
			}
		}
	}
}

// gauge sums the values of a gauge of an app's registry (-1 when absent).
func gauge(t *testing.T, a *app.App, name string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetGauge().GetValue()
			}
			return sum
		}
	}
	return -1
}

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
}

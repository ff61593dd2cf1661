package aggregator

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logtally/logtally/internal/natstest"
)

// TestFlushRetriesKeepState makes every window write fail for a while (the
// 1m bucket's stream refuses messages of more than 16 bytes) and checks that
// the partitions keep their state and retry instead of restarting from the
// checkpoint, and that the counts are exact once writes succeed again.
func TestFlushRetriesKeepState(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	topo := testTopology()
	js := setup(t, srv, topo)
	inst := startInstance(t, srv.ClientURL(), "a1", topo)
	waitOwned(t, inst, topo.Partitions)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := "KV_" + topo.Resolutions[0].Bucket()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	orig := cfg.MaxMsgSize
	cfg.MaxMsgSize = 16
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("shrink max message size: %v", err)
	}

	rng := rand.New(rand.NewPCG(5, 6))
	base := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	events := genEvents(rng, 5000, base, 10*time.Minute, 500)
	ref := reference{}
	for _, e := range events {
		ref.add(topo.Resolutions, e)
	}
	pub := &publisher{js: js, n: topo.Partitions}
	pub.publish(t, events, 1)

	// Wait until flushes have failed and been retried for a while.
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(inst.svc.m.flushRetries) < float64(3*topo.Partitions) {
		if time.Now().After(deadline) {
			t.Fatalf("only %v flush retries", testutil.ToFloat64(inst.svc.m.flushRetries))
		}
		time.Sleep(50 * time.Millisecond)
	}
	cfg.MaxMsgSize = orig
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("restore max message size: %v", err)
	}
	waitExact(t, js, topo.Resolutions, ref, pub.dead)
	if n := testutil.ToFloat64(inst.svc.m.restarts); n != 0 {
		t.Errorf("%v partition sessions restarted; transient flush failures should be retried in place", n)
	}
	if n := testutil.ToFloat64(inst.svc.m.fenced); n != 0 {
		t.Errorf("%v flushes fenced", n)
	}
}

func waitOwned(t *testing.T, inst *instance, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(inst.svc.Owned()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("owns %d of %d partitions", len(inst.svc.Owned()), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

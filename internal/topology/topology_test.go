package topology

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/natstest"
)

func TestEnsureIsIdempotentAndKeepsPartitions(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := Defaults()
	cfg.Partitions = 8
	p, err := Ensure(ctx, js, cfg)
	if err != nil || p != 8 {
		t.Fatalf("first Ensure: %d %v", p, err)
	}
	// A later process with another -parser.partitions adopts the stored P.
	cfg.Partitions = 64
	if p, err = Ensure(ctx, js, cfg); err != nil || p != 8 {
		t.Fatalf("second Ensure: %d %v, want the stored 8", p, err)
	}
	for _, name := range []string{RawStream, ParsedStream, DeadStream} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Errorf("stream %s: %v", name, err)
		}
	}
	raw, _ := js.Stream(ctx, RawStream)
	if raw.CachedInfo().Config.Retention != jetstream.WorkQueuePolicy {
		t.Errorf("raw stream retention %v", raw.CachedInfo().Config.Retention)
	}
	for _, b := range []string{StateBucket, MembersBucket, "logtally_counts_1m", "logtally_counts_1h"} {
		kv, err := js.KeyValue(ctx, b)
		if err != nil {
			t.Fatalf("bucket %s: %v", b, err)
		}
		st, _ := kv.Status(ctx)
		if b == "logtally_counts_1m" && st.TTL() != 48*time.Hour {
			t.Errorf("1m retention %s", st.TTL())
		}
	}
	cfg.Partitions = 0
	if _, err := Ensure(ctx, js, cfg); err == nil {
		t.Fatal("0 partitions accepted")
	}
}

package ingest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/topology"
)

// TestRawBacklogBoundPushesBack fills the raw stream up to its byte bound
// (no parser runs): the stream refuses new batches, ingest keeps retrying
// them and stops reading, so the TCP sender blocks. Once a consumer drains
// the stream every line arrives exactly once.
func TestRawBacklogBoundPushesBack(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.BatchMaxBytes = 64 << 10
		c.MaxLineBytes = 4096
		c.PublishMaxInFlight = 2
		c.PublishAckTimeout = time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := e.conn.JS.Stream(ctx, topology.RawStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config; got.Discard != jetstream.DiscardNew || got.MaxBytes != topology.Defaults().RawMaxBytes {
		t.Fatalf("raw stream: discard %v, max bytes %d; want DiscardNew and the default bound", got.Discard, got.MaxBytes)
	}
	const bound = 512 << 10
	cfg := st.CachedInfo().Config
	cfg.MaxBytes = bound
	if _, err := e.conn.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	const n = 300_000 // about 24 MB: far more than socket buffers hold
	var written atomic.Int64
	done := make(chan error, 1)
	conn := dial(t, "tcp", e.svc.TCPAddr())
	go func() {
		var buf []byte
		for i := 0; i < n; i += 1000 {
			buf = buf[:0]
			for j := i; j < i+1000; j++ {
				buf = fmt.Appendf(buf, "bound-%07d 198.51.100.9 - - \"GET /x HTTP/1.1\" 200 1\n", j)
			}
			if _, err := conn.Write(buf); err != nil {
				done <- err
				return
			}
			written.Store(int64(i + 1000))
		}
		done <- nil
	}()

	// The sender must stall with the stream full.
	var last int64 = -1
	stillSince := time.Now()
	for {
		select {
		case err := <-done:
			t.Fatalf("the sender wrote all %d lines (err %v) into a stream bounded at %d bytes: no backpressure", n, err, bound)
		case <-time.After(100 * time.Millisecond):
		}
		if w := written.Load(); w != last {
			last, stillSince = w, time.Now()
			continue
		}
		if time.Since(stillSince) > 2*time.Second {
			break
		}
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Bytes > bound {
		t.Fatalf("raw stream holds %d bytes, bound %d", info.State.Bytes, bound)
	}
	t.Logf("sender stalled after %d of %d lines; raw stream %d bytes in %d batches", last, n, info.State.Bytes, info.State.Msgs)

	// Drain like a parser would and check every line arrives once.
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "drain", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]int, n)
	for len(seen) < n {
		batch, err := cons.Fetch(64, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			b, err := decodeRawMsg(m.Headers(), m.Data())
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range b.Lines {
				seen[string(l[:13])]++
			}
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("only %d of %d lines arrived", len(seen), n)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("line %s stored %d times", k, c)
		}
	}
}

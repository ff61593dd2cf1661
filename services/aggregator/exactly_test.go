package aggregator

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/natstest"
	"github.com/logtally/logtally/internal/topology"
)

// Two instances with distinct ids both run every partition at the same
// time (no leases): only the compare-and-swap of every manifest and
// checkpoint keeps the counts exact, and the test sees that it did fence.
func TestDistinctOwnersSideBySideAreFenced(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	topo := testTopology()
	js := setup(t, srv, topo)
	rng := rand.New(rand.NewPCG(21, 22))
	events := genEvents(rng, 40000, time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC), 30*time.Minute, 3000)
	ref := reference{}
	for _, e := range events {
		ref.add(topo.Resolutions, e)
	}
	ownAll := func(s *Service) { s.knobs.ownAll = true }
	a := startInstanceWith(t, srv.ClientURL(), "side-a", topo, ownAll)
	b := startInstanceWith(t, srv.ClientURL(), "side-b", topo, ownAll)
	waitOwned(t, a, topo.Partitions)
	waitOwned(t, b, topo.Partitions)
	pub := &publisher{js: js, n: topo.Partitions}
	pub.publish(t, events, 1)
	waitExact(t, js, topo.Resolutions, ref, pub.dead)
	fenced := testutil.ToFloat64(a.svc.m.fenced) + testutil.ToFloat64(b.svc.m.fenced)
	if fenced == 0 {
		t.Fatal("two owners of every partition wrote side by side and no write was fenced: the test did not exercise the fencing")
	}
	t.Logf("%v flushes fenced", fenced)
}

// A crash after the windows of a flush are committed and before its
// checkpoint: the next session replays from the old checkpoint, skips what
// the windows already hold, and the counts stay exact.
func TestCrashBetweenWindowsAndCheckpoint(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	topo := testTopology()
	js := setup(t, srv, topo)
	var crashes atomic.Int64
	inst := startInstanceWith(t, srv.ClientURL(), "crashy", topo, func(s *Service) {
		s.knobs.beforeCheckpoint = func(p int) error {
			if crashes.Load() < 20 && rand.IntN(3) == 0 {
				crashes.Add(1)
				return errInjectedCrash
			}
			return nil
		}
	})
	rng := rand.New(rand.NewPCG(23, 24))
	events := genEvents(rng, 30000, time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC), 20*time.Minute, 2000)
	ref := reference{}
	for _, e := range events {
		ref.add(topo.Resolutions, e)
	}
	pub := &publisher{js: js, n: topo.Partitions}
	for i := 0; i < len(events); i += 3000 {
		pub.publish(t, events[i:min(i+3000, len(events))], 1)
		time.Sleep(50 * time.Millisecond)
	}
	waitExact(t, js, topo.Resolutions, ref, pub.dead)
	if crashes.Load() == 0 {
		t.Fatal("no crash was injected")
	}
	if n := testutil.ToFloat64(inst.svc.m.skipped); n == 0 {
		t.Fatalf("%d crashes between window writes and checkpoint, but no replayed record was skipped: the path was not exercised", crashes.Load())
	}
	t.Logf("%d injected crashes, %v replayed requests skipped", crashes.Load(), testutil.ToFloat64(inst.svc.m.skipped))
}

// A parser that crashed half way through a raw batch and came back after
// JetStream's duplicate window republishes its record batches under message
// IDs the stream no longer remembers. The aggregator recognises them by raw
// sequence, however late they come, also after a restart from the
// checkpoint.
func TestRepublishedBatchesCountOnce(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	topo := testTopology()
	js := setup(t, srv, topo)
	inst := startInstance(t, srv.ClientURL(), "d1", topo)
	rng := rand.New(rand.NewPCG(25, 26))
	events := genEvents(rng, 4000, time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC), 10*time.Minute, 300)
	ref := reference{}
	for _, e := range events {
		ref.add(topo.Resolutions, e)
	}
	pub := &publisher{js: js, n: topo.Partitions}
	pub.publish(t, events, 1)
	waitExact(t, js, topo.Resolutions, ref, pub.dead)

	// The same raw batches again with fresh message IDs (past the dedup
	// window), before and after a restart of the aggregator.
	republish := func(suffix string) {
		ctx := context.Background()
		for i := 0; i < len(events); i += 200 {
			raw := uint64(i/200 + 1)
			for part, data := range encodeBatches(t, topo.Partitions, raw, events[i:min(i+200, len(events))], events[i].ms, 1) {
				id := "again-" + suffix + "-r" + strconv.FormatUint(raw, 10) + ".p" + strconv.Itoa(part)
				if _, err := js.Publish(ctx, topology.ParsedSubject(part), data, jetstream.WithMsgID(id)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	republish("1")
	waitMetric(t, func() float64 { return testutil.ToFloat64(inst.svc.m.dupBatches) }, float64(len(events)/200*topo.Partitions))
	inst.stop(t)
	inst = startInstance(t, srv.ClientURL(), "d2", topo)
	republish("2")
	waitMetric(t, func() float64 { return testutil.ToFloat64(inst.svc.m.dupBatches) }, float64(len(events)/200*topo.Partitions))
	waitExact(t, js, topo.Resolutions, ref, pub.dead)
}

func waitMetric(t *testing.T, get func() float64, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for get() < want {
		if time.Now().After(deadline) {
			t.Fatalf("metric at %v, want %v", get(), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := get(); got != want {
		t.Fatalf("metric at %v, want exactly %v", got, want)
	}
}

// Raw batches acknowledged by the parser whose record batches never reach
// a partition (gone by retention before the aggregator read them) are
// reported per partition, once, and the partition goes on.
func TestLostBatchesAreReported(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	topo := testTopology()
	js := setup(t, srv, topo)
	ctx := context.Background()
	// Five raw batches, all taken and acknowledged by "a parser".
	for i := range 5 {
		if _, err := js.Publish(ctx, topology.RawPrefix+"test", []byte("raw "+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, topology.RawStream, jetstream.ConsumerConfig{Durable: "fake-parser", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := cons.Fetch(5)
	if err != nil {
		t.Fatal(err)
	}
	for m := range msgs.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Only raw batches 1, 2 and 4 arrive; 3 and 5 were lost.
	a := netip.MustParseAddr("203.0.113.9")
	one := counts.Counters{Requests: 1}
	ms := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC).UnixMilli()
	pub := &publisher{js: js, n: topo.Partitions}
	ref := reference{}
	for _, raw := range []uint64{1, 2, 4} {
		e := event{a, ms, one}
		pub.publishRaw(t, raw, []event{e}, ms, 0)
		ref.add(topo.Resolutions, e)
	}
	inst := startInstance(t, srv.ClientURL(), "gap", topo)
	waitExact(t, js, topo.Resolutions, ref, 0)
	// Another batch moves every partition past the parsed stream's end at
	// the time of the sample.
	time.Sleep(3 * testConfig().GapCheckInterval)
	e := event{a, ms, one}
	pub.publishRaw(t, 6, []event{e}, ms, 0)
	ref.add(topo.Resolutions, e)
	waitMetric(t, func() float64 { return testutil.ToFloat64(inst.svc.m.lostBatches) }, float64(2*topo.Partitions))
	waitExact(t, js, topo.Resolutions, ref, 0)
	// The checkpoint records them, so that a restart does not count them again.
	inst.stop(t)
	kv, _ := js.KeyValue(ctx, topology.StateBucket)
	for p := range topo.Partitions {
		e, err := kv.Get(ctx, checkpointKey(p))
		if err != nil {
			t.Fatal(err)
		}
		var cp logtallyv1.Checkpoint
		if err := proto.Unmarshal(e.Value(), &cp); err != nil {
			t.Fatal(err)
		}
		if cp.LostBatches != 2 {
			t.Fatalf("checkpoint of partition %d records %d lost batches, want 2", p, cp.LostBatches)
		}
	}
}

// Windows of hundreds of thousands of IPs on a server whose max_payload is
// 64 KiB, with two instances: every value fits, no flush fails, exact.
func TestLargeWindowsOnSmallPayload(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t, natstest.MaxPayload(64<<10))
	topo := testTopology()
	// Not a failover test: the default member TTL, so that a slow moment
	// under the race detector does not move partitions back and forth.
	topo.MemberTTL = topology.Defaults().MemberTTL
	js := setup(t, srv, topo)
	a := startInstance(t, srv.ClientURL(), "big-a", topo)
	b := startInstance(t, srv.ClientURL(), "big-b", topo)
	rng := rand.New(rand.NewPCG(27, 28))
	base := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	var events []event
	ref := reference{}
	n := 200000
	if raceEnabled {
		n = 60000 // still 7.5k IPs per partition's hour: several 32 KiB chunks
	}
	for i := range n {
		var addr netip.Addr
		if i%4 == 0 {
			addr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 8: byte(rng.Uint32()), 9: byte(rng.Uint32()), 14: byte(i >> 8), 15: byte(i)})
		} else {
			addr = netip.AddrFrom4([4]byte{byte(1 + i>>24), byte(i >> 16), byte(i >> 8), byte(i)})
		}
		e := event{addr: addr, ms: base.Add(time.Duration(rng.IntN(3600)) * time.Second).UnixMilli(), c: counts.Counters{Requests: 1, Bytes: uint64(i % 999)}}
		events = append(events, e)
		ref.add(topo.Resolutions, e)
	}
	pub := &publisher{js: js, n: topo.Partitions}
	start := time.Now()
	for i := 0; i < len(events); i += 20000 {
		pub.publish(t, events[i:min(i+20000, len(events))], 0)
	}
	t.Logf("published in %s", time.Since(start))
	timeout := time.Minute
	if raceEnabled {
		timeout = 4 * time.Minute // 400k (window, IP) entries through merges, ~5× slower
	}
	waitExactWithin(t, js, topo.Resolutions, ref, 0, timeout)
	t.Logf("exact after %s", time.Since(start))
	for _, in := range []*instance{a, b} {
		for _, k := range []string{"inline", "spill", "merge", "full"} {
			t.Logf("%s %s: %v", in.svc.id, k, testutil.ToFloat64(in.svc.m.windowWrites.WithLabelValues(k)))
		}
		t.Logf("%s chunk bytes %v read %v", in.svc.id, testutil.ToFloat64(in.svc.m.kvBytes.WithLabelValues("chunk")), testutil.ToFloat64(in.svc.m.readBytes))
	}
	for _, in := range []*instance{a, b} {
		if n := testutil.ToFloat64(in.svc.m.restarts) + testutil.ToFloat64(in.svc.m.flushRetries); n != 0 {
			t.Errorf("%s: %v failed flushes (restarts + retries)", in.svc.id, n)
		}
	}
	spills := testutil.ToFloat64(a.svc.m.windowWrites.WithLabelValues("spill")) + testutil.ToFloat64(b.svc.m.windowWrites.WithLabelValues("spill"))
	if spills == 0 {
		t.Fatal("no window spilled into runs: the chunked path was not exercised")
	}
}

// State written by the previous release — format 1 windows (one flat value,
// requests only), checkpoints without raw tracking and format 1 record
// batches still in the parsed stream — is read by this one and counting
// goes on exactly.
func TestUpgradeFromFormat1(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	topo := testTopology()
	js := setup(t, srv, topo)
	ctx := context.Background()
	base := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(29, 30))
	old := genEvents(rng, 3000, base, 5*time.Minute, 200)
	ref := reference{}
	// The old release counted old[:2000] already: format 1 windows and
	// checkpoints at the end of the parsed stream so far.
	oldWindows := map[string]map[string]map[[counts.AddrLen]byte]uint64{} // bucket → key → counts
	for _, e := range old[:2000] {
		one := event{e.addr, e.ms, counts.Counters{Requests: 1}}
		ref.add(topo.Resolutions, one)
		a := counts.Pack(e.addr)
		p := counts.Partition(a, topo.Partitions)
		for _, r := range topo.Resolutions {
			size := r.Size.Milliseconds()
			key := counts.Key(time.UnixMilli(floorDiv(e.ms, size)*size), p)
			if oldWindows[r.Bucket()] == nil {
				oldWindows[r.Bucket()] = map[string]map[[counts.AddrLen]byte]uint64{}
			}
			if oldWindows[r.Bucket()][key] == nil {
				oldWindows[r.Bucket()][key] = map[[counts.AddrLen]byte]uint64{}
			}
			oldWindows[r.Bucket()][key][a]++
		}
	}
	// Format 1 record batches of the old parser, for old[2000:], already in
	// the parsed stream when the upgrade happens; one message per partition
	// that had records only.
	oldSeq := map[int]uint64{}
	for i := 2000; i < 3000; i += 100 {
		per := map[int]*logtallyv1.RecordBatch{}
		raw := uint64(100 + i/100)
		for _, e := range old[i : i+100] {
			a := counts.Pack(e.addr)
			p := counts.Partition(a, topo.Partitions)
			if per[p] == nil {
				per[p] = &logtallyv1.RecordBatch{RawSeq: raw, ReceivedUnixMs: e.ms}
			}
			per[p].Addrs = append(per[p].Addrs, a[:]...)
			per[p].TimesMs = append(per[p].TimesMs, e.ms)
			ref.add(topo.Resolutions, event{e.addr, e.ms, counts.Counters{Requests: 1}})
		}
		for p, b := range per {
			data, _ := proto.Marshal(b)
			ack, err := js.Publish(ctx, topology.ParsedSubject(p), data)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := oldSeq[p]; !ok {
				oldSeq[p] = ack.Sequence - 1
			}
		}
	}
	for bucket, ws := range oldWindows {
		kv, _ := js.KeyValue(ctx, bucket)
		for key, cs := range ws {
			st := &logtallyv1.WindowState{}
			for a, c := range cs {
				st.Addrs = append(st.Addrs, a[:]...)
				st.Counts = append(st.Counts, c)
			}
			_, p, _ := counts.ParseKey(key)
			st.LastSeq = oldSeq[p]
			data, _ := proto.Marshal(st)
			if _, err := kv.Put(ctx, key, data); err != nil {
				t.Fatal(err)
			}
		}
	}
	state, _ := js.KeyValue(ctx, topology.StateBucket)
	for p := range topo.Partitions {
		data, _ := proto.Marshal(&logtallyv1.Checkpoint{Seq: oldSeq[p], Owner: "old-release"})
		if _, err := state.Put(ctx, checkpointKey(p), data); err != nil {
			t.Fatal(err)
		}
	}

	// The new release starts on it, then new format 2 batches arrive
	// (raw sequences after the old ones).
	inst := startInstance(t, srv.ClientURL(), "new", topo)
	fresh := genEvents(rng, 3000, base.Add(5*time.Minute), 5*time.Minute, 200)
	pub := &publisher{js: js, n: topo.Partitions, batch: 1000}
	pub.publish(t, fresh, 1)
	for _, e := range fresh {
		ref.add(topo.Resolutions, e)
	}
	waitExact(t, js, topo.Resolutions, ref, pub.dead)
	if n := testutil.ToFloat64(inst.svc.m.lostBatches); n != 0 {
		t.Fatalf("%v batches reported lost across the upgrade", n)
	}
	// Every window touched since is format 2 now (the hour of base; a few
	// old lines fell into the hour before).
	kv, _ := js.KeyValue(ctx, topo.Resolutions[1].Bucket())
	keys, _ := kv.ListKeysFiltered(ctx, "*.*")
	for key := range keys.Keys() {
		if start, _, _ := counts.ParseKey(key); start.Before(base) {
			continue
		}
		e, _ := kv.Get(ctx, key)
		m, err := counts.UnmarshalManifest(e.Value())
		if err != nil {
			t.Fatal(err)
		}
		if m.Format != counts.Format {
			t.Errorf("%s still format %d after new records", key, m.Format)
		}
	}
}

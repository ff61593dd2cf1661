package aggregator

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/natsconn"
	"github.com/logtally/logtally/internal/natstest"
	"github.com/logtally/logtally/internal/service"
	"github.com/logtally/logtally/internal/topology"
)

const testPartitions = 8

func testTopology() topology.Config {
	t := topology.Defaults()
	t.Partitions = testPartitions
	t.MemberTTL = 2 * time.Second
	return t
}

func testConfig() Config {
	return Config{
		FlushInterval: 100 * time.Millisecond, Heartbeat: 200 * time.Millisecond,
		PurgeEvery: 3, MaxOpenWindows: 64, MaxPendingEntries: 1 << 16, ChunkBytes: 256 << 10, GapCheckInterval: 200 * time.Millisecond,
	}
}

type instance struct {
	svc  *Service
	conn *natsconn.Conn
}

func startInstance(t *testing.T, url string, id string, topo topology.Config) *instance {
	t.Helper()
	return startInstanceWith(t, url, id, topo, nil)
}

// startInstanceWith starts an instance after set changed it (test knobs).
func startInstanceWith(t *testing.T, url string, id string, topo topology.Config, set func(*Service)) *instance {
	t.Helper()
	log := hclog.NewNullLogger()
	if os.Getenv("LOGTALLY_TEST_LOG") != "" {
		log = hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Debug})
	}
	conn, err := natsconn.Connect(natsconn.Config{URL: url, Replicas: topo.Replicas, Name: id}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(testConfig(), service.Deps{
		Log: log, NATS: conn, Registerer: prometheus.NewRegistry(), Topology: topo, InstanceID: id,
	})
	if err != nil {
		t.Fatal(err)
	}
	if set != nil {
		set(svc)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	inst := &instance{svc: svc, conn: conn}
	t.Cleanup(func() { inst.stop(t) })
	return inst
}

func (i *instance) stop(t *testing.T) {
	if i.conn.NC.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := i.svc.Stop(ctx); err != nil {
		t.Errorf("stop %s: %v", i.svc.id, err)
	}
	i.conn.Close()
}

// kill crashes the instance: no flush, no release, connection dropped.
func (i *instance) kill() {
	i.svc.Kill()
	i.conn.NC.Close()
}

// event is one line of the reference input, with its classes.
type event struct {
	addr netip.Addr
	ms   int64
	c    counts.Counters // Requests is 1
}

// reference counts events per (resolution, window start, ip): the oracle.
type reference map[string]map[int64]map[netip.Addr]counts.Counters

func (r reference) add(res []topology.Resolution, e event) {
	for _, rs := range res {
		size := rs.Size.Milliseconds()
		start := floorDiv(e.ms, size) * size / 1000
		if r[rs.Name] == nil {
			r[rs.Name] = map[int64]map[netip.Addr]counts.Counters{}
		}
		if r[rs.Name][start] == nil {
			r[rs.Name][start] = map[netip.Addr]counts.Counters{}
		}
		c := r[rs.Name][start][e.addr]
		c.Add(e.c)
		r[rs.Name][start][e.addr] = c
	}
}

// stored reads every window of every bucket back, as a new reader would:
// each manifest, then its runs chunk by chunk.
func stored(t *testing.T, js jetstream.JetStream, res []topology.Resolution) (reference, uint64, uint64) {
	t.Helper()
	ctx := context.Background()
	out := reference{}
	var dead, late uint64
	for _, rs := range res {
		kv, err := js.KeyValue(ctx, rs.Bucket())
		if err != nil {
			t.Fatal(err)
		}
		st, err := counts.NewStore(ctx, js, rs.Bucket(), counts.DefaultLayout(0, rs.Retention))
		if err != nil {
			t.Fatal(err)
		}
		lister, err := kv.ListKeysFiltered(ctx, "*.*")
		if err != nil {
			t.Fatal(err)
		}
		for key := range lister.Keys() {
			start, _, err := counts.ParseKey(key)
			if err != nil {
				t.Fatal(err)
			}
			m, _, err := st.Load(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if m == nil {
				continue
			}
			entries, err := st.ReadAll(ctx, key, m)
			if err != nil {
				t.Fatal(err)
			}
			if rs.Name == res[0].Name {
				dead += m.DeadLetters
				late += m.Late
			}
			var sum counts.Counters
			for _, e := range entries {
				if out[rs.Name] == nil {
					out[rs.Name] = map[int64]map[netip.Addr]counts.Counters{}
				}
				if out[rs.Name][start.Unix()] == nil {
					out[rs.Name][start.Unix()] = map[netip.Addr]counts.Counters{}
				}
				c := out[rs.Name][start.Unix()][counts.Unpack(e.Addr)]
				c.Add(e.Counters)
				out[rs.Name][start.Unix()][counts.Unpack(e.Addr)] = c
				sum.Add(e.Counters)
			}
			if sum != m.Totals {
				t.Fatalf("%s/%s: totals %+v, entries add up to %+v", rs.Bucket(), key, m.Totals, sum)
			}
		}
	}
	return out, dead, late
}

func diff(want, got reference) string {
	var problems []string
	for res, ws := range want {
		for start, ips := range ws {
			for ip, c := range ips {
				if g := got[res][start][ip]; g != c {
					problems = append(problems, fmt.Sprintf("%s window %d ip %s: want %+v got %+v", res, start, ip, c, g))
				}
			}
		}
	}
	for res, ws := range got {
		for start, ips := range ws {
			for ip, c := range ips {
				if _, ok := want[res][start][ip]; !ok {
					problems = append(problems, fmt.Sprintf("%s window %d ip %s: unexpected %+v", res, start, ip, c))
				}
			}
		}
	}
	sort.Strings(problems)
	if len(problems) > 10 {
		problems = append(problems[:10], fmt.Sprintf("... and %d more", len(problems)-10))
	}
	if len(problems) == 0 {
		return ""
	}
	return fmt.Sprint(problems)
}

// publisher plays the parser: for every "raw batch" of 200 events, one
// format 2 record batch per partition (empty ones too), grouped per
// (minute, IP).
type publisher struct {
	js    jetstream.JetStream
	n     int
	batch int
	dead  uint64
}

func (p *publisher) publish(t *testing.T, events []event, deadPerBatch uint64) {
	t.Helper()
	for i := 0; i < len(events); i += 200 {
		end := min(i+200, len(events))
		p.batch++
		p.publishRaw(t, uint64(p.batch), events[i:end], events[i].ms, deadPerBatch)
	}
}

type groupKey struct {
	minute int64
	addr   [counts.AddrLen]byte
}

// encodeBatches groups events per partition as the parser does.
func encodeBatches(t testing.TB, n int, rawSeq uint64, events []event, receivedMS int64, dead uint64) [][]byte {
	groups := make([]map[groupKey]counts.Counters, n)
	for _, e := range events {
		a := counts.Pack(e.addr)
		part := counts.Partition(a, n)
		if groups[part] == nil {
			groups[part] = map[groupKey]counts.Counters{}
		}
		k := groupKey{floorDiv(e.ms, 60_000), a}
		c := groups[part][k]
		c.Add(e.c)
		groups[part][k] = c
	}
	out := make([][]byte, n)
	for part := range n {
		b := &logtallyv1.RecordBatch{Format: 2, RawSeq: rawSeq, ReceivedUnixMs: receivedMS}
		keys := make([]groupKey, 0, len(groups[part]))
		for k := range groups[part] {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i].minute != keys[j].minute {
				return keys[i].minute < keys[j].minute
			}
			return counts.CompareAddr(&keys[i].addr, &keys[j].addr) < 0
		})
		for _, k := range keys {
			c := groups[part][k]
			b.Minutes = append(b.Minutes, k.minute)
			b.GroupAddrs = append(b.GroupAddrs, k.addr[:]...)
			b.Requests = append(b.Requests, c.Requests)
			b.Status_4Xx = append(b.Status_4Xx, c.Status4xx)
			b.Status_5Xx = append(b.Status_5Xx, c.Status5xx)
			b.AuthFailures = append(b.AuthFailures, c.AuthFailures)
			b.BytesSent = append(b.BytesSent, c.Bytes)
		}
		if dead > 0 && uint64(part) == rawSeq%uint64(n) {
			b.DeadLetters = dead
		}
		data, err := proto.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		out[part] = data
	}
	return out
}

func (p *publisher) publishRaw(t *testing.T, rawSeq uint64, events []event, receivedMS int64, dead uint64) {
	t.Helper()
	ctx := context.Background()
	p.dead += dead
	for part, data := range encodeBatches(t, p.n, rawSeq, events, receivedMS, dead) {
		id := "r" + strconv.FormatUint(rawSeq, 10) + ".p" + strconv.Itoa(part)
		if _, err := p.js.Publish(ctx, topology.ParsedSubject(part), data, jetstream.WithMsgID(id)); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
}

func genEvents(rng *rand.Rand, n int, base time.Time, span time.Duration, ips int) []event {
	zipf := rand.NewZipf(rng, 1.2, 1, uint64(ips-1))
	out := make([]event, n)
	for i := range out {
		k := zipf.Uint64()
		var a netip.Addr
		if k%7 == 0 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(k >> 8), 15: byte(k)})
		} else {
			a = netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)})
		}
		// Mostly in order, with some disorder as real logs have.
		off := time.Duration(float64(span) * float64(i) / float64(n))
		off += time.Duration(rng.IntN(90)-60) * time.Second
		c := counts.Counters{Requests: 1, Bytes: k * 7 % 5000}
		switch k % 10 {
		case 3:
			c.Status4xx = 1
		case 5:
			c.Status5xx = 1
		case 7:
			c.Status4xx, c.AuthFailures = 1, 1 // a 401
		}
		out[i] = event{addr: a, ms: base.Add(off).UnixMilli(), c: c}
	}
	return out
}

func waitExact(t *testing.T, js jetstream.JetStream, res []topology.Resolution, want reference, wantDead uint64) {
	t.Helper()
	waitExactWithin(t, js, res, want, wantDead, 60*time.Second)
}

func waitExactWithin(t *testing.T, js jetstream.JetStream, res []topology.Resolution, want reference, wantDead uint64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		got, dead, late := stored(t, js, res)
		last = diff(want, got)
		if last == "" && dead == wantDead && late == 0 {
			return
		}
		if last == "" {
			last = fmt.Sprintf("dead letters want %d got %d; late %d", wantDead, dead, late)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("counts never matched the reference: %s", last)
}

func setup(t *testing.T, srv *server.Server, topo topology.Config) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := topology.Ensure(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	return js
}

func TestCountsMatchReference(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	topo := testTopology()
	js := setup(t, srv, topo)
	startInstance(t, srv.ClientURL(), "a1", topo)

	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 11, 24, 9, 50, 0, 0, time.UTC)
	events := genEvents(rng, 20000, base, 25*time.Minute, 2000)
	ref := reference{}
	for _, e := range events {
		ref.add(topo.Resolutions, e)
	}
	pub := &publisher{js: js, n: topo.Partitions}
	pub.publish(t, events, 1)
	waitExact(t, js, topo.Resolutions, ref, pub.dead)
}

func TestExactlyOnceAcrossKillsAndScaling(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	topo := testTopology()
	js := setup(t, srv, topo)
	url := srv.ClientURL()

	rng := rand.New(rand.NewPCG(3, 4))
	base := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	events := genEvents(rng, 60000, base, 40*time.Minute, 5000)
	ref := reference{}
	for _, e := range events {
		ref.add(topo.Resolutions, e)
	}
	pub := &publisher{js: js, n: topo.Partitions}

	insts := []*instance{startInstance(t, url, "a1", topo)}
	var wg sync.WaitGroup
	wg.Add(1)
	chunks := 12
	step := len(events) / chunks
	progress := make(chan int, chunks)
	go func() {
		defer wg.Done()
		for c := 0; c < chunks; c++ {
			pub.publish(t, events[c*step:min((c+1)*step, len(events))], 2)
			progress <- c
			time.Sleep(150 * time.Millisecond)
		}
		close(progress)
	}()
	n := 1
	for c := range progress {
		switch c {
		case 1, 2: // scale 1 → 3
			n++
			insts = append(insts, startInstance(t, url, "a"+strconv.Itoa(n), topo))
		case 4: // crash one without flushing
			insts[1].kill()
			insts = append(insts[:1], insts[2:]...)
		case 6: // graceful leave
			insts[0].stop(t)
			insts = insts[1:]
		case 7: // a replacement joins
			n++
			insts = append(insts, startInstance(t, url, "a"+strconv.Itoa(n), topo))
		case 9: // crash again
			insts[0].kill()
			insts = insts[1:]
		}
	}
	wg.Wait()
	waitExact(t, js, topo.Resolutions, ref, pub.dead)
	if len(insts) != 1 {
		t.Fatalf("expected one survivor, have %d", len(insts))
	}
	if got := len(insts[0].svc.Owned()); got != topo.Partitions {
		t.Fatalf("survivor owns %d of %d partitions", got, topo.Partitions)
	}
}

func TestBalancedOwnership(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	topo := testTopology()
	setup(t, srv, topo)
	var insts []*instance
	for i := 0; i < 3; i++ {
		insts = append(insts, startInstance(t, srv.ClientURL(), "b"+strconv.Itoa(i), topo))
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var owned []int
		total := 0
		for _, in := range insts {
			owned = append(owned, len(in.svc.Owned()))
			total += len(in.svc.Owned())
		}
		balanced := total == topo.Partitions
		for _, o := range owned {
			if o < topo.Partitions/3 || o > (topo.Partitions+2)/3 {
				balanced = false
			}
		}
		if balanced {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ownership not balanced: %v", owned)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Records are never refused for their age: logs of different eras, in
// either order, a far-future record before an old one, and timestamps
// spread over twenty years (more windows than a partition may keep open)
// all count exactly in their own windows, with nothing late.
func TestAnyOrderAcrossEras(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	topo := testTopology()
	js := setup(t, srv, topo)
	inst := startInstance(t, srv.ClientURL(), "l1", topo)

	rng := rand.New(rand.NewPCG(7, 9))
	live := genEvents(rng, 2000, time.Now().Add(-10*time.Minute), 10*time.Minute, 300)
	y2015 := genEvents(rng, 2000, time.Date(2015, 5, 17, 10, 0, 0, 0, time.UTC), 72*time.Hour, 300)
	y2025 := genEvents(rng, 2000, time.Date(2025, 3, 27, 0, 0, 0, 0, time.UTC), 24*24*time.Hour, 100)
	// One record per random minute over 20 years: each its own 1m window.
	var scattered []event
	from := time.Date(2006, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 3000 {
		ms := from.Add(time.Duration(rng.Int64N(int64(20 * 365 * 24 * time.Hour)))).UnixMilli()
		scattered = append(scattered, event{addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(rng.IntN(256))}), ms: ms, c: counts.Counters{Requests: 1}})
	}
	ref := reference{}
	pub := &publisher{js: js, n: topo.Partitions}
	for _, evs := range [][]event{y2025, live, y2015, scattered, y2025[:500], live[:700]} {
		pub.publish(t, evs, 0)
		for _, e := range evs {
			ref.add(topo.Resolutions, e)
		}
	}
	waitExactWithin(t, js, topo.Resolutions, ref, 0, time.Minute)
	if _, _, late := stored(t, js, topo.Resolutions); late != 0 {
		t.Fatalf("late = %d, want 0", late)
	}
	// The scattered minutes made partitions flush early and evict: what
	// stays open is bounded by the flag, per partition.
	if got := testutil.ToFloat64(inst.svc.m.earlyFlushes); got == 0 {
		t.Fatal("no early flush although batches touched more windows than max-open-windows")
	}
	max := float64(testConfig().MaxOpenWindows * topo.Partitions)
	if got := testutil.ToFloat64(inst.svc.m.openWindows); got > max {
		t.Fatalf("%v windows open, want at most %v", got, max)
	}
}

func TestClusterR3(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := natstest.RunJetStreamCluster(t)
	topo := testTopology()
	topo.Replicas = 3
	js := setup(t, c.Servers[0], topo)
	startInstance(t, c.URLs(), "c1", topo)
	startInstance(t, c.URLs(), "c2", topo)

	rng := rand.New(rand.NewPCG(5, 6))
	events := genEvents(rng, 10000, time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC), 10*time.Minute, 1000)
	ref := reference{}
	for _, e := range events {
		ref.add(topo.Resolutions, e)
	}
	pub := &publisher{js: js, n: topo.Partitions}
	pub.publish(t, events, 1)
	waitExact(t, js, topo.Resolutions, ref, pub.dead)
}

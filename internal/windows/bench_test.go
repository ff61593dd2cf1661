package windows

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/topology"
)

// The benchmarks read one fixture, written once per process by
// counts.Store into an embedded server with the stock 1 MiB max_payload:
//
//   - the hour 10:00–11:00 as 32 1h windows (one per partition);
//   - the hour 13:30–14:30 as 60 × 32 1m windows, each IP in one minute;
//
// both with LOGTALLY_BENCH_IPS distinct IPs (default 10M, 2/3 IPv4) of 1–3
// requests (0–3 of them 4xx) and 20 heavy hitters with thousands of
// requests and no 4xx. Ranking by 4xx is therefore the flat worst case:
// no heavy hitters, ties everywhere.
//
//	go test -run='^$' -bench=. -benchtime=200x ./internal/windows/

var (
	hourStart = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	lastStart = time.Date(2026, 11, 24, 13, 30, 0, 0, time.UTC)
)

const benchHeavy = 20

type benchFixture struct {
	dir string
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	n   int
	// reference answers, from the generated input
	want map[string][]IPCount
}

var (
	fixOnce sync.Once
	fix     *benchFixture
	fixErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fix != nil {
		fix.nc.Close()
		fix.srv.Shutdown()
		fix.srv.WaitForShutdown()
		os.RemoveAll(fix.dir)
	}
	os.Exit(code)
}

func benchIPs() int {
	if v := os.Getenv("LOGTALLY_BENCH_IPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err == nil && n > 0 {
			return n
		}
	}
	return 10_000_000
}

// light is one generated IP: its minute in the hour and its counters.
type light struct {
	addr   [16]byte
	minute uint8
	req    uint8
	c4xx   uint8
	bytes  uint32
}

func (l *light) counters() counts.Counters {
	return counts.Counters{Requests: uint64(l.req), Status4xx: uint64(l.c4xx), Bytes: uint64(l.bytes)}
}

// benchAddr is the i-th generated address: distinct for distinct i.
func benchAddr(i int) [16]byte {
	x := uint64(i)*0x9E3779B97F4A7C15 + 0x1234567
	if i%3 != 2 {
		// IPv4: a bijection of the 32-bit index, kept away from
		// 198.18.0.0/15 where the heavy hitters are.
		v := uint32(i/3*2+i%3)*2654435761 ^ 0x5bd1e995
		a := [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
		if a[0] == 198 && a[1]&0xfe == 18 {
			a[0] = 199
		}
		return counts.Pack(netip.AddrFrom4(a))
	}
	var b [16]byte
	b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
	for k := 0; k < 8; k++ {
		b[8+k] = byte(x >> (8 * k))
	}
	b[4], b[5] = byte(i>>40), byte(i>>32)
	b[6], b[7] = byte(i>>24), byte(i>>16)
	return b
}

func heavyAddr(h int) [16]byte {
	if h%2 == 0 {
		return counts.Pack(netip.AddrFrom4([4]byte{198, 18, 0, byte(h)}))
	}
	return counts.Pack(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb9, 15: byte(h)}))
}

// heavyPerMinute is heavy hitter h's requests in one minute.
func heavyPerMinute(h, minute int) uint64 { return uint64(30 + 2*h + (h*7+minute*13)%11) }

func fixture(b *testing.B) *benchFixture {
	fixOnce.Do(func() { fix, fixErr = buildFixture(benchIPs()) })
	if fixErr != nil {
		b.Fatal(fixErr)
	}
	return fix
}

func buildFixture(n int) (*benchFixture, error) {
	t0 := time.Now()
	dir, err := os.MkdirTemp("", "logtally-windows-bench-")
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "bench", Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
		NoSigs: true, NoLog: true, MaxPayload: 1 << 20, JetStreamMaxMemory: 256 << 20, JetStreamMaxStore: 64 << 30,
	})
	if err != nil {
		return nil, err
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		return nil, fmt.Errorf("nats server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	f := &benchFixture{dir: dir, srv: srv, nc: nc, js: js, n: n, want: map[string][]IPCount{}}
	ctx := context.Background()
	topo := topology.Defaults()
	if _, err := topology.Ensure(ctx, js, topo); err != nil {
		return nil, err
	}
	const parts = 32
	rng := rand.New(rand.NewPCG(5, 8))
	byPart := make([][]light, parts)
	for i := range n {
		l := light{addr: benchAddr(i), minute: uint8(rng.IntN(60)), req: uint8(1 + rng.IntN(3))}
		l.c4xx = uint8(rng.IntN(int(l.req) + 1))
		if rng.IntN(3) != 0 {
			l.c4xx = 0
		}
		l.bytes = uint32(l.req) * uint32(200+rng.IntN(3000))
		p := counts.Partition(l.addr, parts)
		byPart[p] = append(byPart[p], l)
	}
	heavyTotal := make([]counts.Counters, benchHeavy)
	for h := range benchHeavy {
		for m := range 60 {
			r := heavyPerMinute(h, m)
			heavyTotal[h].Add(counts.Counters{Requests: r, Bytes: r * 900})
		}
	}
	stores := map[string]*counts.Store{}
	for _, res := range topo.Resolutions {
		st, err := counts.NewStore(ctx, js, res.Bucket(), counts.DefaultLayout(nc.MaxPayload(), res.Retention))
		if err != nil {
			return nil, err
		}
		stores[res.Name] = st
	}
	var seq uint64
	var seqMu sync.Mutex
	commit := func(st *counts.Store, key string, cur *counts.Manifest, rev uint64, es []counts.Entry) (*counts.Manifest, uint64, error) {
		counts.SortEntries(es)
		seqMu.Lock()
		seq++
		s := seq
		seqMu.Unlock()
		m, r, _, err := st.Commit(ctx, key, cur, rev, counts.Change{Entries: es, LastSeq: s}).Wait(ctx)
		return m, r, err
	}
	heavyIn := func(p, minuteFrom, minuteTo int) []counts.Entry {
		var out []counts.Entry
		for h := range benchHeavy {
			a := heavyAddr(h)
			if counts.Partition(a, parts) != p {
				continue
			}
			var c counts.Counters
			for m := minuteFrom; m < minuteTo; m++ {
				r := heavyPerMinute(h, m)
				c.Add(counts.Counters{Requests: r, Bytes: r * 900})
			}
			out = append(out, counts.Entry{Addr: a, Counters: c})
		}
		return out
	}
	errs := make([]error, parts)
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))
	for p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// The 1h window: four commits of a quarter hour each, then a
			// few late IPs that stay inline.
			key := counts.Key(hourStart, p)
			var cur *counts.Manifest
			var rev uint64
			var err error
			for q := range 4 {
				es := heavyIn(p, q*15, q*15+15)
				for _, l := range byPart[p] {
					if int(l.minute)/15 == q {
						es = append(es, counts.Entry{Addr: l.addr, Counters: l.counters()})
					}
				}
				if cur, rev, err = commit(stores["1h"], key, cur, rev, es); err != nil {
					errs[p] = err
					return
				}
			}
			// The 1m windows of 13:30–14:30.
			perMinute := make([][]counts.Entry, 60)
			for _, l := range byPart[p] {
				perMinute[l.minute] = append(perMinute[l.minute], counts.Entry{Addr: l.addr, Counters: l.counters()})
			}
			for m := range 60 {
				es := append(perMinute[m], heavyIn(p, m, m+1)...)
				if _, _, err := commit(stores["1m"], counts.Key(lastStart.Add(time.Duration(m)*time.Minute), p), nil, 0, es); err != nil {
					errs[p] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	// Reference answers from the input.
	var heavy []IPCount
	for h := range benchHeavy {
		heavy = append(heavy, IPCount{IP: counts.Unpack(heavyAddr(h)), Count: heavyTotal[h].Requests, Counters: heavyTotal[h]})
	}
	sortItems(heavy)
	f.want["requests-hour"] = heavy[:10]
	var last5 []IPCount
	for h := range benchHeavy {
		var c counts.Counters
		for m := 55; m < 60; m++ {
			r := heavyPerMinute(h, m)
			c.Add(counts.Counters{Requests: r, Bytes: r * 900})
		}
		last5 = append(last5, IPCount{IP: counts.Unpack(heavyAddr(h)), Count: c.Requests, Counters: c})
	}
	sortItems(last5)
	f.want["requests-last5m"] = last5[:10]
	var flat []IPCount
	for _, ls := range byPart {
		for _, l := range ls {
			if l.c4xx == 3 {
				flat = append(flat, IPCount{IP: counts.Unpack(l.addr), Count: 3, Counters: l.counters()})
			}
		}
	}
	sortItems(flat)
	f.want["4xx-hour"] = flat[:min(10, len(flat))]
	fmt.Fprintf(os.Stderr, "bench fixture: %d IPs + %d heavy hitters written in %v\n", n, benchHeavy, time.Since(t0).Round(time.Second))
	return f, nil
}

func sortItems(items []IPCount) {
	slices.SortFunc(items, func(a, b IPCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return a.IP.Compare(b.IP)
	})
}

// benchTop runs one top query; see benchQuery.
func benchTop(b *testing.B, rg Range, tq TopQuery, want string) {
	f := fixture(b)
	benchQuery(b, f, fmt.Sprintf("%s %s n=%d", rg, tq.Class, tq.N), func(r *Reader) error {
		res, err := r.Top(context.Background(), rg, tq)
		if err == nil && want != "" && !sameItems(res.Items, f.want[want]) {
			err = fmt.Errorf("wrong answer:\n got %s\nwant %s", fmtItems(res.Items), fmtItems(f.want[want]))
		}
		return err
	})
}

// benchQuery runs query with a fresh reader (an empty cache): the first
// query cold, then b.Loop; it reports p50, p99 and the cold query.
func benchQuery(b *testing.B, f *benchFixture, what string, query func(*Reader) error) {
	r, err := New(DefaultConfig(), f.js, 32, topology.DefaultResolutions(), hclog.NewNullLogger())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer r.Stop(ctx)
	if err := r.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	if err := query(r); err != nil {
		b.Fatal(err)
	}
	cold := time.Since(t0)
	coldStats := r.Stats()
	var lat []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t := time.Now()
		if err := query(r); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(cold.Microseconds())/1000, "cold-ms")
	st := r.Stats()
	b.Logf("%d IPs, %s: cold %v (%d KV gets, %d of chunks), p50 %v p99 %v over %d; fallbacks %d; cache %d values %d MiB",
		f.n, what, cold.Round(time.Millisecond), coldStats.KVGets, coldStats.ChunkGets, p50, p99, len(lat), st.Fallbacks, st.CacheItems, st.CacheBytes>>20)
}

// BenchmarkTopHour: top 10 over one hour-aligned hour: 32 1h windows.
func BenchmarkTopHour(b *testing.B) {
	benchTop(b, Range{hourStart, hourStart.Add(time.Hour)}, TopQuery{N: 10}, "requests-hour")
}

// BenchmarkTopLast1h: top 10 over last=1h when the hour is not aligned:
// 60 × 32 1m windows.
func BenchmarkTopLast1h(b *testing.B) {
	benchTop(b, Range{lastStart, lastStart.Add(time.Hour)}, TopQuery{N: 10}, "requests-hour")
}

// BenchmarkTopLast5m: top 10 over the last 5 minutes: 5 × 32 1m windows.
func BenchmarkTopLast5m(b *testing.B) {
	benchTop(b, Range{lastStart.Add(55 * time.Minute), lastStart.Add(time.Hour)}, TopQuery{N: 10}, "requests-last5m")
}

// BenchmarkTopFlatHour: the worst case, ranked by 4xx (no heavy hitters):
// the heads cannot decide, every partition is read by address.
func BenchmarkTopFlatHour(b *testing.B) {
	benchTop(b, Range{hourStart, hourStart.Add(time.Hour)}, TopQuery{N: 10, Class: counts.Status4xx}, "4xx-hour")
}

// BenchmarkTopFlatLast1h: the worst case over 60 1m windows.
func BenchmarkTopFlatLast1h(b *testing.B) {
	benchTop(b, Range{lastStart, lastStart.Add(time.Hour)}, TopQuery{N: 10, Class: counts.Status4xx}, "4xx-hour")
}

// BenchmarkTotalsHour: totals with distinct IPs over the hour of 1h
// windows (their runs merged by address, streaming).
func BenchmarkTotalsHour(b *testing.B) {
	benchTotals(b, Range{hourStart, hourStart.Add(time.Hour)})
}

// BenchmarkTotalsLast1h: the same over 60 1m windows.
func BenchmarkTotalsLast1h(b *testing.B) {
	benchTotals(b, Range{lastStart, lastStart.Add(time.Hour)})
}

func benchTotals(b *testing.B, rg Range) {
	f := fixture(b)
	benchQuery(b, f, fmt.Sprintf("totals %s", rg), func(r *Reader) error {
		res, err := r.Totals(context.Background(), rg)
		if err == nil && res.DistinctIPs != uint64(f.n+benchHeavy) {
			err = fmt.Errorf("%d distinct IPs, want %d", res.DistinctIPs, f.n+benchHeavy)
		}
		return err
	})
}

// BenchmarkSeriesLast1h: one heavy hitter's series over 60 1m windows,
// one point lookup per window.
func BenchmarkSeriesLast1h(b *testing.B) {
	f := fixture(b)
	ip := counts.Unpack(heavyAddr(3))
	rg := Range{lastStart, lastStart.Add(time.Hour)}
	benchQuery(b, f, "series "+ip.String(), func(r *Reader) error {
		res, err := r.Series(context.Background(), ip, rg, time.Minute)
		if err == nil && res.Series[7].Counters.Requests != heavyPerMinute(3, 7) {
			err = fmt.Errorf("minute 7: %d requests, want %d", res.Series[7].Counters.Requests, heavyPerMinute(3, 7))
		}
		return err
	})
}

// BenchmarkTopGroupsHour: every IP of the hour of 1h windows read once and
// grouped (here by its first byte, a stand-in for an ASN lookup: the
// lookup's own cost is BenchmarkLookup* in internal/geoip).
func BenchmarkTopGroupsHour(b *testing.B) {
	f := fixture(b)
	rg := Range{hourStart, hourStart.Add(time.Hour)}
	group := func(a netip.Addr) (uint32, bool) { return uint32(a.As16()[0]), a.Is6() || a.As4()[0] != 0 }
	benchQuery(b, f, "groups "+rg.String(), func(r *Reader) error {
		res, err := TopGroups(context.Background(), r, rg, GroupQuery[uint32]{N: 10, Group: group})
		if err == nil && res.IPs != uint64(f.n+benchHeavy) {
			err = fmt.Errorf("%d IPs, want %d", res.IPs, f.n+benchHeavy)
		}
		return err
	})
}

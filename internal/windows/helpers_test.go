package windows

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/natstest"
	"github.com/logtally/logtally/internal/topology"
)

// env is a Reader over an embedded NATS server and the stores that write
// its windows the way the aggregator does (counts.Store.Commit).
type env struct {
	t      testing.TB
	srv    *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	topo   topology.Config
	stores []*counts.Store // by resolution, ascending
	r      *Reader

	mu   sync.Mutex
	cur  map[string]*counts.Manifest // bucket/key → last manifest written
	revs map[string]uint64
	seq  uint64
}

type envOpts struct {
	partitions  int
	maxPayload  int32
	layout      func(*counts.Layout)
	resolutions []topology.Resolution
	cfg         func(*Config)
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	if o.partitions == 0 {
		o.partitions = 8
	}
	var sopts []natstest.Option
	if o.maxPayload > 0 {
		sopts = append(sopts, natstest.MaxPayload(o.maxPayload))
	}
	srv := natstest.RunBasicJetStreamServer(t, sopts...)
	nc, js := natstest.Connect(t, srv)
	e := &env{t: t, srv: srv, nc: nc, js: js, cur: map[string]*counts.Manifest{}, revs: map[string]uint64{}}
	e.topo = topology.Defaults()
	e.topo.Partitions = o.partitions
	if o.resolutions != nil {
		e.topo.Resolutions = o.resolutions
	}
	ctx := context.Background()
	p, err := topology.Ensure(ctx, js, e.topo)
	if err != nil {
		t.Fatalf("ensure: %v", err)
	}
	e.topo.Partitions = p
	for _, res := range e.topo.Resolutions {
		l := counts.DefaultLayout(nc.MaxPayload(), res.Retention)
		if o.layout != nil {
			o.layout(&l)
		}
		st, err := counts.NewStore(ctx, js, res.Bucket(), l)
		if err != nil {
			t.Fatal(err)
		}
		e.stores = append(e.stores, st)
	}
	cfg := DefaultConfig()
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	e.r = e.newReader(cfg)
	return e
}

// newReader starts another reader (with its own cache) on the env's server.
func (e *env) newReader(cfg Config) *Reader {
	e.t.Helper()
	r, err := New(cfg, e.js, e.topo.Partitions, e.topo.Resolutions, hclog.NewNullLogger())
	if err != nil {
		e.t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = r.Stop(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.WaitReady(ctx); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// ev is traffic of one IP at one time.
type ev struct {
	ip netip.Addr
	t  time.Time
	c  counts.Counters
}

// data is what a test writes and the reference its answers are checked
// against: plain sums over the events, never the code under test.
type data struct {
	evs  []ev
	dead []time.Time
	late []time.Time
}

// write commits d into the windows of every resolution, each window's
// events split into batches commits (an IP may fall into several, so a
// window ends up with several runs and inline entries), and waits until the
// reader's indexes saw them.
func (e *env) write(d data, batches int) {
	e.t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(len(d.evs)), uint64(batches)))
	for ri, res := range e.topo.Resolutions {
		type wk struct {
			start time.Time
			part  int
		}
		groups := map[wk][]ev{}
		for _, x := range d.evs {
			k := wk{x.t.Truncate(res.Size), counts.Partition(counts.Pack(x.ip), e.topo.Partitions)}
			groups[k] = append(groups[k], x)
		}
		deads := map[wk]uint64{}
		for i, t := range d.dead {
			deads[wk{t.Truncate(res.Size), i % e.topo.Partitions}]++
		}
		lates := map[wk]uint64{}
		for i, t := range d.late {
			lates[wk{t.Truncate(res.Size), (i * 7) % e.topo.Partitions}]++
		}
		for k := range deads {
			if _, ok := groups[k]; !ok {
				groups[k] = nil
			}
		}
		for k := range lates {
			if _, ok := groups[k]; !ok {
				groups[k] = nil
			}
		}
		type job struct {
			key     string
			changes []counts.Change
		}
		var jobs []job
		for k, evs := range groups {
			split := make([]map[[16]byte]counts.Counters, batches)
			for i := range split {
				split[i] = map[[16]byte]counts.Counters{}
			}
			for _, x := range evs {
				b := split[rng.IntN(batches)]
				a := counts.Pack(x.ip)
				c := b[a]
				c.Add(x.c)
				b[a] = c
			}
			j := job{key: counts.Key(k.start, k.part)}
			for i, m := range split {
				ch := counts.Change{}
				for a, c := range m {
					ch.Entries = append(ch.Entries, counts.Entry{Addr: a, Counters: c})
				}
				counts.SortEntries(ch.Entries)
				if i == 0 {
					ch.DeadLetters, ch.Late = deads[k], lates[k]
				}
				if len(ch.Entries) > 0 || ch.DeadLetters > 0 || ch.Late > 0 {
					j.changes = append(j.changes, ch)
				}
			}
			jobs = append(jobs, j)
		}
		var maxRev uint64
		var mu sync.Mutex
		var wg sync.WaitGroup
		next := make(chan job)
		var firstErr error
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range next {
					for _, ch := range j.changes {
						rev, err := e.commit(ctx, ri, j.key, ch)
						mu.Lock()
						maxRev = max(maxRev, rev)
						if err != nil && firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
					}
				}
			}()
		}
		for _, j := range jobs {
			next <- j
		}
		close(next)
		wg.Wait()
		if firstErr != nil {
			e.t.Fatal(firstErr)
		}
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		if err := e.r.WaitRevision(wctx, res.Bucket(), maxRev); err != nil {
			e.t.Fatalf("index did not catch up: %v", err)
		}
		cancel()
	}
}

// commit adds one change to a window, as its owner would.
func (e *env) commit(ctx context.Context, res int, key string, ch counts.Change) (uint64, error) {
	st := e.stores[res]
	id := st.Bucket() + "/" + key
	e.mu.Lock()
	cur, rev := e.cur[id], e.revs[id]
	e.seq++
	ch.LastSeq = e.seq
	e.mu.Unlock()
	m, rev, _, err := st.Commit(ctx, key, cur, rev, ch).Wait(ctx)
	if err != nil {
		return 0, fmt.Errorf("commit %s: %w", id, err)
	}
	e.mu.Lock()
	e.cur[id], e.revs[id] = m, rev
	e.mu.Unlock()
	return rev, nil
}

// shape counts the windows (and those with several runs), runs, chunks
// and inline entries of every stored window.
func (e *env) shape() (windows, multi, runs, chunks, heads, inline int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range e.cur {
		windows++
		if len(m.Runs) > 1 || (len(m.Runs) == 1 && len(m.Inline) > 0) {
			multi++
		}
		runs += len(m.Runs)
		inline += len(m.Inline)
		for _, r := range m.Runs {
			chunks += len(r.Slots)
			if r.HeadSlot != 0 {
				heads++
			}
		}
	}
	return
}

func in(t, from, to time.Time) bool { return !t.Before(from) && t.Before(to) }

// refSums adds up the counters of every IP in [from, to) (inside p when valid).
func refSums(d data, from, to time.Time, p netip.Prefix) map[netip.Addr]counts.Counters {
	m := map[netip.Addr]counts.Counters{}
	for _, x := range d.evs {
		if in(x.t, from, to) && (!p.IsValid() || p.Contains(x.ip)) {
			c := m[x.ip]
			c.Add(x.c)
			m[x.ip] = c
		}
	}
	return m
}

func refTop(d data, from, to time.Time, class counts.Class, n int, p netip.Prefix) []IPCount {
	m := refSums(d, from, to, p)
	var out []IPCount
	for ip, c := range m {
		if v := c.Get(class); v > 0 {
			out = append(out, IPCount{IP: ip, Count: v, Counters: c})
		}
	}
	slices.SortFunc(out, func(a, b IPCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return a.IP.Compare(b.IP)
	})
	return out[:min(n, len(out))]
}

func refTotals(d data, from, to time.Time) TotalsResult {
	res := TotalsResult{Range: Range{From: from, To: to}}
	m := refSums(d, from, to, netip.Prefix{})
	res.DistinctIPs = uint64(len(m))
	for _, c := range m {
		res.Counters.Add(c)
	}
	for _, t := range d.dead {
		if in(t, from, to) {
			res.DeadLetters++
		}
	}
	for _, t := range d.late {
		if in(t, from, to) {
			res.Late++
		}
	}
	return res
}

func refSeries(d data, ip netip.Addr, from, to time.Time, step time.Duration) (counts.Counters, []SeriesPoint) {
	var total counts.Counters
	var pts []SeriesPoint
	for s := from; s.Before(to); s = s.Add(step) {
		end := s.Add(step)
		if end.After(to) {
			end = to
		}
		p := SeriesPoint{Start: s}
		for _, x := range d.evs {
			if x.ip == ip && in(x.t, s, end) {
				p.Counters.Add(x.c)
			}
		}
		total.Add(p.Counters)
		pts = append(pts, p)
	}
	return total, pts
}

var base = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// genData makes a realistic mix over 09:50–12:10: many IPs with a few
// requests each (ties everywhere), heavy hitters per class, IPv4 and IPv6
// (including IPv6 addresses that runs sort before IPv4, such as ::1), a
// burst minute with many IPs, dead letters and late records.
func genData(seed uint64, light int) (data, []netip.Addr) {
	rng := rand.New(rand.NewPCG(seed, 99))
	from := at("2026-11-24T09:50:00Z")
	span := int64(140 * time.Minute)
	var d data
	var ips []netip.Addr
	seen := map[netip.Addr]bool{}
	newIP := func(i int) netip.Addr {
		for {
			var a netip.Addr
			switch k := rng.IntN(10); {
			case k < 6:
				a = netip.AddrFrom4([4]byte{10, byte(rng.IntN(8)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			case k < 7:
				a = netip.AddrFrom4([4]byte{byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			case k < 9:
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 8: byte(rng.IntN(4)), 14: byte(rng.IntN(256)), 15: byte(rng.IntN(256))})
			default:
				// Below ::ffff:0:0 in packed order: sorted before IPv4 in a
				// run, after it in answers.
				a = netip.AddrFrom16([16]byte{10: 0xff, 11: byte(rng.IntN(255)), 14: byte(rng.IntN(256)), 15: byte(i)})
			}
			if !seen[a] {
				seen[a] = true
				ips = append(ips, a)
				return a
			}
		}
	}
	light1 := func() counts.Counters {
		c := counts.Counters{Requests: 1, Bytes: 100 + rng.Uint64N(2000)}
		switch rng.IntN(10) {
		case 0, 1:
			c.Status4xx = 1
		case 2:
			c.Status5xx = 1
		case 3:
			c.AuthFailures = 1
		}
		return c
	}
	for i := range light {
		ip := newIP(i)
		for range 1 + rng.IntN(3) {
			d.evs = append(d.evs, ev{ip: ip, t: from.Add(time.Duration(rng.Int64N(span))), c: light1()})
		}
	}
	// A burst minute: many IPs at 10:31, each once.
	burst := at("2026-11-24T10:31:00Z")
	for i := range light / 2 {
		d.evs = append(d.evs, ev{ip: newIP(i), t: burst.Add(time.Duration(rng.Int64N(int64(time.Minute)))), c: light1()})
	}
	// Heavy hitters: a few per class, spread over the whole span.
	for h := range 24 {
		ip := newIP(h)
		n := 200 + rng.IntN(400)
		for range n {
			c := counts.Counters{Requests: 1 + rng.Uint64N(3), Bytes: 500}
			switch h % 4 {
			case 1:
				c.Status4xx = c.Requests
			case 2:
				c.AuthFailures = 1
			case 3:
				c.Bytes = 1 << 20
			}
			d.evs = append(d.evs, ev{ip: ip, t: from.Add(time.Duration(rng.Int64N(span))), c: c})
		}
	}
	for range 300 {
		d.dead = append(d.dead, from.Add(time.Duration(rng.Int64N(span))))
	}
	for range 200 {
		d.late = append(d.late, from.Add(time.Duration(rng.Int64N(span))))
	}
	return d, ips
}

// smallLayout splits windows into many small chunks, runs and heads even
// with little data.
func smallLayout(l *counts.Layout) {
	l.ChunkBytes = 1024
	l.InlineBytes = 256
	l.HeadSize = 8
	l.MaxDeltas = 3
}

func isInvalid(err error, msg string) bool {
	return errors.Is(err, ErrInvalidArgument) && strings.Contains(err.Error(), msg)
}

func sameItems(a, b []IPCount) bool {
	return slices.EqualFunc(a, b, func(x, y IPCount) bool { return x == y })
}

func fmtItems(items []IPCount) string {
	s := ""
	for i, it := range items[:min(len(items), 12)] {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s=%d", it.IP, it.Count)
	}
	if len(items) > 12 {
		s += fmt.Sprintf(" … (%d)", len(items))
	}
	return s
}

// oneMinute is a single 1m resolution kept retention (0: 48h).
func oneMinute(retention time.Duration) []topology.Resolution {
	if retention == 0 {
		retention = 48 * time.Hour
	}
	return []topology.Resolution{{Name: "1m", Size: time.Minute, Retention: retention}}
}

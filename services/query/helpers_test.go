package query

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/natsconn"
	"github.com/logtally/logtally/internal/natstest"
	"github.com/logtally/logtally/internal/obs"
	"github.com/logtally/logtally/internal/service"
	"github.com/logtally/logtally/internal/topology"
	"github.com/logtally/logtally/internal/windows"
)

// env is a running query service over an embedded NATS server (64 KiB
// max_payload, so that windows are split into runs and chunks), with the
// stores that write windows as the aggregator does.
type env struct {
	t      testing.TB
	srv    *server.Server
	js     jetstream.JetStream
	topo   topology.Config
	svc    *Service
	health *obs.Health
	reg    *prometheus.Registry
	http   *httptest.Server
	client logtallyv1.QueryServiceClient
	cc     *grpc.ClientConn
	stores map[string]*counts.Store

	mu      sync.Mutex
	written map[string]*state // bucket/key → what the window holds
	cur     map[string]*counts.Manifest
	revs    map[string]uint64
	seq     uint64
}

func newEnv(t testing.TB, partitions int, opts ...func(*Config)) *env {
	t.Helper()
	srv := natstest.RunBasicJetStreamServer(t, natstest.MaxPayload(64<<10))
	nc, js := natstest.Connect(t, srv)
	ctx := context.Background()
	topo := topology.Defaults()
	topo.Partitions = partitions
	p, err := topology.Ensure(ctx, js, topo)
	if err != nil {
		t.Fatalf("ensure: %v", err)
	}
	topo.Partitions = p
	cfg := DefaultConfig()
	cfg.GRPCAddr = "127.0.0.1:0"
	for _, o := range opts {
		o(&cfg)
	}
	mux := http.NewServeMux()
	health := obs.NewHealth()
	reg := prometheus.NewRegistry()
	svc, err := New(cfg, service.Deps{
		Log:        hclog.NewNullLogger(),
		NATS:       &natsconn.Conn{NC: nc, JS: js},
		Registerer: reg,
		Mux:        mux,
		Health:     health,
		Topology:   topo,
		InstanceID: "test",
	})
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	hs := httptest.NewServer(mux)
	cc, err := grpc.NewClient(svc.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc client: %v", err)
	}
	e := &env{t: t, srv: srv, js: js, topo: topo, svc: svc, health: health, reg: reg, http: hs,
		client: logtallyv1.NewQueryServiceClient(cc), cc: cc, stores: map[string]*counts.Store{},
		written: map[string]*state{}, cur: map[string]*counts.Manifest{}, revs: map[string]uint64{}}
	for _, r := range topo.Resolutions {
		l := counts.DefaultLayout(nc.MaxPayload(), r.Retention)
		l.ChunkBytes, l.InlineBytes, l.HeadSize = 2048, 512, 16
		st, err := counts.NewStore(ctx, js, r.Bucket(), l)
		if err != nil {
			t.Fatal(err)
		}
		e.stores[r.Bucket()] = st
	}
	t.Cleanup(func() {
		cc.Close()
		hs.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Stop(sctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := svc.waitReady(rctx); err != nil {
		t.Fatalf("not ready: %v", err)
	}
	return e
}

// event is traffic of one IP at one time; zero counters mean one request.
type event struct {
	ip netip.Addr
	t  time.Time
	c  counts.Counters
}

func (ev event) counters() counts.Counters {
	if ev.c.IsZero() {
		return counts.Counters{Requests: 1}
	}
	return ev.c
}

// data is what the test writes, also the reference the answers are checked
// against with plain maps.
type data struct {
	requests []event
	dead     []time.Time
	late     []time.Time
}

// state is what one window holds.
type state struct {
	entries    map[[counts.AddrLen]byte]counts.Counters
	dead, late uint64
}

// windows is the content of every window of every resolution for d, with
// counts.Key and counts.Partition, like the aggregator computes it.
func (e *env) windows(d data) map[string]map[string]*state {
	out := map[string]map[string]*state{}
	for _, r := range e.topo.Resolutions {
		m := map[string]*state{}
		get := func(t time.Time, p int) *state {
			k := counts.Key(t.Truncate(r.Size), p)
			w, ok := m[k]
			if !ok {
				w = &state{entries: map[[counts.AddrLen]byte]counts.Counters{}}
				m[k] = w
			}
			return w
		}
		for _, ev := range d.requests {
			a := counts.Pack(ev.ip)
			w := get(ev.t, counts.Partition(a, e.topo.Partitions))
			c := w.entries[a]
			c.Add(ev.counters())
			w.entries[a] = c
		}
		for i, t := range d.dead {
			get(t, i%e.topo.Partitions).dead++
		}
		for i, t := range d.late {
			get(t, (i*7)%e.topo.Partitions).late++
		}
		out[r.Bucket()] = m
	}
	return out
}

// put brings every window to the given content: it commits the difference
// from what was written before (counters only grow) with counts.Store, and
// waits until the service's index saw it.
func (e *env) put(ws map[string]map[string]*state) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, r := range e.topo.Resolutions {
		type job struct {
			key string
			ch  counts.Change
		}
		var jobs []job
		for k, w := range ws[r.Bucket()] {
			id := r.Bucket() + "/" + k
			old := e.written[id]
			if old == nil {
				old = &state{entries: map[[counts.AddrLen]byte]counts.Counters{}}
			}
			ch := counts.Change{DeadLetters: w.dead - old.dead, Late: w.late - old.late}
			for a, c := range w.entries {
				o := old.entries[a]
				d := counts.Counters{Requests: c.Requests - o.Requests, Status4xx: c.Status4xx - o.Status4xx, Status5xx: c.Status5xx - o.Status5xx, AuthFailures: c.AuthFailures - o.AuthFailures, Bytes: c.Bytes - o.Bytes}
				if !d.IsZero() {
					ch.Entries = append(ch.Entries, counts.Entry{Addr: a, Counters: d})
				}
			}
			if len(ch.Entries) == 0 && ch.DeadLetters == 0 && ch.Late == 0 {
				continue
			}
			counts.SortEntries(ch.Entries)
			jobs = append(jobs, job{k, ch})
			e.written[id] = w
		}
		var mu sync.Mutex
		var maxRev uint64
		var firstErr error
		var wg sync.WaitGroup
		next := make(chan job)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range next {
					rev, err := e.commit(ctx, r.Bucket(), j.key, j.ch)
					mu.Lock()
					maxRev = max(maxRev, rev)
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
				}
			}()
		}
		for _, j := range jobs {
			next <- j
		}
		close(next)
		wg.Wait()
		if firstErr != nil {
			e.t.Fatalf("put: %v", firstErr)
		}
		if err := e.svc.reader.WaitRevision(ctx, r.Bucket(), maxRev); err != nil {
			e.t.Fatalf("index did not catch up: %v", err)
		}
	}
}

func (e *env) commit(ctx context.Context, bucket, key string, ch counts.Change) (uint64, error) {
	id := bucket + "/" + key
	e.mu.Lock()
	cur, rev := e.cur[id], e.revs[id]
	e.seq++
	ch.LastSeq = e.seq
	e.mu.Unlock()
	m, rev, _, err := e.stores[bucket].Commit(ctx, key, cur, rev, ch).Wait(ctx)
	if err != nil {
		return 0, fmt.Errorf("commit %s: %w", id, err)
	}
	e.mu.Lock()
	e.cur[id], e.revs[id] = m, rev
	e.mu.Unlock()
	return rev, nil
}

// getJSON does a GET and decodes the answer; it returns the status code.
func (e *env) getJSON(path string, v any) int {
	e.t.Helper()
	resp, err := http.Get(e.http.URL + path)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			e.t.Fatalf("GET %s: decode %q: %v", path, b, err)
		}
	}
	return resp.StatusCode
}

// Reference answers over the raw events.

func inRange(t, from, to time.Time) bool { return !t.Before(from) && t.Before(to) }

func refTop(d data, from, to time.Time, n int) []itemJSON {
	return refTopClass(d, from, to, counts.Requests, n, netip.Prefix{})
}

func refTopClass(d data, from, to time.Time, class counts.Class, n int, p netip.Prefix) []itemJSON {
	m := map[netip.Addr]counts.Counters{}
	for _, ev := range d.requests {
		if inRange(ev.t, from, to) && (!p.IsValid() || p.Contains(ev.ip)) {
			c := m[ev.ip]
			c.Add(ev.counters())
			m[ev.ip] = c
		}
	}
	var ips []netip.Addr
	for ip, c := range m {
		if c.Get(class) > 0 {
			ips = append(ips, ip)
		}
	}
	slices.SortFunc(ips, func(a, b netip.Addr) int {
		ca, cb := m[a], m[b]
		if c := cmp.Compare(cb.Get(class), ca.Get(class)); c != 0 {
			return c
		}
		return a.Compare(b)
	})
	items := make([]itemJSON, 0, len(ips))
	for _, ip := range ips {
		c := m[ip]
		items = append(items, itemJSON{IP: ip.String(), Count: c.Get(class), countersJSON: countersToJSON(c)})
	}
	if len(items) > n {
		items = items[:n]
	}
	return items
}

func refSeries(d data, ip netip.Addr, from, to time.Time, step time.Duration) (counts.Counters, []pointJSON) {
	var evs []event
	for _, ev := range d.requests {
		if ev.ip == ip {
			evs = append(evs, ev)
		}
	}
	return refPoints(evs, from, to, step)
}

func refPoints(evs []event, from, to time.Time, step time.Duration) (counts.Counters, []pointJSON) {
	var pts []pointJSON
	var total counts.Counters
	for s := from; s.Before(to); s = s.Add(step) {
		end := s.Add(step)
		if end.After(to) {
			end = to
		}
		var c counts.Counters
		for _, ev := range evs {
			if inRange(ev.t, s, end) {
				c.Add(ev.counters())
			}
		}
		total.Add(c)
		pts = append(pts, pointJSON{Start: fmtTime(s), Count: c.Requests, countersJSON: countersToJSON(c)})
	}
	return total, pts
}

func refTotals(d data, from, to time.Time) totalsJSON {
	out := totalsJSON{From: fmtTime(from), To: fmtTime(to)}
	seen := map[netip.Addr]bool{}
	var c counts.Counters
	for _, ev := range d.requests {
		if inRange(ev.t, from, to) {
			c.Add(ev.counters())
			seen[ev.ip] = true
		}
	}
	out.Requests, out.Status4xx, out.Status5xx, out.AuthFails, out.Bytes = c.Requests, c.Status4xx, c.Status5xx, c.AuthFailures, c.Bytes
	out.DistinctIPs = uint64(len(seen))
	for _, t := range d.dead {
		if inRange(t, from, to) {
			out.DeadLetters++
		}
	}
	for _, t := range d.late {
		if inRange(t, from, to) {
			out.Late++
		}
	}
	return out
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func fmtTime(t time.Time) string { return windows.FormatTime(t) }

func formatDuration(d time.Duration) string { return windows.FormatDuration(d) }

func rangeQuery(from, to time.Time) string {
	return fmt.Sprintf("from=%s&to=%s", fmtTime(from), fmtTime(to))
}

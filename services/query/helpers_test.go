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
)

// env is a running query service over an embedded NATS server.
type env struct {
	t      testing.TB
	srv    *server.Server
	js     jetstream.JetStream
	topo   topology.Config
	svc    *Service
	health *obs.Health
	http   *httptest.Server
	client logtallyv1.QueryServiceClient
	cc     *grpc.ClientConn
}

func newEnv(t testing.TB, partitions int, opts ...func(*Config)) *env {
	t.Helper()
	srv := natstest.RunBasicJetStreamServer(t)
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
	svc, err := New(cfg, service.Deps{
		Log:        hclog.NewNullLogger(),
		NATS:       &natsconn.Conn{NC: nc, JS: js},
		Registerer: prometheus.NewRegistry(),
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
	e := &env{t: t, srv: srv, js: js, topo: topo, svc: svc, health: health, http: hs, client: logtallyv1.NewQueryServiceClient(cc), cc: cc}
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

// event is one request (or dead letter / late record) at a time.
type event struct {
	ip netip.Addr
	t  time.Time
}

// data is what the test writes, also the reference the answers are checked
// against with plain maps.
type data struct {
	requests []event
	dead     []time.Time
	late     []time.Time
}

// windows builds the window values of every resolution from the events,
// with counts.Key and counts.Partition, like the aggregator does.
func (e *env) windows(d data) map[string]map[string]*counts.Window {
	out := map[string]map[string]*counts.Window{}
	for _, r := range e.topo.Resolutions {
		m := map[string]*counts.Window{}
		get := func(t time.Time, p int) *counts.Window {
			k := counts.Key(t.Truncate(r.Size), p)
			w, ok := m[k]
			if !ok {
				w = counts.NewWindow()
				m[k] = w
			}
			return w
		}
		for _, ev := range d.requests {
			a := counts.Pack(ev.ip)
			get(ev.t, counts.Partition(a, e.topo.Partitions)).Counts[a]++
		}
		for i, t := range d.dead {
			get(t, i%e.topo.Partitions).DeadLetters++
		}
		for i, t := range d.late {
			get(t, (i*7)%e.topo.Partitions).Late++
		}
		out[r.Bucket()] = m
	}
	return out
}

// put writes window values and waits until the service's index saw them.
func (e *env) put(ws map[string]map[string]*counts.Window) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for bi, r := range e.svc.res {
		kv, err := e.js.KeyValue(ctx, r.Bucket())
		if err != nil {
			e.t.Fatalf("bucket: %v", err)
		}
		type kvp struct {
			k string
			w *counts.Window
		}
		var todo []kvp
		for k, w := range ws[r.Bucket()] {
			todo = append(todo, kvp{k, w})
		}
		var mu sync.Mutex
		var maxRev uint64
		var firstErr error
		var wg sync.WaitGroup
		ch := make(chan kvp)
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for it := range ch {
					b, err := it.w.Marshal()
					if err == nil {
						var rev uint64
						rev, err = kv.Put(ctx, it.k, b)
						mu.Lock()
						maxRev = max(maxRev, rev)
						mu.Unlock()
					}
					if err != nil {
						mu.Lock()
						firstErr = cmp.Or(firstErr, err)
						mu.Unlock()
					}
				}
			}()
		}
		for _, it := range todo {
			ch <- it
		}
		close(ch)
		wg.Wait()
		if firstErr != nil {
			e.t.Fatalf("put: %v", firstErr)
		}
		if err := e.svc.indexes[bi].waitRevision(ctx, maxRev); err != nil {
			e.t.Fatalf("index did not catch up: %v", err)
		}
	}
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
	m := map[netip.Addr]uint64{}
	for _, ev := range d.requests {
		if inRange(ev.t, from, to) {
			m[ev.ip]++
		}
	}
	items := make([]itemJSON, 0, len(m))
	ips := make([]netip.Addr, 0, len(m))
	for ip := range m {
		ips = append(ips, ip)
	}
	slices.SortFunc(ips, func(a, b netip.Addr) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return a.Compare(b)
	})
	for _, ip := range ips {
		items = append(items, itemJSON{IP: ip.String(), Count: m[ip]})
	}
	if len(items) > n {
		items = items[:n]
	}
	return items
}

func refSeries(d data, ip netip.Addr, from, to time.Time, step time.Duration) (uint64, []pointJSON) {
	var times []time.Time
	for _, ev := range d.requests {
		if ev.ip == ip {
			times = append(times, ev.t)
		}
	}
	var pts []pointJSON
	var total uint64
	for s := from; s.Before(to); s = s.Add(step) {
		end := s.Add(step)
		if end.After(to) {
			end = to
		}
		var c uint64
		for _, t := range times {
			if inRange(t, s, end) {
				c++
			}
		}
		total += c
		pts = append(pts, pointJSON{Start: fmtTime(s), Count: c})
	}
	return total, pts
}

func refTotals(d data, from, to time.Time) totalsJSON {
	out := totalsJSON{From: fmtTime(from), To: fmtTime(to)}
	seen := map[netip.Addr]bool{}
	for _, ev := range d.requests {
		if inRange(ev.t, from, to) {
			out.Requests++
			seen[ev.ip] = true
		}
	}
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

func rangeQuery(from, to time.Time) string {
	return fmt.Sprintf("from=%s&to=%s", fmtTime(from), fmtTime(to))
}

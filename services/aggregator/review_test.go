package aggregator

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/natstest"
	"github.com/logtally/logtally/internal/topology"
)

// Eviction keeps the most recently used windows, as the flag's help says.
func TestEvictionIsOldestFirst(t *testing.T) {
	cfg := testConfig()
	cfg.MaxOpenWindows = 5
	s := &Service{cfg: cfg, res: topology.DefaultResolutions(), m: newMetrics(prometheus.NewRegistry())}
	pt := &partition{s: s, windows: map[windowKey]*window{}, last: make([]*window, 2)}
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	// Ten clean 1m windows touched (flush generation) in an order unrelated
	// to their start, none idle yet.
	pt.wm = now.Add(-10 * time.Minute).UnixMilli()
	pt.flushes = 4
	order := []int{7, 2, 9, 4, 10, 1, 8, 3, 6, 5}
	for i, used := range order {
		k := windowKey{res: 0, start: now.Add(-time.Duration(i) * time.Minute).Unix()}
		pt.windows[k] = &window{used: used}
	}
	pt.evict()
	if len(pt.windows) != 5 {
		t.Fatalf("%d windows left, want 5", len(pt.windows))
	}
	for _, w := range pt.windows {
		if w.used <= 5 {
			t.Fatalf("window last used at %d survived while more recent ones were evicted", w.used)
		}
	}
	// Windows untouched for idleFlushes flushes leave, whatever their
	// event time.
	pt.flushes = 8 + idleFlushes
	pt.evict()
	if len(pt.windows) != 2 {
		t.Fatalf("%d windows left after they went idle, want 2", len(pt.windows))
	}
}

// A partition that moves to another instance takes its labelled gauges
// with it: the instance that released it no longer reports them.
func TestGaugesLeaveWithThePartition(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	topo := testTopology()
	js := setup(t, srv, topo)
	reg := prometheus.NewRegistry()
	a := startInstanceReg(t, srv.ClientURL(), "g-a", topo, reg)
	waitOwned(t, a, topo.Partitions)
	pub := &publisher{js: js, n: topo.Partitions}
	events := []event{}
	for i := range 400 {
		events = append(events, event{netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC).UnixMilli(), counts.Counters{Requests: 1}})
	}
	ref := reference{}
	for _, e := range events {
		ref.add(topo.Resolutions, e)
	}
	pub.publish(t, events, 0)
	waitExact(t, js, topo.Resolutions, ref, 0)
	if got := gaugePartitions(t, reg, "logtally_aggregator_watermark_seconds"); len(got) != topo.Partitions {
		t.Fatalf("watermark gauges for %d partitions before the move, want %d", len(got), topo.Partitions)
	}
	b := startInstance(t, srv.ClientURL(), "g-b", topo)
	deadline := time.Now().Add(20 * time.Second)
	for len(a.svc.Owned()) != topo.Partitions/2 || len(b.svc.Owned()) != topo.Partitions/2 {
		if time.Now().After(deadline) {
			t.Fatalf("no rebalance: %d and %d", len(a.svc.Owned()), len(b.svc.Owned()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	owned := map[string]bool{}
	for _, p := range a.svc.Owned() {
		owned[strconv.Itoa(p)] = true
	}
	for _, name := range []string{"logtally_aggregator_watermark_seconds", "logtally_aggregator_consumer_pending"} {
		for _, p := range gaugePartitions(t, reg, name) {
			if !owned[p] {
				t.Errorf("%s still reported for partition %s, which moved away", name, p)
			}
		}
	}
}

func startInstanceReg(t *testing.T, url, id string, topo topology.Config, reg *prometheus.Registry) *instance {
	t.Helper()
	inst := startInstanceWith(t, url, id, topo, func(s *Service) { s.m = newMetrics(reg) })
	return inst
}

func gaugePartitions(t *testing.T, reg *prometheus.Registry, name string) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			out = append(out, label(m, "partition"))
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// A flush that lost its compare-and-swap is ErrFenced and keeps its cause.
func TestFencedKeepsItsCause(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	topo := testTopology()
	js := setup(t, srv, topo)
	inst := startInstance(t, srv.ClientURL(), "f1", topo)
	inst.svc.loopStop() // no partitions run: the test drives one by hand
	ctx := context.Background()
	start := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	key := counts.Key(start, 0)
	st := inst.svc.stores[0]
	// Someone else created the window.
	if _, _, _, err := st.Commit(ctx, key, nil, 0, counts.Change{Entries: []counts.Entry{{Counters: counts.Counters{Requests: 1}}}, LastSeq: 1}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	pt := &partition{s: inst.svc, p: 0, windows: map[windowKey]*window{}, last: make([]*window, 2), lastKey: make([]windowKey, 2), pos: 5}
	pt.windows[windowKey{0, start.Unix()}] = &window{key: key, dirty: true, pending: []counts.Entry{{Addr: [counts.AddrLen]byte{1}, Counters: counts.Counters{Requests: 1}}}}
	err := pt.flush(ctx)
	if !errors.Is(err, ErrFenced) || !errors.Is(err, counts.ErrConflict) {
		t.Fatalf("flush against a window written by someone else: %v; want ErrFenced wrapping counts.ErrConflict", err)
	}
	if !strings.Contains(err.Error(), key) {
		t.Fatalf("error %q does not name the window", err)
	}
	_ = js
}

package windows

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
)

// Format 1 values (the previous release: one flat list of requests,
// WindowState addrs and counts) are read like any other window.
func TestReadsFormat1Values(t *testing.T) {
	e := newEnv(t, envOpts{partitions: 2})
	ctx := context.Background()
	kv, err := e.js.KeyValue(ctx, "logtally_counts_1m")
	if err != nil {
		t.Fatal(err)
	}
	ip1, ip2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::7")
	var rev uint64
	vals := map[int]*logtallyv1.WindowState{}
	for _, ip := range []netip.Addr{ip1, ip2} {
		a := counts.Pack(ip)
		p := counts.Partition(a, 2)
		if vals[p] == nil {
			vals[p] = &logtallyv1.WindowState{LastSeq: 1}
		}
		vals[p].Addrs = append(vals[p].Addrs, a[:]...)
		vals[p].Counts = append(vals[p].Counts, 7+uint64(len(ip.String())))
	}
	for p, st := range vals {
		b, err := proto.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if rev, err = kv.Put(ctx, counts.Key(base, p), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.r.WaitRevision(ctx, "logtally_counts_1m", rev); err != nil {
		t.Fatal(err)
	}
	rg := Range{base, base.Add(time.Minute)}
	top, err := e.r.Top(ctx, rg, TopQuery{N: 5})
	if err != nil || len(top.Items) != 2 || top.Items[0].IP != ip2 || top.Items[0].Count != 18 || top.Items[1].Count != 16 {
		t.Fatalf("top %+v %v", top, err)
	}
	tot, err := e.r.Totals(ctx, rg)
	if err != nil || tot.DistinctIPs != 2 || tot.Counters.Requests != 34 {
		t.Fatalf("totals %+v %v", tot, err)
	}
	s, err := e.r.Series(ctx, ip1, rg, time.Minute)
	if err != nil || s.Counters.Requests != 16 {
		t.Fatalf("series %+v %v", s, err)
	}
}

func TestNATSDownIsUnavailable(t *testing.T) {
	e := newEnv(t, envOpts{partitions: 2, cfg: func(c *Config) { c.Timeout = time.Second }})
	var d data
	d.evs = append(d.evs, ev{ip: netip.MustParseAddr("192.0.2.1"), t: base, c: counts.Counters{Requests: 1}})
	e.write(d, 1)
	e.srv.Shutdown()
	ctx := context.Background()
	rg := Range{base, base.Add(time.Hour)}
	if _, err := e.r.Top(ctx, rg, TopQuery{N: 3}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("top: %v", err)
	}
	if _, err := e.r.Totals(ctx, rg); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("totals: %v", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := e.r.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Top(ctx, rg, TopQuery{N: 3}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after stop: %v", err)
	}
}

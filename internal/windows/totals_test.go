package windows

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/topology"
)

func TestTotalsAndSeriesMatchReference(t *testing.T) {
	e := newEnv(t, envOpts{maxPayload: 64 << 10, layout: smallLayout})
	d, ips := genData(3, 5000)
	e.write(d, 4)
	ctx := context.Background()
	top, err := e.r.Top(ctx, Range{at("2026-11-24T09:00:00Z"), at("2026-11-24T13:00:00Z")}, TopQuery{N: 3})
	if err != nil {
		t.Fatal(err)
	}
	probe := []netip.Addr{ips[0], ips[100], ips[len(ips)-1], netip.MustParseAddr("192.0.2.77")}
	for _, it := range top.Items {
		probe = append(probe, it.IP)
	}
	for _, rg := range testRanges {
		from, to := at(rg.from), at(rg.to)
		got, err := e.r.Totals(ctx, Range{from, to})
		if err != nil {
			t.Fatal(err)
		}
		if want := refTotals(d, from, to); got != want {
			t.Fatalf("totals %s–%s:\n got %+v\nwant %+v", rg.from, rg.to, got, want)
		}
		for _, step := range []time.Duration{time.Minute, 7 * time.Minute, time.Hour} {
			if to.Sub(from)/step > 300 {
				continue
			}
			ts, err := e.r.TotalSeries(ctx, Range{from, to}, step)
			if err != nil {
				t.Fatal(err)
			}
			if ts.Counters != got.Counters {
				t.Fatalf("total series %s: %+v, totals %+v", step, ts.Counters, got.Counters)
			}
			for _, ip := range probe {
				s, err := e.r.Series(ctx, ip, Range{from, to}, step)
				if err != nil {
					t.Fatal(err)
				}
				wantC, wantPts := refSeries(d, ip, from, to, step)
				if s.Counters != wantC || !slices.Equal(s.Series, wantPts) {
					t.Fatalf("series %s %s–%s step %s: got %+v want %+v", ip, rg.from, rg.to, step, s.Counters, wantC)
				}
			}
		}
	}
	// An IPv4-mapped address and a zone are the plain address.
	v4 := ips[slices.IndexFunc(ips, netip.Addr.Is4)]
	rg := Range{at("2026-11-24T09:00:00Z"), at("2026-11-24T13:00:00Z")}
	a, _ := e.r.Series(ctx, v4, rg, time.Hour)
	b, _ := e.r.Series(ctx, netip.AddrFrom16(v4.As16()), rg, time.Hour)
	if a.Counters.Requests == 0 || a.Counters != b.Counters || b.IP != v4 {
		t.Fatalf("mapped form: %+v vs %+v", a, b)
	}
}

// Raw batches the aggregators found lost (in their checkpoints) show in
// every totals answer, and follow the checkpoints as they change.
func TestTotalsReportLostBatches(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	state, err := e.js.KeyValue(ctx, topology.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	put := func(p int, lost uint64) {
		data, _ := proto.Marshal(&logtallyv1.Checkpoint{Seq: 10, LostBatches: lost})
		if _, err := state.Put(ctx, "cp."+strconv.Itoa(p), data); err != nil {
			t.Fatal(err)
		}
	}
	put(0, 2)
	put(1, 3)
	rg := Range{at("2026-11-24T09:00:00Z"), at("2026-11-24T10:00:00Z")}
	wait := func(want uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := e.r.Totals(ctx, rg)
			if err != nil {
				t.Fatal(err)
			}
			if got.LostBatches == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("totals report %d lost batches, want %d", got.LostBatches, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait(5)
	put(0, 4)
	wait(7)
}

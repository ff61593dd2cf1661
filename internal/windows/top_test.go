package windows

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/counts"
)

var testRanges = []struct{ from, to string }{
	{"2026-11-24T09:57:00Z", "2026-11-24T12:03:00Z"}, // 1m + 1h + 1m
	{"2026-11-24T10:00:00Z", "2026-11-24T12:00:00Z"}, // 1h only
	{"2026-11-24T10:13:00Z", "2026-11-24T10:47:00Z"}, // 1m only, with the burst
	{"2026-11-24T10:31:00Z", "2026-11-24T10:32:00Z"}, // the burst minute alone
	{"2026-11-24T09:00:00Z", "2026-11-24T13:00:00Z"}, // everything
	{"2026-11-25T08:00:00Z", "2026-11-25T09:00:00Z"}, // nothing
}

// Every class, n and range, with and without prefixes, against sums of the
// input; windows with many runs, chunks, heads and inline entries.
func TestTopMatchesReference(t *testing.T) {
	e := newEnv(t, envOpts{maxPayload: 64 << 10, layout: smallLayout})
	d, _ := genData(1, 6000)
	e.write(d, 4)
	w, multi, runs, chunks, heads, inline := e.shape()
	t.Logf("%d windows (%d with several lists), %d runs, %d chunks, %d heads, %d inline entries", w, multi, runs, chunks, heads, inline)
	if multi < 20 || heads < 20 || inline == 0 || chunks < 2*runs {
		t.Fatalf("fixture too simple")
	}
	ctx := context.Background()
	prefixes := []string{"", "10.0.0.0/8", "10.3.0.0/16", "10.1.7.0/24", "2001:db8::/32", "::/0", "0.0.0.0/0", "::ff00:0/104", "192.0.2.0/24"}
	for _, rg := range testRanges {
		from, to := at(rg.from), at(rg.to)
		for class := counts.Class(0); class < counts.NumClasses; class++ {
			for _, ps := range prefixes {
				var p netip.Prefix
				if ps != "" {
					p = netip.MustParsePrefix(ps)
				}
				for _, n := range []int{1, 7, 100} {
					got, err := e.r.Top(ctx, Range{from, to}, TopQuery{N: n, Class: class, Prefix: p})
					if err != nil {
						t.Fatalf("%s %s %s n=%d: %v", rg.from, class, ps, n, err)
					}
					want := refTop(d, from, to, class, n, p)
					if !sameItems(got.Items, want) {
						t.Fatalf("%s–%s class %s prefix %q n=%d:\n got %s\nwant %s", rg.from, rg.to, class, ps, n, fmtItems(got.Items), fmtItems(want))
					}
				}
			}
		}
	}
	st := e.r.Stats()
	t.Logf("stats %+v", st)
	if st.Fallbacks == 0 {
		t.Fatal("no query fell back to reading runs in full: the fallback is untested")
	}
}

// With heavy hitters the heads decide the answer: no run is read in full
// and far fewer chunks than the windows hold are read.
func TestTopStopsWithinHeads(t *testing.T) {
	e := newEnv(t, envOpts{maxPayload: 64 << 10, layout: smallLayout})
	d, _ := genData(2, 8000)
	e.write(d, 3)
	_, _, _, chunks, heads, _ := e.shape()
	ctx := context.Background()
	for _, rg := range []Range{{at("2026-11-24T10:00:00Z"), at("2026-11-24T12:00:00Z")}, {at("2026-11-24T10:05:00Z"), at("2026-11-24T11:05:00Z")}} {
		r := e.newReader(DefaultConfig())
		got, err := r.Top(ctx, rg, TopQuery{N: 5, Class: counts.Requests})
		if err != nil {
			t.Fatal(err)
		}
		if want := refTop(d, rg.From, rg.To, counts.Requests, 5, netip.Prefix{}); !sameItems(got.Items, want) {
			t.Fatalf("%s: got %s want %s", rg, fmtItems(got.Items), fmtItems(want))
		}
		st := r.Stats()
		if st.Fallbacks != 0 {
			t.Fatalf("%s: %d partitions fell back", rg, st.Fallbacks)
		}
		t.Logf("%s: %d chunk gets; the store has %d chunks and %d heads", rg, st.ChunkGets, chunks, heads)
		if st.ChunkGets > uint64(chunks)/2 {
			t.Fatalf("%s: %d chunk gets, the store has %d chunks: the heads did not decide", rg, st.ChunkGets, chunks)
		}
	}
}

// Ties: many IPs with the same count, the cut of n falling inside them,
// IPv4 and IPv6 (also below ::ffff:0:0) mixed; the order is count desc,
// then netip.Addr.Compare.
func TestTopTies(t *testing.T) {
	e := newEnv(t, envOpts{maxPayload: 64 << 10, layout: smallLayout, partitions: 4})
	at := base.Add(70 * time.Minute)
	var d data
	add := func(ip string, n int) {
		for range n {
			d.evs = append(d.evs, ev{ip: netip.MustParseAddr(ip), t: at, c: counts.Counters{Requests: 1, Status4xx: 1}})
		}
	}
	for i := range 300 {
		add(fmt.Sprintf("10.0.%d.%d", i/200, i%200), 5)
		add(fmt.Sprintf("2001:db8::%x", i), 5)
		add(fmt.Sprintf("::%x", i+1), 5)
		add(fmt.Sprintf("::fffe:%x", i), 5)
	}
	add("9.255.255.255", 5)
	add("10.0.0.1", 7)
	add("1.1.1.1", 2)
	e.write(d, 3)
	ctx := context.Background()
	rg := Range{base, base.Add(2 * time.Hour)}
	for _, n := range []int{1, 2, 6, 250, 301, 1000} {
		for _, class := range []counts.Class{counts.Requests, counts.Status4xx} {
			got, err := e.r.Top(ctx, rg, TopQuery{N: n, Class: class})
			if err != nil {
				t.Fatal(err)
			}
			if want := refTop(d, rg.From, rg.To, class, n, netip.Prefix{}); !sameItems(got.Items, want) {
				t.Fatalf("n=%d %s:\n got %s\nwant %s", n, class, fmtItems(got.Items), fmtItems(want))
			}
		}
	}
	got, _ := e.r.Top(ctx, rg, TopQuery{N: 3})
	if got.Items[0].IP.String() != "10.0.0.1" || got.Items[1].IP.String() != "9.255.255.255" || got.Items[2].IP.String() != "10.0.0.0" {
		t.Fatalf("order %s", fmtItems(got.Items))
	}
}

func TestTopBadQueries(t *testing.T) {
	e := newEnv(t, envOpts{partitions: 2})
	ctx := context.Background()
	rg := Range{base, base.Add(time.Hour)}
	for _, c := range []struct {
		tq  TopQuery
		rg  Range
		msg string
	}{
		{TopQuery{N: 0}, rg, "n must be between 1 and 1000, got 0"},
		{TopQuery{N: 1001}, rg, "n must be between 1 and 1000, got 1001"},
		{TopQuery{N: 1, Class: 9}, rg, "class class(9) is not one of"},
		{TopQuery{N: 1}, Range{base.Add(30 * time.Second), base.Add(time.Hour)}, "is not aligned to 1m windows"},
		{TopQuery{N: 1}, Range{base, base}, "must be after from"},
	} {
		_, err := e.r.Top(ctx, c.rg, c.tq)
		if !isInvalid(err, c.msg) {
			t.Errorf("%+v: %v, want invalid argument %q", c.tq, err, c.msg)
		}
	}
}

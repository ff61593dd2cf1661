package query

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
)

var base = mustTime("2026-11-24T09:00:00Z")

// genData makes several thousand IPv4 and IPv6 clients with Zipf-like
// activity over 3h10m, plus dead letters and late records.
func genData(seed uint64) (data, []netip.Addr) {
	rng := rand.New(rand.NewPCG(seed, 1))
	var ips []netip.Addr
	for i := range 3500 {
		ips = append(ips, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	for i := range 500 {
		ips = append(ips, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}))
	}
	rng.Shuffle(len(ips), func(i, j int) { ips[i], ips[j] = ips[j], ips[i] })
	zipf := rand.NewZipf(rng, 1.2, 2, uint64(len(ips)-1))
	var d data
	span := int64(190 * time.Minute)
	for range 60000 {
		ip := ips[zipf.Uint64()]
		c := counts.Counters{Requests: 1, Bytes: 100 + rng.Uint64N(5000)}
		switch rng.IntN(12) {
		case 0, 1:
			c.Status4xx = 1
		case 2:
			c.Status5xx = 1
		case 3:
			c.AuthFailures = 1
		}
		d.requests = append(d.requests, event{ip: ip, t: base.Add(time.Duration(rng.Int64N(span))), c: c})
	}
	// Every IP at least once, so the distinct count covers all of them.
	for _, ip := range ips {
		d.requests = append(d.requests, event{ip: ip, t: base.Add(time.Duration(rng.Int64N(span)))})
	}
	for range 300 {
		d.dead = append(d.dead, base.Add(time.Duration(rng.Int64N(span))))
	}
	for range 200 {
		d.late = append(d.late, base.Add(time.Duration(rng.Int64N(span))))
	}
	return d, ips
}

func TestQueriesMatchReference(t *testing.T) {
	e := newEnv(t, 8)
	d, ips := genData(42)
	e.put(e.windows(d))
	e.svc.now = func() time.Time { return mustTime("2026-11-24T12:03:20Z") }

	ranges := []struct{ from, to string }{
		{"2026-11-24T09:57:00Z", "2026-11-24T12:03:00Z"}, // 1m + 1h + 1m
		{"2026-11-24T10:00:00Z", "2026-11-24T12:00:00Z"}, // 1h only
		{"2026-11-24T10:13:00Z", "2026-11-24T10:47:00Z"}, // 1m only
		{"2026-11-24T10:13:00Z", "2026-11-24T11:00:00Z"}, // 1m up to a boundary
		{"2026-11-24T09:00:00Z", "2026-11-24T12:10:00Z"}, // everything
		{"2026-11-24T08:00:00Z", "2026-11-24T14:00:00Z"}, // with empty hours
		{"2026-11-25T08:00:00Z", "2026-11-25T09:00:00Z"}, // nothing
	}
	ctx := context.Background()
	for _, rg := range ranges {
		from, to := mustTime(rg.from), mustTime(rg.to)
		t.Run(rg.from+"_"+rg.to, func(t *testing.T) {
			for _, n := range []int{1, 10, 250} {
				want := refTop(d, from, to, n)
				var got topJSON
				if code := e.getJSON(fmt.Sprintf("/api/v1/top?n=%d&%s", n, rangeQuery(from, to)), &got); code != 200 {
					t.Fatalf("top status %d", code)
				}
				if got.From != rg.from || got.To != rg.to {
					t.Errorf("top range %s–%s", got.From, got.To)
				}
				if !slices.Equal(got.Items, want) {
					t.Fatalf("http top n=%d:\n got %v\nwant %v", n, got.Items, want)
				}
				resp, err := e.client.Top(ctx, &logtallyv1.TopRequest{N: uint32(n), Range: pbRange(from, to)})
				if err != nil {
					t.Fatalf("grpc top: %v", err)
				}
				if g := fromPBItems(resp.Items); !slices.Equal(g, want) {
					t.Fatalf("grpc top n=%d:\n got %v\nwant %v", n, g, want)
				}
			}

			want := refTotals(d, from, to)
			var got totalsJSON
			if code := e.getJSON("/api/v1/totals?"+rangeQuery(from, to), &got); code != 200 || got != want {
				t.Fatalf("http totals %d: got %+v want %+v", code, got, want)
			}
			tr, err := e.client.Totals(ctx, &logtallyv1.TotalsRequest{Range: pbRange(from, to)})
			if err != nil {
				t.Fatalf("grpc totals: %v", err)
			}
			if tr.Requests != want.Requests || tr.DistinctIps != want.DistinctIPs || tr.DeadLetters != want.DeadLetters || tr.Late != want.Late ||
				tr.Counters.GetStatus_4Xx() != want.Status4xx || tr.Counters.GetStatus_5Xx() != want.Status5xx || tr.Counters.GetAuthFailures() != want.AuthFails || tr.Counters.GetBytes() != want.Bytes || tr.Counters.GetRequests() != want.Requests {
				t.Fatalf("grpc totals %+v want %+v", tr, want)
			}

			top := refTop(d, base, base.Add(4*time.Hour), 3)
			probe := []netip.Addr{ips[1000], ips[3999], netip.MustParseAddr("192.0.2.77")}
			for _, it := range top {
				probe = append(probe, netip.MustParseAddr(it.IP))
			}
			for _, step := range []time.Duration{time.Minute, 5 * time.Minute, 7 * time.Minute, time.Hour} {
				if int(to.Sub(from)/step) > 1000 {
					continue
				}
				for _, ip := range probe {
					wantCount, wantPts := refSeries(d, ip, from, to, step)
					var got seriesJSON
					path := fmt.Sprintf("/api/v1/ips/%s?step=%s&%s", url.PathEscape(ip.String()), formatDuration(step), rangeQuery(from, to))
					if code := e.getJSON(path, &got); code != 200 {
						t.Fatalf("series status %d", code)
					}
					if got.IP != ip.String() || got.Count != wantCount.Requests || got.countersJSON != countersToJSON(wantCount) || !slices.Equal(got.Series, wantPts) {
						t.Fatalf("http series %s step %s: got %d %v want %d %v", ip, step, got.Count, got.Series, wantCount, wantPts)
					}
					gr, err := e.client.IPSeries(ctx, &logtallyv1.IPSeriesRequest{Ip: ip.String(), Range: pbRange(from, to), Step: durationpb.New(step)})
					if err != nil {
						t.Fatalf("grpc series: %v", err)
					}
					var gp []pointJSON
					for _, p := range gr.Series {
						gp = append(gp, pointJSON{Start: fmtTime(p.Start.AsTime()), Count: p.Count, countersJSON: fromPBCounters(p.Counters)})
					}
					if gr.Count != wantCount.Requests || fromPBCounters(gr.Counters) != countersToJSON(wantCount) || !slices.Equal(gp, wantPts) {
						t.Fatalf("grpc series %s step %s: got %d %v want %d %v", ip, step, gr.Count, gp, wantCount, wantPts)
					}
				}
			}
		})
	}

	t.Run("last", func(t *testing.T) {
		// now 12:03:20 → to 12:04, from 11:04.
		from, to := mustTime("2026-11-24T11:04:00Z"), mustTime("2026-11-24T12:04:00Z")
		var got topJSON
		if code := e.getJSON("/api/v1/top?last=60m&n=5", &got); code != 200 {
			t.Fatalf("status %d", code)
		}
		if got.From != fmtTime(from) || got.To != fmtTime(to) || !slices.Equal(got.Items, refTop(d, from, to, 5)) {
			t.Fatalf("got %+v", got)
		}
		resp, err := e.client.Top(ctx, &logtallyv1.TopRequest{N: 5, Range: &logtallyv1.TimeRange{Last: durationpb.New(time.Hour)}})
		if err != nil || !slices.Equal(fromPBItems(resp.Items), got.Items) {
			t.Fatalf("grpc last: %v %v", err, resp)
		}
		// Default range: last 15m; a day suffix works.
		var tot totalsJSON
		if e.getJSON("/api/v1/totals", &tot); tot.From != "2026-11-24T11:49:00Z" || tot.To != fmtTime(to) {
			t.Fatalf("default range %s–%s", tot.From, tot.To)
		}
		if e.getJSON("/api/v1/totals?last=1d", &tot); tot != refTotals(d, to.Add(-24*time.Hour), to) {
			t.Fatalf("last=1d: %+v", tot)
		}
		// Exactly on a boundary, now is the end.
		e.svc.now = func() time.Time { return to }
		if e.getJSON("/api/v1/top?last=5m", &got); got.To != fmtTime(to) {
			t.Fatalf("to %s", got.To)
		}
	})

	t.Run("ipv6 zone and mapped", func(t *testing.T) {
		v6 := ips[slices.IndexFunc(ips, netip.Addr.Is6)]
		from, to := base, base.Add(4*time.Hour)
		want, _ := refSeries(d, v6, from, to, time.Hour)
		var got seriesJSON
		if code := e.getJSON("/api/v1/ips/"+url.PathEscape(v6.String()+"%eth0")+"?step=1h&"+rangeQuery(from, to), &got); code != 200 {
			t.Fatalf("status %d", code)
		}
		if got.IP != v6.String() || got.Count != want.Requests {
			t.Fatalf("got %s %d want %s %d", got.IP, got.Count, v6, want.Requests)
		}
		v4 := ips[slices.IndexFunc(ips, netip.Addr.Is4)]
		want, _ = refSeries(d, v4, from, to, time.Hour)
		mapped := netip.AddrFrom16(v4.As16()).String() // ::ffff:a.b.c.d
		if e.getJSON("/api/v1/ips/"+mapped+"?step=1h&"+rangeQuery(from, to), &got); got.IP != v4.String() || got.Count != want.Requests {
			t.Fatalf("mapped: got %s %d want %s %d", got.IP, got.Count, v4, want.Requests)
		}
	})

	t.Run("readiness", func(t *testing.T) {
		if f := e.health.Ready(); len(f) != 0 {
			t.Fatalf("not ready: %v", f)
		}
	})
}

func fromPBItems(items []*logtallyv1.IPCount) []itemJSON {
	out := make([]itemJSON, 0, len(items))
	for _, it := range items {
		out = append(out, itemJSON{IP: it.Ip, Count: it.Count, countersJSON: fromPBCounters(it.Counters)})
	}
	return out
}

func fromPBCounters(c *logtallyv1.ClassCounters) countersJSON {
	return countersJSON{Requests: c.GetRequests(), Status4xx: c.GetStatus_4Xx(), Status5xx: c.GetStatus_5Xx(), AuthFailures: c.GetAuthFailures(), Bytes: c.GetBytes()}
}

func pbRange(from, to time.Time) *logtallyv1.TimeRange {
	return &logtallyv1.TimeRange{From: timestamppb.New(from), To: timestamppb.New(to)}
}

func TestTopTieBreak(t *testing.T) {
	e := newEnv(t, 4)
	at := base.Add(10 * time.Minute)
	var d data
	add := func(ip string, n int) {
		for range n {
			d.requests = append(d.requests, event{ip: netip.MustParseAddr(ip), t: at})
		}
	}
	add("2001:db8::1", 5)
	add("::1", 5)
	add("10.0.0.2", 5)
	add("10.0.0.10", 5)
	add("9.255.255.255", 5)
	add("10.0.0.1", 7)
	add("1.1.1.1", 2)
	e.put(e.windows(d))
	var got topJSON
	e.getJSON("/api/v1/top?n=6&"+rangeQuery(base, base.Add(time.Hour)), &got)
	item := func(ip string, n uint64) itemJSON {
		return itemJSON{IP: ip, Count: n, countersJSON: countersJSON{Requests: n}}
	}
	want := []itemJSON{
		item("10.0.0.1", 7),
		item("9.255.255.255", 5), item("10.0.0.2", 5), item("10.0.0.10", 5), item("::1", 5), item("2001:db8::1", 5),
	}
	if !slices.Equal(got.Items, want) {
		t.Fatalf("got %v\nwant %v", got.Items, want)
	}
	if !slices.Equal(refTop(d, base, base.Add(time.Hour), 6), want) {
		t.Fatal("reference disagrees")
	}
}

func TestBadParameters(t *testing.T) {
	e := newEnv(t, 2)
	e.svc.now = func() time.Time { return mustTime("2026-11-24T12:03:20Z") }
	r := "from=2026-11-24T10:00:00Z&to=2026-11-24T11:00:00Z"
	cases := []struct {
		path, msg string
	}{
		{"/api/v1/top?n=0&" + r, "n must be between 1 and 1000, got 0"},
		{"/api/v1/top?n=1001&" + r, "n must be between 1 and 1000, got 1001"},
		{"/api/v1/top?n=99999999999999999999999&" + r, "is not a whole number"},
		{"/api/v1/top?n=abc&" + r, `n "abc" is not a whole number`},
		{"/api/v1/top?last=90s", "last 1m30s must be a positive whole number of 1m windows"},
		{"/api/v1/top?last=-5m", "last -5m must be a positive whole number of 1m windows"},
		{"/api/v1/top?last=0m", "last 0s must be a positive whole number"},
		{"/api/v1/top?last=soon", `last "soon" is not a duration`},
		{"/api/v1/top?last=500d", "range of 500d is longer than the maximum of 400d"},
		{"/api/v1/top?last=5m&" + r, "give either last or from and to, not both"},
		{"/api/v1/top?from=2026-11-24T10:00:00Z", "from and to must be given together"},
		{"/api/v1/top?to=2026-11-24T10:00:00Z", "from and to must be given together"},
		{"/api/v1/top?from=2026-11-24T10:00:30Z&to=2026-11-24T11:00:00Z", "from 2026-11-24T10:00:30Z is not aligned to 1m windows"},
		{"/api/v1/totals?from=2026-11-24T10:00:00Z&to=2026-11-24T11:00:00.5Z", "to 2026-11-24T11:00:00.5Z is not aligned to 1m windows"},
		{"/api/v1/top?from=2026-11-24T11:00:00Z&to=2026-11-24T10:00:00Z", "to 2026-11-24T10:00:00Z must be after from 2026-11-24T11:00:00Z"},
		{"/api/v1/top?from=2026-11-24T11:00:00Z&to=2026-11-24T11:00:00Z", "must be after from"},
		{"/api/v1/totals?from=1926-11-24T11:00:00Z&to=2026-11-24T11:00:00Z", "is longer than the maximum of 400d"},
		{"/api/v1/totals?from=yesterday&to=2026-11-24T11:00:00Z", `from "yesterday" is not an RFC 3339 time`},
		{"/api/v1/ips/not-an-ip?" + r, `ip "not-an-ip" is not an IP address`},
		{"/api/v1/ips/10.0.0.1?step=30s&" + r, "step 30s must be a positive multiple of 1m"},
		{"/api/v1/ips/10.0.0.1?step=90s&" + r, "step 1m30s must be a positive multiple of 1m"},
		{"/api/v1/ips/10.0.0.1?step=-1m&" + r, "step -1m must be a positive multiple of 1m"},
		{"/api/v1/ips/10.0.0.1?step=often&" + r, `step "often" is not a duration`},
		{"/api/v1/ips/10.0.0.1?step=1m&last=400d", "more than the maximum of 10000"},
	}
	for _, c := range cases {
		var got map[string]string
		code := e.getJSON(c.path, &got)
		if code != 400 || !strings.Contains(got["error"], c.msg) {
			t.Errorf("%s: %d %q, want 400 containing %q", c.path, code, got["error"], c.msg)
		}
	}

	// Accepted: IPv6 with a zone (dropped), unknown IP (zeros).
	var s seriesJSON
	if code := e.getJSON("/api/v1/ips/"+url.PathEscape("fe80::1%eth0")+"?"+r, &s); code != 200 || s.IP != "fe80::1" || s.Count != 0 || len(s.Series) != 60 {
		t.Errorf("zone: %d %+v", code, s)
	}

	ctx := context.Background()
	from, to := mustTime("2026-11-24T10:00:00Z"), mustTime("2026-11-24T11:00:00Z")
	grpcCases := []struct {
		name string
		call func() error
		msg  string
	}{
		{"n huge", func() error {
			_, err := e.client.Top(ctx, &logtallyv1.TopRequest{N: 5000, Range: pbRange(from, to)})
			return err
		}, "n must be between 1 and 1000, got 5000"},
		{"last 90s", func() error {
			_, err := e.client.Top(ctx, &logtallyv1.TopRequest{Range: &logtallyv1.TimeRange{Last: durationpb.New(90 * time.Second)}})
			return err
		}, "last 1m30s must be a positive whole number of 1m windows"},
		{"last negative", func() error {
			_, err := e.client.Totals(ctx, &logtallyv1.TotalsRequest{Range: &logtallyv1.TimeRange{Last: durationpb.New(-5 * time.Minute)}})
			return err
		}, "last -5m must be a positive whole number of 1m windows"},
		{"from without to", func() error {
			_, err := e.client.Top(ctx, &logtallyv1.TopRequest{Range: &logtallyv1.TimeRange{From: timestamppb.New(from)}})
			return err
		}, "from and to must be given together"},
		{"unaligned", func() error {
			_, err := e.client.Top(ctx, &logtallyv1.TopRequest{Range: pbRange(from.Add(30*time.Second), to)})
			return err
		}, "from 2026-11-24T10:00:30Z is not aligned to 1m windows"},
		{"to before from", func() error {
			_, err := e.client.Totals(ctx, &logtallyv1.TotalsRequest{Range: pbRange(to, from)})
			return err
		}, "must be after from"},
		{"100 years", func() error {
			_, err := e.client.Totals(ctx, &logtallyv1.TotalsRequest{Range: pbRange(to.AddDate(-100, 0, 0), to)})
			return err
		}, "is longer than the maximum of 400d"},
		{"bad ip", func() error {
			_, err := e.client.IPSeries(ctx, &logtallyv1.IPSeriesRequest{Ip: "300.1.1.1", Range: pbRange(from, to)})
			return err
		}, `ip "300.1.1.1" is not an IP address`},
		{"step 30s", func() error {
			_, err := e.client.IPSeries(ctx, &logtallyv1.IPSeriesRequest{Ip: "10.0.0.1", Range: pbRange(from, to), Step: durationpb.New(30 * time.Second)})
			return err
		}, "step 30s must be a positive multiple of 1m"},
		{"step not multiple", func() error {
			_, err := e.client.IPSeries(ctx, &logtallyv1.IPSeriesRequest{Ip: "10.0.0.1", Range: pbRange(from, to), Step: durationpb.New(150 * time.Second)})
			return err
		}, "step 2m30s must be a positive multiple of 1m"},
		{"watch n huge", func() error {
			st, err := e.client.WatchTop(ctx, &logtallyv1.WatchTopRequest{N: 5000, Range: pbRange(from, to)})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		}, "n must be between 1 and 1000, got 5000"},
	}
	for _, c := range grpcCases {
		err := c.call()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), c.msg) {
			t.Errorf("grpc %s: %v, want InvalidArgument containing %q", c.name, err, c.msg)
		}
	}
	// Zone accepted over gRPC too.
	resp, err := e.client.IPSeries(ctx, &logtallyv1.IPSeriesRequest{Ip: "fe80::1%eth0", Range: pbRange(from, to)})
	if err != nil || resp.Ip != "fe80::1" {
		t.Errorf("grpc zone: %v %v", err, resp)
	}
}

func TestWatchTop(t *testing.T) {
	e := newEnv(t, 4)
	from, to := base.Add(time.Hour), base.Add(2*time.Hour) // 10:00–11:00: one 1h window
	var d data
	for i := range 20 {
		for range i + 1 {
			d.requests = append(d.requests, event{ip: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), t: from.Add(time.Duration(i) * time.Minute)})
		}
	}
	e.put(e.windows(d))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := e.client.WatchTop(ctx, &logtallyv1.WatchTopRequest{N: 3, Range: pbRange(from, to)})
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := fromPBItems(first.Top.Items); !slices.Equal(got, refTop(d, from, to, 3)) {
		t.Fatalf("first: %v", got)
	}

	// A change outside the range's windows sends nothing; the next one inside does.
	var other data
	other.requests = append(other.requests, event{ip: netip.MustParseAddr("10.9.9.9"), t: to.Add(5 * time.Minute)})
	e.put(e.windows(other))

	for range 100 {
		d.requests = append(d.requests, event{ip: netip.MustParseAddr("2001:db8::beef"), t: from.Add(30 * time.Minute)})
	}
	e.put(e.windows(d))
	next, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got := fromPBItems(next.Top.Items)
	if !slices.Equal(got, refTop(d, from, to, 3)) || got[0].IP != "2001:db8::beef" || got[0].Count != 100 {
		t.Fatalf("update: %v", got)
	}

	// A last range starts at once too.
	defer func() {
		// Stop ends open streams with Unavailable instead of waiting for them.
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := e.svc.Stop(sctx); err != nil {
			t.Errorf("stop with open streams: %v", err)
		}
		if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
			t.Errorf("stream after stop: %v", err)
		}
	}()
	st2, err := e.client.WatchTop(ctx, &logtallyv1.WatchTopRequest{N: 3, Range: &logtallyv1.TimeRange{Last: durationpb.New(5 * time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st2.Recv(); err != nil || m.Top.To.AsTime().Sub(m.Top.From.AsTime()) != 5*time.Minute {
		t.Fatalf("last stream: %v %v", err, m)
	}
}

func TestCacheSeesNewRevision(t *testing.T) {
	e := newEnv(t, 2)
	ip := netip.MustParseAddr("192.0.2.1")
	from, to := base, base.Add(time.Hour)
	var d data
	for range 3 {
		d.requests = append(d.requests, event{ip: ip, t: base.Add(time.Minute)})
	}
	e.put(e.windows(d))
	check := func(want uint64) {
		t.Helper()
		var got topJSON
		e.getJSON("/api/v1/top?"+rangeQuery(from, to), &got) // 1h window
		var s seriesJSON
		e.getJSON("/api/v1/ips/192.0.2.1?"+rangeQuery(base.Add(time.Minute), base.Add(2*time.Minute)), &s) // 1m window
		if len(got.Items) != 1 || got.Items[0].Count != want || s.Count != want {
			t.Fatalf("top %v series %d, want %d", got.Items, s.Count, want)
		}
	}
	check(3)
	check(3) // cached
	if st := e.svc.reader.Stats(); st.CacheItems == 0 || st.CacheHits == 0 {
		t.Fatalf("nothing cached: %+v", st)
	}
	for range 4 {
		d.requests = append(d.requests, event{ip: ip, t: base.Add(time.Minute)})
	}
	e.put(e.windows(d))
	check(7)

	// A deleted key reads as zero.
	kv, err := e.js.KeyValue(context.Background(), "logtally_counts_1h")
	if err != nil {
		t.Fatal(err)
	}
	key := counts.Key(base, counts.Partition(counts.Pack(ip), 2))
	if err := kv.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.svc.reader.WaitRevision(ctx, "logtally_counts_1h", st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq); err != nil {
		t.Fatal(err)
	}
	var got topJSON
	e.getJSON("/api/v1/top?"+rangeQuery(from, to), &got)
	if len(got.Items) != 0 {
		t.Fatalf("after delete: %v", got.Items)
	}
}

func TestHealthAndReflection(t *testing.T) {
	e := newEnv(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(e.cc)
	for _, svc := range []string{"", "logtally.v1.QueryService"} {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v %v", svc, err, resp)
		}
	}
	rc := reflectionpb.NewServerReflectionClient(e.cc)
	st, err := rc.ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	if !slices.Contains(names, "logtally.v1.QueryService") || !slices.Contains(names, "grpc.health.v1.Health") {
		t.Fatalf("reflection lists %v", names)
	}
}

func TestNATSFailureIsUnavailable(t *testing.T) {
	e := newEnv(t, 2, func(c *Config) { c.Timeout = time.Second })
	var d data
	d.requests = append(d.requests, event{ip: netip.MustParseAddr("192.0.2.1"), t: base})
	e.put(e.windows(d))
	e.srv.Shutdown()
	var got map[string]string
	if code := e.getJSON("/api/v1/top?"+rangeQuery(base, base.Add(time.Hour)), &got); code != 503 || got["error"] == "" {
		t.Fatalf("top without NATS: %d %v", code, got)
	}
	_, err := e.client.Totals(context.Background(), &logtallyv1.TotalsRequest{Range: pbRange(base, base.Add(time.Minute))})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("grpc totals without NATS: %v", err)
	}
	// Stop does not hang on the unreachable server.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := e.svc.Stop(sctx); err != nil {
		t.Fatal(err)
	}
}

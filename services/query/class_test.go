package query

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
)

var classNames = []string{"requests", "4xx", "5xx", "auth_failure", "bytes"}

// Every class ranks by its own counter, over HTTP and gRPC, with and
// without a prefix; items, series points and totals carry all counters.
func TestClassesMatchReference(t *testing.T) {
	e := newEnv(t, 8)
	d, _ := genData(11)
	// A brute-forcing IP and one that only gets errors.
	for i := range 300 {
		at := base.Add(time.Duration(i) * 30 * time.Second)
		d.requests = append(d.requests,
			event{ip: netip.MustParseAddr("203.0.113.9"), t: at, c: counts.Counters{Requests: 1, Status4xx: 1, AuthFailures: 1, Bytes: 90}},
			event{ip: netip.MustParseAddr("2001:db8::bad"), t: at, c: counts.Counters{Requests: 2, Status5xx: 2, Bytes: 10}})
	}
	e.put(e.windows(d))
	ctx := context.Background()
	for _, rg := range []struct{ from, to string }{
		{"2026-11-24T09:57:00Z", "2026-11-24T12:03:00Z"},
		{"2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z"},
		{"2026-11-24T10:13:00Z", "2026-11-24T10:47:00Z"},
	} {
		from, to := mustTime(rg.from), mustTime(rg.to)
		for ci, name := range classNames {
			class := counts.Class(ci)
			for _, cidr := range []string{"", "10.0.0.0/8", "2001:db8::/32", "203.0.113.0/24"} {
				var p netip.Prefix
				q := fmt.Sprintf("/api/v1/top?n=15&class=%s&%s", name, rangeQuery(from, to))
				if cidr != "" {
					p = netip.MustParsePrefix(cidr)
					q += "&cidr=" + url.QueryEscape(cidr)
				}
				want := refTopClass(d, from, to, class, 15, p)
				var got topJSON
				if code := e.getJSON(q, &got); code != 200 {
					t.Fatalf("%s: %d", q, code)
				}
				if got.Class != name || !slices.Equal(got.Items, want) {
					t.Fatalf("%s:\n got %s %v\nwant %v", q, got.Class, got.Items, want)
				}
				if cidr != "" {
					continue
				}
				resp, err := e.client.Top(ctx, &logtallyv1.TopRequest{N: 15, Class: name, Range: pbRange(from, to)})
				if err != nil {
					t.Fatal(err)
				}
				if resp.Class != name || !slices.Equal(fromPBItems(resp.Items), want) {
					t.Fatalf("grpc %s %s: got %v want %v", name, rg.from, fromPBItems(resp.Items), want)
				}
			}
		}
		// The default class is requests.
		var def, req topJSON
		e.getJSON("/api/v1/top?n=5&"+rangeQuery(from, to), &def)
		e.getJSON("/api/v1/top?n=5&class=requests&"+rangeQuery(from, to), &req)
		if def.Class != "requests" || !slices.Equal(def.Items, req.Items) {
			t.Fatalf("default class: %+v vs %+v", def, req)
		}
		// Totals carry the class totals.
		var tot totalsJSON
		e.getJSON("/api/v1/totals?"+rangeQuery(from, to), &tot)
		if want := refTotals(d, from, to); tot != want || tot.Status4xx == 0 || tot.AuthFails == 0 || tot.Bytes == 0 {
			t.Fatalf("totals %+v want %+v", tot, want)
		}
	}
	// A series carries the counters per point.
	var s seriesJSON
	from, to := base, base.Add(3*time.Hour)
	e.getJSON("/api/v1/ips/203.0.113.9?step=1h&"+rangeQuery(from, to), &s)
	wc, wp := refSeries(d, netip.MustParseAddr("203.0.113.9"), from, to, time.Hour)
	if s.Count != 300 || s.countersJSON != countersToJSON(wc) || s.AuthFailures != 300 || !slices.Equal(s.Series, wp) {
		t.Fatalf("series %+v", s)
	}
}

func TestBadClass(t *testing.T) {
	e := newEnv(t, 2)
	r := "from=2026-11-24T10:00:00Z&to=2026-11-24T11:00:00Z"
	for _, path := range []string{"/api/v1/top?class=errors&" + r, "/api/v1/top?class=4XX&cidr=10.0.0.0/8&" + r, "/api/v1/watch/top?class=401&" + r} {
		var got map[string]string
		if code := e.getJSON(path, &got); code != 400 || !strings.Contains(got["error"], "unknown class") || !strings.Contains(got["error"], "want one of requests, 4xx, 5xx, auth_failure, bytes") {
			t.Errorf("%s: %d %q", path, code, got["error"])
		}
	}
	ctx := context.Background()
	_, err := e.client.Top(ctx, &logtallyv1.TopRequest{Class: "errors", Range: pbRange(base, base.Add(time.Hour))})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), `unknown class "errors"`) {
		t.Errorf("grpc: %v", err)
	}
	st, err := e.client.WatchTop(ctx, &logtallyv1.WatchTopRequest{Class: "errors", Range: pbRange(base, base.Add(time.Hour))})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("grpc watch: %v", err)
	}
}

// WatchTop and the SSE stream rank by class too, and push when the ranked
// counter changes.
func TestWatchByClass(t *testing.T) {
	e := newEnv(t, 4)
	from, to := base.Add(time.Hour), base.Add(2*time.Hour)
	var d data
	for i := range 10 {
		for range i + 1 {
			d.requests = append(d.requests, event{ip: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), t: from.Add(time.Duration(i) * time.Minute), c: counts.Counters{Requests: 1, Status5xx: uint64(i % 3)}})
		}
	}
	e.put(e.windows(d))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := e.client.WatchTop(ctx, &logtallyv1.WatchTopRequest{N: 3, Class: "5xx", Range: pbRange(from, to)})
	if err != nil {
		t.Fatal(err)
	}
	sse := openSSE(t, ctx, e.http.URL+"/api/v1/watch/top?n=3&class=5xx&"+rangeQuery(from, to))
	want := refTopClass(d, from, to, counts.Status5xx, 3, netip.Prefix{})
	first, err := st.Recv()
	if err != nil || first.Top.Class != "5xx" || !slices.Equal(fromPBItems(first.Top.Items), want) {
		t.Fatalf("first: %v %v, want %v", first, err, want)
	}
	var got topJSON
	if err := json.Unmarshal(sse.next(t), &got); err != nil || !slices.Equal(got.Items, want) {
		t.Fatalf("sse first: %+v %v", got, err)
	}
	for range 40 {
		d.requests = append(d.requests, event{ip: netip.MustParseAddr("2001:db8::5"), t: from.Add(30 * time.Minute), c: counts.Counters{Requests: 1, Status5xx: 1}})
	}
	e.put(e.windows(d))
	want = refTopClass(d, from, to, counts.Status5xx, 3, netip.Prefix{})
	next, err := st.Recv()
	if err != nil || !slices.Equal(fromPBItems(next.Top.Items), want) || want[0].IP != "2001:db8::5" {
		t.Fatalf("update: %v %v, want %v", next, err, want)
	}
	if err := json.Unmarshal(sse.next(t), &got); err != nil || !slices.Equal(got.Items, want) {
		t.Fatalf("sse update: %+v %v", got, err)
	}
}

// The query metrics exist and move.
func TestMetrics(t *testing.T) {
	e := newEnv(t, 2)
	var d data
	d.requests = append(d.requests, event{ip: netip.MustParseAddr("192.0.2.1"), t: base})
	e.put(e.windows(d))
	var got topJSON
	e.getJSON("/api/v1/top?"+rangeQuery(base, base.Add(time.Hour)), &got)
	e.getJSON("/api/v1/top?"+rangeQuery(base, base.Add(time.Hour)), &got)
	e.getJSON("/api/v1/top?class=nope&"+rangeQuery(base, base.Add(time.Hour)), nil)
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			vals[mf.GetName()] += v
		}
	}
	for name, min := range map[string]float64{
		"logtally_query_requests_total": 3, "logtally_query_duration_seconds": 3,
		"logtally_query_cache_hits_total": 1, "logtally_query_cache_misses_total": 1, "logtally_query_kv_gets_total": 1,
		"logtally_query_chunk_gets_total": 0, "logtally_query_top_fallbacks_total": 0, "logtally_query_retries_total": 0,
		"logtally_query_expired_windows_total": 0, "logtally_query_cache_bytes": 1, "logtally_query_index_keys": 2,
		"logtally_query_watch_subscribers": 0,
	} {
		v, ok := vals[name]
		if !ok || v < min {
			t.Errorf("%s = %v (present %v), want at least %v", name, v, ok, min)
		}
	}
}

package query

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/topology"
)

// refTotalSeries sums every IP's counters per step.
func refTotalSeries(d data, from, to time.Time, step time.Duration) (uint64, []pointJSON) {
	total, pts := refPoints(d.requests, from, to, step)
	return total.Requests, pts
}

func refTopPrefix(d data, from, to time.Time, n int, p netip.Prefix) []itemJSON {
	return refTopClass(d, from, to, counts.Requests, n, p)
}

func TestTotalSeriesAndCIDRMatchReference(t *testing.T) {
	e := newEnv(t, 8)
	d, _ := genData(7)
	e.put(e.windows(d))
	e.svc.now = func() time.Time { return mustTime("2026-11-24T12:03:20Z") }

	ranges := []struct {
		from, to string
		steps    []time.Duration
	}{
		{"2026-11-24T09:57:00Z", "2026-11-24T12:03:00Z", []time.Duration{time.Minute, 5 * time.Minute, 7 * time.Minute, time.Hour}},
		{"2026-11-24T10:00:00Z", "2026-11-24T12:00:00Z", []time.Duration{time.Hour, 30 * time.Minute, 2 * time.Hour}},
		{"2026-11-24T10:13:00Z", "2026-11-24T10:47:00Z", []time.Duration{time.Minute, 10 * time.Minute}},
		{"2026-11-24T08:00:00Z", "2026-11-24T14:00:00Z", []time.Duration{time.Hour, 15 * time.Minute}},
		{"2026-11-25T08:00:00Z", "2026-11-25T09:00:00Z", []time.Duration{time.Minute}},
	}
	for _, rg := range ranges {
		from, to := mustTime(rg.from), mustTime(rg.to)
		var tot totalsJSON
		if code := e.getJSON("/api/v1/totals?"+rangeQuery(from, to), &tot); code != 200 {
			t.Fatalf("totals %d", code)
		}
		for _, step := range rg.steps {
			var got totalSeriesJSON
			path := "/api/v1/series?step=" + formatDuration(step) + "&" + rangeQuery(from, to)
			if code := e.getJSON(path, &got); code != 200 {
				t.Fatalf("%s: %d", path, code)
			}
			wantCount, wantPts := refTotalSeries(d, from, to, step)
			if got.Count != wantCount || !slices.Equal(got.Series, wantPts) || got.From != fmtTime(from) || got.To != fmtTime(to) || got.Step != formatDuration(step) {
				t.Fatalf("%s: count %d (want %d), %d points, first %v", path, got.Count, wantCount, len(got.Series), got.Series[:min(3, len(got.Series))])
			}
			if got.Count != tot.Requests {
				t.Fatalf("%s: series sums to %d, totals say %d", path, got.Count, tot.Requests)
			}
		}

		prefixes := []string{"10.0.0.0/8", "10.0.3.0/24", "10.0.4.128/25", "2001:db8::/32", "2001:db8::100/120", "::/0", "0.0.0.0/0", "192.0.2.0/24", "10.0.0.5/32"}
		for _, ps := range prefixes {
			p := netip.MustParsePrefix(ps)
			for _, n := range []int{1, 10, 1000} {
				var got topJSON
				path := "/api/v1/top?n=" + itoa(n) + "&cidr=" + url.QueryEscape(ps) + "&" + rangeQuery(from, to)
				if code := e.getJSON(path, &got); code != 200 {
					t.Fatalf("%s: %d", path, code)
				}
				want := refTopPrefix(d, from, to, n, p)
				if !slices.Equal(got.Items, want) || got.Items == nil {
					t.Fatalf("%s: got %d items %v, want %d %v", path, len(got.Items), head(got.Items), len(want), head(want))
				}
			}
		}
	}

	// Host bits are dropped, and a mapped prefix is its IPv4 prefix.
	from, to := mustTime("2026-11-24T09:00:00Z"), mustTime("2026-11-24T13:00:00Z")
	var a, b, c topJSON
	e.getJSON("/api/v1/top?n=50&cidr=10.0.3.0/24&"+rangeQuery(from, to), &a)
	e.getJSON("/api/v1/top?n=50&cidr=10.0.3.77/24&"+rangeQuery(from, to), &b)
	e.getJSON("/api/v1/top?n=50&cidr="+url.QueryEscape("::ffff:10.0.3.0/120")+"&"+rangeQuery(from, to), &c)
	if len(a.Items) == 0 || !slices.Equal(a.Items, b.Items) || !slices.Equal(a.Items, c.Items) {
		t.Fatalf("prefix forms differ: %v / %v / %v", head(a.Items), head(b.Items), head(c.Items))
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func head(items []itemJSON) []itemJSON { return items[:min(5, len(items))] }

func TestDashboardBadParameters(t *testing.T) {
	e := newEnv(t, 2)
	e.svc.now = func() time.Time { return mustTime("2026-11-24T12:03:20Z") }
	r := "from=2026-11-24T10:00:00Z&to=2026-11-24T11:00:00Z"
	cases := []struct{ path, msg string }{
		{"/api/v1/series?step=30s&" + r, "step 30s must be a positive multiple of 1m"},
		{"/api/v1/series?step=0&" + r, "step 0s must be a positive multiple of 1m"},
		{"/api/v1/series?step=often&" + r, `step "often" is not a duration`},
		{"/api/v1/series?step=1m&last=400d", "more than the maximum of 10000"},
		{"/api/v1/series?last=soon", `last "soon" is not a duration`},
		{"/api/v1/series?from=2026-11-24T10:00:30Z&to=2026-11-24T11:00:00Z", "is not aligned to 1m windows"},
		{"/api/v1/top?cidr=&" + r, "cidr is empty"},
		{"/api/v1/top?cidr=10.0.0.0/33&" + r, `cidr "10.0.0.0/33" is not a prefix`},
		{"/api/v1/top?cidr=10.0.0.1&" + r, `cidr "10.0.0.1" is not a prefix`},
		{"/api/v1/top?cidr=fe80::%25eth0/64&" + r, "is not a prefix"},
		{"/api/v1/top?cidr=<script>&" + r, "is not a prefix"},
		{"/api/v1/top?cidr=10.0.0.0/8&n=0&" + r, "n must be between 1 and 1000, got 0"},
		{"/api/v1/top?cidr=10.0.0.0/8&n=x&" + r, `n "x" is not a whole number`},
		{"/api/v1/top?cidr=10.0.0.0/8&last=5m&" + r, "give either last or from and to"},
		{"/api/v1/watch/top?n=0&" + r, "n must be between 1 and 1000, got 0"},
		{"/api/v1/watch/top?last=90s", "last 1m30s must be a positive whole number"},
		{"/api/v1/watch/top?cidr=nope", `cidr "nope" is not a prefix`},
		{"/api/v1/watch/top?from=2026-11-24T11:00:00Z&to=2026-11-24T10:00:00Z", "must be after from"},
		{"/api/v1/watch/overview?step=7s", "step 7s must be a positive multiple of 1m"},
		{"/api/v1/watch/overview?step=1m&last=400d", "more than the maximum of 10000"},
		{"/api/v1/watch/overview?from=2026-11-24T11:00:00Z", "from and to must be given together"},
		{"/api/v1/watch/overview?decisions=maybe", `decisions "maybe" is not a boolean`},
		{"/api/v1/dead-letters?n=0", "n must be between 1 and 500, got 0"},
		{"/api/v1/dead-letters?n=501", "n must be between 1 and 500, got 501"},
		{"/api/v1/dead-letters?n=lots", `n "lots" is not a whole number`},
	}
	for _, c := range cases {
		resp, err := http.Get(e.http.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got map[string]string
		_ = json.Unmarshal(b, &got)
		if resp.StatusCode != 400 || !strings.Contains(got["error"], c.msg) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %s %q, want 400 JSON containing %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), b, c.msg)
		}
	}
}

func TestDashboardPageAndAssets(t *testing.T) {
	e := newEnv(t, 1)
	for _, c := range []struct{ path, ctype, contains string }{
		{"/", "text/html", `<script src="/ui/app.js"`},
		{"/ui/app.js", "javascript", "EventSource"},
		{"/ui/style.css", "text/css", "prefers-color-scheme"},
	} {
		resp, err := http.Get(e.http.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), c.ctype) || !strings.Contains(string(b), c.contains) {
			t.Errorf("%s: %d %s, %d bytes", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: CSP %q", c.path, csp)
		}
	}
	for _, p := range []string{"/ui/nope.js", "/nope"} {
		resp, err := http.Get(e.http.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", p, resp.StatusCode)
		}
	}
}

// sseReader reads events from a text/event-stream.
type sseReader struct {
	resp *http.Response
	sc   *bufio.Scanner
}

func openSSE(t *testing.T, ctx context.Context, u string) *sseReader {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %d %s %s", u, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	return &sseReader{resp: resp, sc: sc}
}

// next returns the data of the next event.
func (r *sseReader) next(t *testing.T) []byte {
	t.Helper()
	var data []byte
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case line == "":
			if data != nil {
				return data
			}
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):]...)
		}
	}
	t.Fatalf("stream ended: %v", r.sc.Err())
	return nil
}

func TestSSEWatchTopAndOverview(t *testing.T) {
	e := newEnv(t, 4)
	from, to := base.Add(time.Hour), base.Add(2*time.Hour)
	var d data
	for i := range 20 {
		for range i + 1 {
			d.requests = append(d.requests, event{ip: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), t: from.Add(time.Duration(i) * time.Minute)})
		}
	}
	d.dead = append(d.dead, from.Add(time.Minute))
	e.put(e.windows(d))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	top := openSSE(t, ctx, e.http.URL+"/api/v1/watch/top?n=3&"+rangeQuery(from, to))
	cidr := openSSE(t, ctx, e.http.URL+"/api/v1/watch/top?n=2&cidr=10.0.0.0/29&"+rangeQuery(from, to))
	ov := openSSE(t, ctx, e.http.URL+"/api/v1/watch/overview?step=10m&"+rangeQuery(from, to))

	var got topJSON
	if err := json.Unmarshal(top.next(t), &got); err != nil {
		t.Fatal(err)
	}
	if want := refTop(d, from, to, 3); !slices.Equal(got.Items, want) || got.From != fmtTime(from) {
		t.Fatalf("first top: %+v, want %v", got, want)
	}
	var gotC topJSON
	json.Unmarshal(cidr.next(t), &gotC)
	if want := refTopPrefix(d, from, to, 2, netip.MustParsePrefix("10.0.0.0/29")); !slices.Equal(gotC.Items, want) {
		t.Fatalf("first cidr top: %+v, want %v", gotC, want)
	}
	var o overviewJSON
	if err := json.Unmarshal(ov.next(t), &o); err != nil {
		t.Fatal(err)
	}
	wantTot := refTotals(d, from, to)
	wantCount, wantPts := refTotalSeries(d, from, to, 10*time.Minute)
	if o.Totals != wantTot || o.Series.Count != wantCount || !slices.Equal(o.Series.Series, wantPts) {
		t.Fatalf("first overview: %+v", o)
	}

	// A new IP enters the top: every stream pushes.
	for range 100 {
		d.requests = append(d.requests, event{ip: netip.MustParseAddr("10.0.0.7"), t: from.Add(30 * time.Minute)})
	}
	e.put(e.windows(d))
	if err := json.Unmarshal(top.next(t), &got); err != nil {
		t.Fatal(err)
	}
	if got.Items[0].IP != "10.0.0.7" || got.Items[0].Count != 108 || !slices.Equal(got.Items, refTop(d, from, to, 3)) {
		t.Fatalf("pushed top: %+v", got)
	}
	json.Unmarshal(cidr.next(t), &gotC)
	if gotC.Items[0].IP != "10.0.0.7" {
		t.Fatalf("pushed cidr top: %+v", gotC)
	}
	json.Unmarshal(ov.next(t), &o)
	if o.Totals.Requests != refTotals(d, from, to).Requests {
		t.Fatalf("pushed overview: %+v", o.Totals)
	}

	// Stopping the service ends the streams instead of hanging.
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := e.svc.Stop(sctx); err != nil {
		t.Fatalf("stop with open streams: %v", err)
	}
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, top.resp.Body)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open after stop")
	}
}

func TestDeadLetters(t *testing.T) {
	e := newEnv(t, 1)
	var code int
	var empty deadLettersJSON
	if code = e.getJSON("/api/v1/dead-letters", &empty); code != 200 || empty.Items == nil || len(empty.Items) != 0 {
		t.Fatalf("empty stream: %d %+v", code, empty)
	}
	ctx := context.Background()
	long := strings.Repeat("x", 1000)
	lines := [][]byte{
		[]byte("no address here"),
		{0x16, 0x03, 0x01, 0xff, '\n', '\t', 0x00},
		[]byte(`<img src=x onerror="alert(1)">`),
		[]byte(long),
		[]byte("héllo \u2028 wörld"),
	}
	for i, l := range lines {
		b, _ := proto.Marshal(&logtallyv1.DeadLetter{
			Line: l, Source: "src" + itoa(i), Peer: "127.0.0.1:4000", Reason: "reason " + itoa(i),
			ReceivedUnixMs: 1764000000000 + int64(i), Length: uint64(len(l)) + uint64(i/3*5000),
		})
		if _, err := e.js.Publish(ctx, topology.DeadPrefix+"src", b); err != nil {
			t.Fatal(err)
		}
	}
	var got deadLettersJSON
	if code = e.getJSON("/api/v1/dead-letters?n=3", &got); code != 200 || len(got.Items) != 3 {
		t.Fatalf("%d %+v", code, got)
	}
	if got.Items[0].Line != `héllo \u2028 wörld` || got.Items[0].Reason != "reason 4" || got.Items[0].Seq != 5 || got.Items[0].Received != "2025-11-24T16:00:00.004Z" {
		t.Errorf("newest: %+v", got.Items[0])
	}
	if it := got.Items[1]; len(it.Line) != DeadLineDisplayBytes || !it.Truncated || it.Length != 6000 {
		t.Errorf("long line: %d bytes truncated=%v length=%d", len(it.Line), it.Truncated, it.Length)
	}
	if got.Items[2].Line != `<img src=x onerror="alert(1)">` || got.Items[2].Truncated {
		t.Errorf("html line: %+v", got.Items[2])
	}
	var all deadLettersJSON
	e.getJSON("/api/v1/dead-letters", &all)
	if len(all.Items) != len(lines) || all.Items[3].Line != `\x16\x03\x01\xff\n\t\x00` || all.Items[4].Line != "no address here" || all.Items[4].Source != "src0" || all.Items[4].Peer != "127.0.0.1:4000" {
		t.Errorf("all: %+v", all.Items)
	}
}

func TestEscapeLine(t *testing.T) {
	cases := []struct {
		in   string
		max  int
		want string
		cut  bool
	}{
		{"plain line", 100, "plain line", false},
		{"a\\b", 100, `a\\b`, false},
		{"tab\there\r\n", 100, `tab\there\r\n`, false},
		{"\x1b[31mred", 100, `\x1b[31mred`, false},
		{"\xff\xfe ok", 100, `\xff\xfe ok`, false},
		{"du\u200bo", 100, `du\u200bo`, false},
		{"ünïcødé", 100, "ünïcødé", false},
		{"abcdef", 3, "abc", true},
		{"aé", 2, "a", true}, // é split by the cut is dropped
	}
	for _, c := range cases {
		got, cut := escapeLine([]byte(c.in), c.max)
		if got != c.want || cut != c.cut {
			t.Errorf("escapeLine(%q, %d) = %q %v, want %q %v", c.in, c.max, got, cut, c.want, c.cut)
		}
	}
}

func TestParseCIDR(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.0/24":      "203.0.113.0/24",
		" 203.0.113.9/24 ":    "203.0.113.0/24",
		"::ffff:10.1.0.0/112": "10.1.0.0/16",
		"2001:DB8::/32":       "2001:db8::/32",
		"0.0.0.0/0":           "0.0.0.0/0",
	} {
		p, err := parseCIDR(in)
		if err != nil || p.String() != want {
			t.Errorf("parseCIDR(%q) = %v %v, want %s", in, p, err, want)
		}
	}
}

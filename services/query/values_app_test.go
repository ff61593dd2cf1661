package query_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/apptest"
	"github.com/logtally/logtally/internal/dims"
)

// counters of one value in the reference.
type refCounters struct {
	Requests, S4xx, S5xx, Auth, Bytes uint64
}

type valueItem struct {
	Value       string `json:"value"`
	Known       bool   `json:"known"`
	Count       uint64 `json:"count"`
	Requests    uint64 `json:"requests"`
	Status4xx   uint64 `json:"status_4xx"`
	Status5xx   uint64 `json:"status_5xx"`
	AuthFailure uint64 `json:"auth_failures"`
	Bytes       uint64 `json:"bytes"`
}

type valuesAnswer struct {
	By    string      `json:"by"`
	Class string      `json:"class"`
	Items []valueItem `json:"items"`
	Other uint64      `json:"other"`
	Total valueTotal  `json:"total"`
}

// The fields beyond the IP are counted exactly through the whole pipeline:
// lines of every kind go in over real sockets, and /api/v1/top?by=<field>
// must equal a reference counted here from the same lines, for every field,
// for a top-n shorter than the field's values (with the exact remainder in
// other) and for other classes; gRPC TopValues must give the same answers.
func TestFieldValuesMatchReference(t *testing.T) {
	a := apptest.Start(t, "-parser.partitions=4")
	rnd := rand.New(rand.NewPCG(7, 12))
	now := time.Now().UTC().Truncate(time.Second)
	ref := map[string]map[string]*refCounters{}
	count := func(field, value string, status int, size uint64, auth bool) {
		m := ref[field]
		if m == nil {
			m = map[string]*refCounters{}
			ref[field] = m
		}
		c := m[value]
		if c == nil {
			c = &refCounters{}
			m[value] = c
		}
		c.Requests++
		if status >= 400 && status < 500 {
			c.S4xx++
		}
		if status >= 500 && status < 600 {
			c.S5xx++
		}
		if auth {
			c.Auth++
		}
		c.Bytes += size
	}
	long := "/assets/" + strings.Repeat("x", 40) // hashed: longer than a key holds
	paths := []string{"/", "/index.html", "/login", long + "/app.js", long + "/app.css", "/api/v1/items", "/wp-login.php"}
	methods := []string{"GET", "GET", "GET", "POST", "HEAD"}
	statuses := []int{200, 200, 200, 304, 404, 401, 500, 503}
	uas := []struct{ ua, family, os string }{
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", "Chrome", "Windows"},
		{"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", "Firefox", "Ubuntu"},
		{"curl/8.5.0", "curl", "Other"},
		{"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot", "Other"},
	}
	vhosts := []string{"example.com", "shop.example.com", "a-very-long-virtual-host.example.org"}

	// Access logs over TCP: combined lines, and vhost-combined lines whose
	// first field is the virtual host.
	c, err := net.Dial("tcp", a.Ingest.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(c)
	stamp := now.Format("02/Jan/2006:15:04:05 -0700")
	for i := range 3000 {
		ip := fmt.Sprintf("10.0.%d.%d", rnd.IntN(4), rnd.IntN(200))
		m, p, st := methods[rnd.IntN(len(methods))], paths[rnd.IntN(len(paths))], statuses[rnd.IntN(len(statuses))]
		ua := uas[rnd.IntN(len(uas))]
		size := uint64(rnd.IntN(5000))
		target := p
		if rnd.IntN(3) == 0 {
			target += fmt.Sprintf("?q=%d", i) // dropped: the path counts without it
		}
		line := fmt.Sprintf("%s - - [%s] \"%s %s HTTP/1.1\" %d %d \"-\" \"%s\"", ip, stamp, m, target, st, size, ua.ua)
		if i%2 == 0 {
			vh := vhosts[rnd.IntN(len(vhosts))]
			line = vh + " " + line
			count("vhost", vh, st, size, st == 401)
		}
		fmt.Fprintln(w, line)
		auth := st == 401
		count("status", fmt.Sprint(st), st, size, auth)
		count("method", m, st, size, auth)
		count("path", p, st, size, auth)
		count("ua", ua.family, st, size, auth)
		count("os", ua.os, st, size, auth)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// sshd over syslog (TCP, newline framed): program and event kinds.
	sc, err := net.Dial("tcp", a.Ingest.SyslogTCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	sw := bufio.NewWriter(sc)
	bsd := now.Format(time.Stamp)
	for i := range 400 {
		ip := fmt.Sprintf("192.0.2.%d", rnd.IntN(50))
		var msg, event string
		switch i % 4 {
		case 0:
			msg, event = fmt.Sprintf("sshd[%d]: Failed password for root from %s port 22 ssh2", 100+i, ip), "auth_failure"
		case 1:
			msg, event = fmt.Sprintf("sshd[%d]: Invalid user admin from %s port 22", 100+i, ip), "invalid_user"
		case 2:
			msg, event = fmt.Sprintf("sshd[%d]: Accepted publickey for deploy from %s port 22 ssh2: ED25519 SHA256:abc", 100+i, ip), "auth_success"
		case 3:
			msg = fmt.Sprintf("sshd[%d]: Connection from %s port 22 on 10.0.0.1 port 22", 100+i, ip)
		}
		fmt.Fprintf(sw, "<38>%s host1 %s\n", bsd, msg)
		auth := event == "auth_failure" || event == "invalid_user"
		count("program", "sshd", 0, 0, auth)
		if event != "" {
			count("event", event, 0, 0, auth)
		}
	}
	if err := sw.Flush(); err != nil {
		t.Fatal(err)
	}
	sc.Close()

	from := now.Truncate(time.Minute)
	rq := "from=" + url.QueryEscape(from.Format(time.RFC3339)) + "&to=" + url.QueryEscape(from.Add(time.Minute).Format(time.RFC3339))
	base := "http://" + a.HTTPAddr().String()
	get := func(q string) (valuesAnswer, int) {
		t.Helper()
		resp, err := http.Get(base + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v valuesAnswer
		if resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
				t.Fatal(err)
			}
		}
		return v, resp.StatusCode
	}
	classes := map[string]func(*refCounters) uint64{
		"requests": func(c *refCounters) uint64 { return c.Requests },
		"4xx":      func(c *refCounters) uint64 { return c.S4xx },
		"bytes":    func(c *refCounters) uint64 { return c.Bytes },
	}
	want := func(field, class string, n int) ([]valueItem, uint64) {
		get := classes[class]
		var all []valueItem
		var total uint64
		for v, c := range ref[field] {
			total += get(c)
			if get(c) == 0 {
				continue
			}
			all = append(all, valueItem{Value: v, Known: true, Count: get(c), Requests: c.Requests, Status4xx: c.S4xx, Status5xx: c.S5xx, AuthFailure: c.Auth, Bytes: c.Bytes})
		}
		// Ties are broken by key order, which the reference does not know:
		// compare as sets of (value, count) below, ordered by count here.
		slices.SortFunc(all, func(x, y valueItem) int { return int(y.Count) - int(x.Count) })
		if len(all) > n {
			all = all[:n]
		}
		var listed uint64
		for _, it := range all {
			listed += it.Count
		}
		return all, total - listed
	}
	fields := []string{"status", "method", "path", "vhost", "ua", "os", "program", "event"}
	grpcClient := queryClient(t, a)
	// Wait for the last line to be counted (the syslog lines come last).
	apptest.Eventually(t, "all lines counted", 30*time.Second, func() bool {
		got, code := get("/api/v1/top?by=program&" + rq)
		return code == 200 && len(got.Items) == 1 && got.Items[0].Count == ref["program"]["sshd"].Requests && func() bool {
			g, _ := get("/api/v1/top?by=status&n=50&" + rq)
			var sum uint64
			for _, it := range g.Items {
				sum += it.Count
			}
			return sum == 3000
		}()
	})
	for _, field := range fields {
		for class := range classes {
			for _, n := range []int{2, 50} {
				q := fmt.Sprintf("/api/v1/top?by=%s&class=%s&n=%d&%s", field, class, n, rq)
				got, code := get(q)
				if code != 200 {
					t.Fatalf("%s: HTTP %d", q, code)
				}
				// gRPC TopValues gives the same answer.
				checkGRPCValues(t, grpcClient, got, &logtallyv1.TopValuesRequest{Field: field, Class: class, N: uint32(n), Range: pbRangeOf(from, from.Add(time.Minute))})
				items, other := want(field, class, n)
				if len(got.Items) != len(items) || got.Other != other || got.By != field || got.Class != class {
					t.Fatalf("%s:\n got %+v\nwant items %+v other %d", q, got, items, other)
				}
				for i := range items {
					// The n-th count must match exactly; values must match
					// unless tied with a neighbour.
					if got.Items[i].Count != items[i].Count {
						t.Fatalf("%s: item %d count %d, want %d (%+v vs %+v)", q, i, got.Items[i].Count, items[i].Count, got.Items, items)
					}
					r := ref[field][got.Items[i].Value]
					if r == nil || classes[class](r) != got.Items[i].Count || r.Requests != got.Items[i].Requests || r.Bytes != got.Items[i].Bytes || r.S4xx != got.Items[i].Status4xx || !got.Items[i].Known {
						t.Fatalf("%s: item %+v does not match the reference %+v", q, got.Items[i], r)
					}
				}
			}
		}
	}
	// Filters that select clients do not apply to values; unknown fields
	// are refused with the list of known ones.
	for _, q := range []string{"/api/v1/top?by=path&cidr=10.0.0.0/8&" + rq, "/api/v1/top?by=nope&" + rq, "/api/v1/top?by=status&class=nope&" + rq} {
		if _, code := get(q); code != 400 {
			t.Fatalf("%s: HTTP %d, want 400", q, code)
		}
	}
}

// A closed field window keeps its top K values per field and partition;
// the rest, and later new values, count exactly in "other", while kept
// values go on counting. Totals never change.
func TestClosedFieldWindowsKeepTopK(t *testing.T) {
	const k, parts = 3, 2
	a := apptest.Start(t, fmt.Sprintf("-parser.partitions=%d", parts), fmt.Sprintf("-aggregator.dims.top-k=%d", k), "-aggregator.dims.grace=1m")
	old := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Minute)
	// 20 paths, path i with 200-10i lines: a clear ranking.
	perPart := map[int]int{}
	var lines []string
	total := 0
	for i := range 20 {
		p := fmt.Sprintf("/p%02d", i)
		key, _ := dims.Key(dims.Path, []byte(p))
		perPart[dims.Partition(key, parts)]++
		for range 200 - 10*i {
			lines = append(lines, fmt.Sprintf(`203.0.113.%d - - [%s] "GET %s HTTP/1.1" 200 10`, i, old.Format("02/Jan/2006:15:04:05 -0700"), p))
			total++
		}
	}
	for p := range parts {
		if perPart[p] < k+1 {
			t.Fatalf("partition %d holds %d paths: the test needs more than %d in each", p, perPart[p], k)
		}
	}
	// Current lines move every partition's event time past the old
	// windows' grace.
	for i := range 40 {
		lines = append(lines, fmt.Sprintf(`198.51.100.%d - - [%s] "GET /now HTTP/1.1" 200 10`, i, time.Now().UTC().Format("02/Jan/2006:15:04:05 -0700")))
	}
	send := func(lines []string) {
		c, err := net.Dial("tcp", a.Ingest.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriter(c)
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	send(lines)
	base := "http://" + a.HTTPAddr().String()
	rq := "from=" + url.QueryEscape(old.Format(time.RFC3339)) + "&to=" + url.QueryEscape(old.Add(time.Minute).Format(time.RFC3339))
	get := func(q string) valuesAnswer {
		t.Helper()
		resp, err := http.Get(base + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v valuesAnswer
		if resp.StatusCode != 200 {
			t.Fatalf("%s: HTTP %d", q, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	listed := func(v valuesAnswer) (sum uint64) {
		for _, it := range v.Items {
			sum += it.Count
		}
		return sum
	}
	cuts := func() float64 {
		mfs, err := a.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "logtally_aggregator_dims_windows_cut_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	// Both partitions' 1m and 1h windows of the old minute are cut.
	apptest.Eventually(t, "closed windows cut", 30*time.Second, func() bool { return cuts() >= 2*parts })
	v := get("/api/v1/top?by=path&n=50&" + rq)
	if len(v.Items) > k*parts || listed(v)+v.Other != uint64(total) {
		t.Fatalf("after the cut: %d values listed (at most %d kept), %d listed + %d other, want %d in all", len(v.Items), k*parts, listed(v), v.Other, total)
	}
	v = get("/api/v1/top?by=path&n=3&" + rq)
	if len(v.Items) != 3 || v.Items[0].Value != "/p00" || v.Items[0].Count != 200 || v.Items[1].Count != 190 || v.Items[2].Count != 180 || v.Other != uint64(total-570) {
		t.Fatalf("top 3 after the cut: %+v", v)
	}
	// Late lines: a kept value goes on counting, a new one adds to other.
	var late []string
	for range 5 {
		late = append(late, fmt.Sprintf(`203.0.113.1 - - [%s] "GET /p00 HTTP/1.1" 200 10`, old.Format("02/Jan/2006:15:04:05 -0700")))
	}
	for range 300 {
		late = append(late, fmt.Sprintf(`203.0.113.2 - - [%s] "GET /late-new HTTP/1.1" 200 10`, old.Format("02/Jan/2006:15:04:05 -0700")))
	}
	send(late)
	apptest.Eventually(t, "late lines counted", 30*time.Second, func() bool {
		v := get("/api/v1/top?by=path&n=50&" + rq)
		return listed(v)+v.Other == uint64(total+305)
	})
	v = get("/api/v1/top?by=path&n=50&" + rq)
	for _, it := range v.Items {
		if it.Value == "/late-new" {
			t.Fatalf("a value new to a closed window past its top %d was listed: %+v", k, it)
		}
	}
	if v.Items[0].Value != "/p00" || v.Items[0].Count != 205 {
		t.Fatalf("kept value after late lines: %+v", v.Items[0])
	}
}

// Package e2e drives the whole pipeline over real sockets and compares every
// answer with an independent count of the generated input.
package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/app"
	"github.com/logtally/logtally/internal/apptest"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/loggen"
)

// newConfig builds a config the way the binary does, from flags.
func newConfig(t *testing.T, args ...string) app.Config {
	t.Helper()
	return apptest.Config(t, args...)
}

func startApp(t *testing.T, name string, cfg app.Config) *app.App {
	t.Helper()
	a, err := app.New(cfg, apptest.Logger(name))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			stopApp(t, a)
		}
	})
	return a
}

func stopApp(t *testing.T, a *app.App) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// reference is the oracle: counts computed directly from the generated lines.
type reference struct {
	perIPMinute map[netip.Addr]map[int64]counts.Counters // minute start (unix) → counters
	total       uint64
	totals      counts.Counters
	dead        uint64
}

func newReference() *reference {
	return &reference{perIPMinute: map[netip.Addr]map[int64]counts.Counters{}}
}

func (r *reference) add(l loggen.Line) {
	m := r.perIPMinute[l.Addr]
	if m == nil {
		m = map[int64]counts.Counters{}
		r.perIPMinute[l.Addr] = m
	}
	k := l.Time.Truncate(time.Minute).Unix()
	c := m[k]
	c.Add(l.Counters)
	m[k] = c
	r.total++
	r.totals.Add(l.Counters)
}

// counters are IP ip's counters over [from, to).
func (r *reference) counters(ip netip.Addr, from, to time.Time) counts.Counters {
	var n counts.Counters
	for start, c := range r.perIPMinute[ip] {
		if start >= from.Unix() && start < to.Unix() {
			n.Add(c)
		}
	}
	return n
}

func (r *reference) count(ip netip.Addr, from, to time.Time) uint64 {
	return r.counters(ip, from, to).Requests
}

type ipCount struct {
	IP    string `json:"ip"`
	Count uint64 `json:"count"`
}

// top is the reference answer by a class: count desc, then IP ascending.
func (r *reference) top(from, to time.Time, n int, class counts.Class) []ipCount {
	type kv struct {
		a netip.Addr
		c uint64
	}
	var all []kv
	for a := range r.perIPMinute {
		c := r.counters(a, from, to)
		if v := c.Get(class); v > 0 {
			all = append(all, kv{a, v})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].c != all[j].c {
			return all[i].c > all[j].c
		}
		return all[i].a.Less(all[j].a)
	})
	out := []ipCount{}
	for i := 0; i < len(all) && i < n; i++ {
		out = append(out, ipCount{all[i].a.String(), all[i].c})
	}
	return out
}

func (r *reference) distinct(from, to time.Time) uint64 {
	var n uint64
	for a := range r.perIPMinute {
		if r.count(a, from, to) > 0 {
			n++
		}
	}
	return n
}

// client talks to a running query target over HTTP and gRPC.
type client struct {
	base string
	grpc logtallyv1.QueryServiceClient
	conn *grpc.ClientConn
}

func newClient(t *testing.T, a *app.App) *client {
	t.Helper()
	conn, err := grpc.NewClient(a.Query.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{base: "http://" + a.HTTPAddr().String(), grpc: logtallyv1.NewQueryServiceClient(conn), conn: conn}
}

func (c *client) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get(c.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: decode %s: %v", path, body, err)
	}
}

type totals struct {
	Requests     uint64 `json:"requests"`
	DistinctIPs  uint64 `json:"distinct_ips"`
	DeadLetters  uint64 `json:"dead_letters"`
	Late         uint64 `json:"late"`
	Status4xx    uint64 `json:"status_4xx"`
	Status5xx    uint64 `json:"status_5xx"`
	AuthFailures uint64 `json:"auth_failures"`
	Bytes        uint64 `json:"bytes"`
}

// countersJSON is the counters part of an answer.
type countersJSON struct {
	Requests     uint64 `json:"requests"`
	Status4xx    uint64 `json:"status_4xx"`
	Status5xx    uint64 `json:"status_5xx"`
	AuthFailures uint64 `json:"auth_failures"`
	Bytes        uint64 `json:"bytes"`
}

func (c countersJSON) counters() counts.Counters {
	return counts.Counters{Requests: c.Requests, Status4xx: c.Status4xx, Status5xx: c.Status5xx, AuthFailures: c.AuthFailures, Bytes: c.Bytes}
}

func pbCounters(c *logtallyv1.ClassCounters) counts.Counters {
	return counts.Counters{Requests: c.GetRequests(), Status4xx: c.GetStatus_4Xx(), Status5xx: c.GetStatus_5Xx(), AuthFailures: c.GetAuthFailures(), Bytes: c.GetBytes()}
}

func rangeQuery(from, to time.Time) string {
	return "from=" + from.Format(time.RFC3339) + "&to=" + to.Format(time.RFC3339)
}

func (c *client) totals(t *testing.T, from, to time.Time) totals {
	var tot totals
	c.getJSON(t, "/api/v1/totals?"+rangeQuery(from, to), &tot)
	return tot
}

// wideRange reaches from the workload's first window to past now: event
// times are in the past, dead letters count at their receive time.
func wideRange(from time.Time) (time.Time, time.Time) {
	return from, time.Now().UTC().Truncate(time.Minute).Add(2 * time.Minute)
}

// waitTotals polls until the pipeline has counted want requests and dead letters.
func (c *client) waitTotals(t *testing.T, from, to time.Time, want, wantDead uint64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got totals
	for time.Now().Before(deadline) {
		wf, wt := wideRange(from)
		got = c.totals(t, wf, wt)
		if got.Requests == want && got.DeadLetters == wantDead {
			// The wide range reads 1h windows and the event range 1m
			// windows at its edges: separate buckets (streams), each
			// written and watched on its own, so one can be complete a
			// moment before the other.
			if c.totals(t, from, to).Requests == want {
				return
			}
		}
		if got.Requests > want || got.DeadLetters > wantDead {
			t.Fatalf("counted %d requests and %d dead letters, more than the %d and %d sent", got.Requests, got.DeadLetters, want, wantDead)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("pipeline did not catch up: requests %d of %d, dead letters %d of %d", got.Requests, want, got.DeadLetters, wantDead)
}

// verify compares every answer with the reference, over HTTP and gRPC.
func verify(t *testing.T, c *client, ref *reference, from, to time.Time, wantDead uint64) {
	t.Helper()
	ctx := context.Background()
	tot := c.totals(t, from, to)
	want := totals{Requests: ref.total, DistinctIPs: ref.distinct(from, to),
		Status4xx: ref.totals.Status4xx, Status5xx: ref.totals.Status5xx, AuthFailures: ref.totals.AuthFailures, Bytes: ref.totals.Bytes}
	if ref.totals.Requests != ref.total || ref.totals.Status4xx == 0 || ref.totals.AuthFailures == 0 {
		t.Fatalf("the workload's own classes look wrong: %+v", ref.totals)
	}
	if tot != want {
		t.Fatalf("HTTP totals over the event range %+v, want %+v", tot, want)
	}
	wf, wt := wideRange(from)
	want.DeadLetters = wantDead
	if tot = c.totals(t, wf, wt); tot != want {
		t.Fatalf("HTTP totals up to now %+v, want %+v", tot, want)
	}
	gt, err := c.grpc.Totals(ctx, &logtallyv1.TotalsRequest{Range: pbRange(wf, wt)})
	if err != nil {
		t.Fatal(err)
	}
	if gt.Requests != want.Requests || gt.DistinctIps != want.DistinctIPs || gt.DeadLetters != wantDead || gt.Late != 0 || pbCounters(gt.Counters) != ref.totals {
		t.Fatalf("gRPC totals %v, want %+v", gt, want)
	}

	// Top over the whole range and over sub-ranges mixing 1h and 1m windows.
	hour := from.Truncate(time.Hour)
	ranges := [][2]time.Time{{from, to}, {hour, hour.Add(3 * time.Hour)}, {from.Add(7 * time.Minute), to.Add(-3 * time.Minute)}}
	classes := []counts.Class{counts.Requests, counts.Status4xx, counts.Status5xx, counts.AuthFailures, counts.Bytes}
	for i, r := range ranges {
		for _, class := range classes {
			if i > 0 && class != counts.Requests && class != counts.AuthFailures {
				continue // every class over the whole range; two over the others
			}
			wantTop := ref.top(r[0], r[1], 1000, class)
			var got struct {
				Items []ipCount `json:"items"`
			}
			c.getJSON(t, "/api/v1/top?n=1000&class="+class.String()+"&"+rangeQuery(r[0], r[1]), &got)
			if fmt.Sprint(got.Items) != fmt.Sprint(wantTop) {
				t.Fatalf("HTTP top by %s over %s..%s differs from the reference:\n got %v\nwant %v", class, r[0], r[1], head(got.Items), head(wantTop))
			}
			gtop, err := c.grpc.Top(ctx, &logtallyv1.TopRequest{Range: pbRange(r[0], r[1]), N: 1000, Class: class.String()})
			if err != nil {
				t.Fatal(err)
			}
			var gItems []ipCount
			for _, it := range gtop.Items {
				gItems = append(gItems, ipCount{it.Ip, it.Count})
				ip := netip.MustParseAddr(it.Ip)
				if pbCounters(it.Counters) != ref.counters(ip, r[0], r[1]) {
					t.Fatalf("gRPC top by %s: %s has counters %v, want %+v", class, it.Ip, it.Counters, ref.counters(ip, r[0], r[1]))
				}
			}
			if fmt.Sprint(gItems) != fmt.Sprint(wantTop) {
				t.Fatalf("gRPC top by %s over %s..%s differs from the reference", class, r[0], r[1])
			}
		}
	}

	// Every IP, every minute window, over both transports.
	ips := make([]netip.Addr, 0, len(ref.perIPMinute))
	for a := range ref.perIPMinute {
		ips = append(ips, a)
	}
	sort.Slice(ips, func(i, j int) bool { return ips[i].Less(ips[j]) })
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	sem := make(chan struct{}, 8)
	for _, ip := range ips {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if msg := checkIP(c, ref, ip, from, to); msg != "" {
				select {
				case errs <- msg:
				default:
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}

func checkIP(c *client, ref *reference, ip netip.Addr, from, to time.Time) string {
	resp, err := http.Get(c.base + "/api/v1/ips/" + ip.String() + "?step=1m&" + rangeQuery(from, to))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var got struct {
		IP    string `json:"ip"`
		Count uint64 `json:"count"`
		countersJSON
		Series []struct {
			Start time.Time `json:"start"`
			Count uint64    `json:"count"`
			countersJSON
		} `json:"series"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		return fmt.Sprintf("ip %s: decode: %v", ip, err)
	}
	want := ref.counters(ip, from, to)
	if got.IP != ip.String() || got.Count != want.Requests || got.counters() != want {
		return fmt.Sprintf("ip %s: HTTP count %d %+v (ip %q), want %+v", ip, got.Count, got.counters(), got.IP, want)
	}
	if want := int(to.Sub(from) / time.Minute); len(got.Series) != want {
		return fmt.Sprintf("ip %s: %d points, want %d", ip, len(got.Series), want)
	}
	for _, p := range got.Series {
		if w := ref.perIPMinute[ip][p.Start.Unix()]; p.Count != w.Requests || p.counters() != w {
			return fmt.Sprintf("ip %s window %s: HTTP %+v, want %+v", ip, p.Start, p.counters(), w)
		}
	}
	gs, err := c.grpc.IPSeries(context.Background(), &logtallyv1.IPSeriesRequest{Ip: ip.String(), Range: pbRange(from, to), Step: durationpb.New(time.Minute)})
	if err != nil {
		return fmt.Sprintf("ip %s: gRPC: %v", ip, err)
	}
	if gs.Count != got.Count || len(gs.Series) != len(got.Series) {
		return fmt.Sprintf("ip %s: gRPC count %d / %d points, HTTP %d / %d", ip, gs.Count, len(gs.Series), got.Count, len(got.Series))
	}
	if pbCounters(gs.Counters) != want {
		return fmt.Sprintf("ip %s: gRPC counters %v, want %+v", ip, gs.Counters, want)
	}
	for _, p := range gs.Series {
		if w := ref.perIPMinute[ip][p.Start.AsTime().Unix()]; p.Count != w.Requests || pbCounters(p.Counters) != w {
			return fmt.Sprintf("ip %s window %s: gRPC %v, want %+v", ip, p.Start.AsTime(), p.Counters, w)
		}
	}
	return ""
}

func head(items []ipCount) []ipCount {
	if len(items) > 5 {
		return items[:5]
	}
	return items
}

func pbRange(from, to time.Time) *logtallyv1.TimeRange {
	return &logtallyv1.TimeRange{From: timestamppb.New(from), To: timestamppb.New(to)}
}

// senders deliver lines over the real listeners.

func sendTCP(t *testing.T, addr net.Addr, lines [][]byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Errorf("dial tcp: %v", err)
		return
	}
	defer conn.Close()
	var buf bytes.Buffer
	for i, l := range lines {
		buf.Write(l)
		buf.WriteByte('\n')
		if buf.Len() > 64<<10 || i == len(lines)-1 {
			if _, err := conn.Write(buf.Bytes()); err != nil {
				t.Errorf("write tcp: %v", err)
				return
			}
			buf.Reset()
		}
	}
}

// sendSyslogTCP frames each message with RFC 6587 octet counting.
func sendSyslogTCP(t *testing.T, addr net.Addr, lines [][]byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Errorf("dial syslog tcp: %v", err)
		return
	}
	defer conn.Close()
	var buf bytes.Buffer
	for _, l := range lines {
		buf.WriteString(strconv.Itoa(len(l)))
		buf.WriteByte(' ')
		buf.Write(l)
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		t.Errorf("write syslog tcp: %v", err)
	}
}

// sendUDP paces datagrams: UDP has no backpressure, and a drop would make
// the reference wrong (drops are counted in a metric, checked by the caller).
func sendUDP(t *testing.T, addr net.Addr, lines [][]byte) {
	t.Helper()
	conn, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Errorf("dial udp: %v", err)
		return
	}
	defer conn.Close()
	for i, l := range lines {
		if _, err := conn.Write(l); err != nil {
			t.Errorf("write udp: %v", err)
			return
		}
		if i%20 == 19 {
			time.Sleep(2 * time.Millisecond)
		}
	}
}

func sendHTTP(t *testing.T, base string, lines [][]byte, chunk int) {
	t.Helper()
	for i := 0; i < len(lines); i += chunk {
		var body bytes.Buffer
		zw := gzip.NewWriter(&body)
		for _, l := range lines[i:min(i+chunk, len(lines))] {
			zw.Write(l)
			zw.Write([]byte{'\n'})
		}
		zw.Close()
		req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/ingest?source=e2e", &body)
		req.Header.Set("Content-Encoding", "gzip")
		for attempt := 0; ; attempt++ {
			resp, err := http.DefaultClient.Do(req)
			if err == nil && resp.StatusCode == http.StatusOK {
				resp.Body.Close()
				break
			}
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable || attempt > 20 {
					t.Errorf("http ingest: %d %s", resp.StatusCode, b)
					return
				}
			} else if attempt > 20 {
				t.Errorf("http ingest: %v", err)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func metricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

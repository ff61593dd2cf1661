package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

var queryClient = &http.Client{Timeout: 10 * time.Second}

// GetJSON fetches base+path and decodes a 200 answer into v.
func GetJSON(base, path string, v any) error {
	resp, err := queryClient.Get(base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: decode %s: %w", path, b, err)
	}
	return nil
}

// Totals is the answer of /api/v1/totals.
type Totals struct {
	Requests    uint64 `json:"requests"`
	DistinctIPs uint64 `json:"distinct_ips"`
	DeadLetters uint64 `json:"dead_letters"`
	Late        uint64 `json:"late"`
}

// RangeQuery is the from/to query string of [from, to).
func RangeQuery(from, to time.Time) string {
	return "from=" + from.UTC().Format(time.RFC3339) + "&to=" + to.UTC().Format(time.RFC3339)
}

// GetTotals asks the query stage for the totals over [from, to).
func GetTotals(base string, from, to time.Time) (Totals, error) {
	var tot Totals
	err := GetJSON(base, "/api/v1/totals?"+RangeQuery(from, to), &tot)
	return tot, err
}

// WaitExact polls the totals over [from, to) until they reach ref.Total,
// then checks the totals, the top 1000 and every IP's per-minute series
// against ref. A count above the reference (a doubled line) fails at once
// if it persists for two polls. base is a function so that a restarted
// query stage on a new address can be followed. It returns how long the
// counts took to reach the reference.
func WaitExact(t testing.TB, base func() string, ref *Reference, from, to time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	deadline := t0.Add(timeout)
	var got Totals
	var err error
	over := 0
	for {
		got, err = GetTotals(base(), from, to)
		if err == nil {
			if got.Requests == ref.Total {
				break
			}
			if got.Requests > ref.Total {
				if over++; over >= 2 {
					t.Fatalf("DOUBLED: counted %d requests, the reference has %d (%d too many)", got.Requests, ref.Total, got.Requests-ref.Total)
				}
			} else {
				over = 0
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("LOST or stuck: counted %d of %d requests after %s (last error %v)", got.Requests, ref.Total, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	took := time.Since(t0)
	Verify(t, base(), ref, from, to)
	return took
}

// Verify compares the totals, the top 1000 and every IP's per-minute
// series over [from, to) with ref.
func Verify(t testing.TB, base string, ref *Reference, from, to time.Time) {
	t.Helper()
	tot, err := GetTotals(base, from, to)
	if err != nil {
		t.Fatal(err)
	}
	want := Totals{Requests: ref.Total, DistinctIPs: ref.Distinct(from, to)}
	if tot != want {
		t.Fatalf("totals over %s..%s: %+v, want %+v", from, to, tot, want)
	}
	var top struct {
		Items []IPCount `json:"items"`
	}
	if err := GetJSON(base, "/api/v1/top?n=1000&"+RangeQuery(from, to), &top); err != nil {
		t.Fatal(err)
	}
	if wantTop := ref.Top(from, to, 1000); fmt.Sprint(top.Items) != fmt.Sprint(wantTop) {
		t.Fatalf("top 1000 differs from the reference: got %d items, first %v; want %d, first %v",
			len(top.Items), head(top.Items), len(wantTop), head(wantTop))
	}

	ips := make([]netip.Addr, 0, len(ref.PerIPMinute))
	for a := range ref.PerIPMinute {
		ips = append(ips, a)
	}
	sort.Slice(ips, func(i, j int) bool { return ips[i].Less(ips[j]) })
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		bad  []string
		lost uint64
		dup  uint64
		sem  = make(chan struct{}, 8)
	)
	for _, ip := range ips {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			l, d, msg := checkIP(base, ref, ip, from, to)
			if msg != "" || l > 0 || d > 0 {
				mu.Lock()
				lost += l
				dup += d
				if msg != "" && len(bad) < 20 {
					bad = append(bad, msg)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 || lost > 0 || dup > 0 {
		t.Fatalf("per-IP series differ from the reference for %d+ IPs (%d lines lost, %d doubled in total):\n%s",
			len(bad), lost, dup, strings.Join(bad, "\n"))
	}
}

func head(items []IPCount) []IPCount {
	if len(items) > 5 {
		return items[:5]
	}
	return items
}

func checkIP(base string, ref *Reference, ip netip.Addr, from, to time.Time) (lost, dup uint64, msg string) {
	var got struct {
		IP     string `json:"ip"`
		Count  uint64 `json:"count"`
		Series []struct {
			Start time.Time `json:"start"`
			Count uint64    `json:"count"`
		} `json:"series"`
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = GetJSON(base, "/api/v1/ips/"+ip.String()+"?step=1m&"+RangeQuery(from, to), &got); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return 0, 0, fmt.Sprintf("ip %s: %v", ip, err)
	}
	if want := int(to.Sub(from) / time.Minute); len(got.Series) != want {
		return 0, 0, fmt.Sprintf("ip %s: %d points, want %d", ip, len(got.Series), want)
	}
	var msgs []string
	for _, p := range got.Series {
		w := ref.PerIPMinute[ip][p.Start.Unix()]
		switch {
		case p.Count < w:
			lost += w - p.Count
		case p.Count > w:
			dup += p.Count - w
		}
		if p.Count != w {
			msgs = append(msgs, fmt.Sprintf("%s: %d want %d", p.Start.Format("15:04"), p.Count, w))
		}
	}
	if want := ref.Count(ip, from, to); got.IP != ip.String() || got.Count != want {
		msgs = append(msgs, fmt.Sprintf("total %d (ip %q) want %d", got.Count, got.IP, want))
	}
	if len(msgs) > 0 {
		msg = fmt.Sprintf("ip %s: %s", ip, strings.Join(msgs, ", "))
	}
	return lost, dup, msg
}

// Monitor samples the counted total over [From, To) and the senders'
// progress, to measure how long the pipeline takes to recover from faults.
type Monitor struct {
	From, To time.Time
	base     func() string
	senders  []*Sender

	mu      sync.Mutex
	samples []sample
	faults  []Fault
	stop    chan struct{}
	stopped chan struct{}
}

type sample struct {
	at     time.Time
	perMin map[int64]uint64 // counted per minute
	sent   int64
}

// Fault is one injected fault and the lines sent before it.
type Fault struct {
	Name   string
	At     time.Time
	Sent   int64   // lines delivered to ingest before the fault
	SentBy []int64 // per sender
}

// Recovery is how long after a fault every line sent before it was counted:
// the minutes whose lines had all been sent when the fault struck are
// counted in full. Lines sent after the fault cannot stand in for lost
// ones, since they belong to later minutes (the minute the fault cut in two
// is left out).
type Recovery struct {
	Fault
	Took      time.Duration // -1 if never within the samples
	Recovered bool
}

// NewMonitor starts sampling every 200ms.
func NewMonitor(base func() string, from, to time.Time, senders ...*Sender) *Monitor {
	m := &Monitor{From: from, To: to, base: base, senders: senders, stop: make(chan struct{}), stopped: make(chan struct{})}
	go m.run()
	return m
}

func (m *Monitor) sent() int64 {
	var n int64
	for _, s := range m.senders {
		n += s.Sent()
	}
	return n
}

func (m *Monitor) run() {
	defer close(m.stopped)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-tick.C:
		}
		sent := m.sent()
		var series struct {
			Series []struct {
				Start time.Time `json:"start"`
				Count uint64    `json:"count"`
			} `json:"series"`
		}
		if err := GetJSON(m.base(), "/api/v1/series?"+RangeQuery(m.From, m.To)+"&step=1m", &series); err != nil {
			continue
		}
		per := map[int64]uint64{}
		for _, p := range series.Series {
			per[p.Start.Unix()] = p.Count
		}
		m.mu.Lock()
		m.samples = append(m.samples, sample{at: time.Now(), perMin: per, sent: sent})
		m.mu.Unlock()
	}
}

// Mark records a fault now.
func (m *Monitor) Mark(name string) {
	f := Fault{Name: name, At: time.Now()}
	for _, s := range m.senders {
		n := s.Sent()
		f.SentBy = append(f.SentBy, n)
		f.Sent += n
	}
	m.mu.Lock()
	m.faults = append(m.faults, f)
	m.mu.Unlock()
}

// Stop ends sampling.
func (m *Monitor) Stop() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.stopped
}

// Recoveries computes, for every fault, the time until the counted total
// reached the lines sent before the fault.
func (m *Monitor) Recoveries() []Recovery {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Recovery
	for _, f := range m.faults {
		want := m.sentBefore(f)
		r := Recovery{Fault: f, Took: -1}
		for _, s := range m.samples {
			if !s.at.After(f.At) {
				continue
			}
			done := true
			for minute, n := range want {
				if s.perMin[minute] < n {
					done = false
					break
				}
			}
			if done {
				r.Took, r.Recovered = s.at.Sub(f.At), true
				break
			}
		}
		out = append(out, r)
	}
	return out
}

// sentBefore returns, for every minute whose lines had all been sent when
// fault f struck, how many lines it holds.
func (m *Monitor) sentBefore(f Fault) map[int64]uint64 {
	want := map[int64]uint64{}
	incomplete := map[int64]bool{}
	for i, s := range m.senders {
		if s.w == nil {
			continue
		}
		for minute, n := range s.w.PerMinute {
			if int64(s.w.LastOf[minute]) >= f.SentBy[i] {
				incomplete[minute] = true
			}
			want[minute] += n
		}
	}
	for minute := range incomplete {
		delete(want, minute)
	}
	return want
}

// Report logs every fault's recovery time and returns the longest.
func (m *Monitor) Report(t testing.TB) time.Duration {
	t.Helper()
	var worst time.Duration
	var b strings.Builder
	fmt.Fprintf(&b, "%-40s %10s %12s\n", "fault", "sent before", "recovered in")
	for _, r := range m.Recoveries() {
		took := "never"
		if r.Recovered {
			took = r.Took.Round(10 * time.Millisecond).String()
			worst = max(worst, r.Took)
		}
		fmt.Fprintf(&b, "%-40s %10d %12s\n", r.Name, r.Sent, took)
	}
	t.Logf("recovery (time until every minute whose lines were all sent before the fault is counted):\n%s", b.String())
	return worst
}

// Package nasty sends hostile and absurd input to a running logtally process
// (every target, embedded NATS, real sockets): bodies of a gibibyte, gzip
// bombs, 10 MB lines, a million tiny lines, NUL bytes, invalid UTF-8, forged
// line breaks, absurd syslog octet counts, absurd query parameters and more
// connections than allowed. Each input must end in a clear client error
// (HTTP 4xx with a message) or in dead letters with a reason, counted
// exactly; the process must stay healthy, keep counting a normal line
// correctly afterwards, and its heap must stay far below the input's size.
package nasty

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/app"
	"github.com/logtally/logtally/internal/apptest"
)

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

// newConfig builds a config the way the binary does, from flags; limits
// keep their defaults unless args set them.
func newConfig(t *testing.T, args ...string) app.Config {
	t.Helper()
	return apptest.Config(t, append([]string{"-data.dir=" + t.TempDir(), "-aggregator.flush-interval=100ms"}, args...)...)
}

// proc is one running logtally process and a client for it.
type proc struct {
	t    *testing.T
	a    *app.App
	base string
	hc   *http.Client
}

func startApp(t *testing.T, name string, cfg app.Config) *proc {
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
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
	})
	p := &proc{t: t, a: a, base: "http://" + a.HTTPAddr().String(), hc: &http.Client{Timeout: 60 * time.Second}}
	p.waitReady()
	return p
}

// waitReady polls /readyz until it answers 200.
func (p *proc) waitReady() {
	p.t.Helper()
	eventually(p.t, "/readyz to answer 200", func() (bool, string) {
		code, body := p.get("/readyz")
		return code == http.StatusOK, fmt.Sprintf("%d %v", code, body)
	})
}

// get fetches path and decodes the JSON answer (nil when it is not JSON).
func (p *proc) get(path string) (int, map[string]any) {
	p.t.Helper()
	code, raw := p.getRaw(path)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return code, out
}

func (p *proc) getRaw(path string) (int, []byte) {
	p.t.Helper()
	resp, err := p.hc.Get(p.base + path)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("GET %s: read answer: %v", path, err)
	}
	return resp.StatusCode, raw
}

// post sends body (read to its end by the transport, or until the server
// answers and closes) to /api/v1/ingest with the given query and headers.
func (p *proc) post(query string, body io.Reader, header map[string]string) (int, map[string]any, error) {
	req, err := http.NewRequest(http.MethodPost, p.base+"/api/v1/ingest"+query, body)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, out, nil
}

// metrics reads /metrics: sample (name plus labels as exposed) → value.
func (p *proc) metrics() map[string]float64 {
	p.t.Helper()
	code, raw := p.getRaw("/metrics")
	if code != http.StatusOK {
		p.t.Fatalf("/metrics: %d", code)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 0, 64*kib), 4*mib)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// metric is the sum of every sample of name whose labels include all of
// labels (`reason="empty_line"`).
func (p *proc) metric(name string, labels ...string) float64 {
	p.t.Helper()
	return sumMetric(p.metrics(), name, labels...)
}

func sumMetric(all map[string]float64, name string, labels ...string) float64 {
	var sum float64
	for k, v := range all {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(k, l) {
				ok = false
				break
			}
		}
		if ok {
			sum += v
		}
	}
	return sum
}

// deadLetter is one item of GET /api/v1/dead-letters.
type deadLetter struct {
	Seq       uint64 `json:"seq"`
	Source    string `json:"source"`
	Peer      string `json:"peer"`
	Reason    string `json:"reason"`
	Length    uint64 `json:"length"`
	Line      string `json:"line"`
	Truncated bool   `json:"truncated"`
}

// deadLetters returns the n latest dead letters, newest first, as the API
// shows them, with the raw JSON of the answer.
func (p *proc) deadLetters(n int) ([]deadLetter, []byte) {
	p.t.Helper()
	code, raw := p.getRaw("/api/v1/dead-letters?n=" + strconv.Itoa(n))
	if code != http.StatusOK {
		p.t.Fatalf("dead letters: %d %s", code, raw)
	}
	var out struct {
		Items []deadLetter `json:"items"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		p.t.Fatalf("dead letters: %v: %s", err, raw)
	}
	return out.Items, raw
}

// ipCount is the count of ip over the last hour from /api/v1/ips/{ip}.
func (p *proc) ipCount(ip string) uint64 {
	p.t.Helper()
	code, out := p.get("/api/v1/ips/" + url.PathEscape(ip) + "?last=1h")
	if code != http.StatusOK {
		p.t.Fatalf("ip %s: %d %v", ip, code, out)
	}
	return uint64(out["count"].(float64))
}

// totals is GET /api/v1/totals over the last hour.
type totals struct {
	Requests    uint64 `json:"requests"`
	DeadLetters uint64 `json:"dead_letters"`
}

func (p *proc) totals() totals {
	p.t.Helper()
	code, raw := p.getRaw("/api/v1/totals?last=1h")
	if code != http.StatusOK {
		p.t.Fatalf("totals: %d %s", code, raw)
	}
	var tot totals
	if err := json.Unmarshal(raw, &tot); err != nil {
		p.t.Fatal(err)
	}
	return tot
}

// eventually polls cond every 100ms until it holds; the limit is generous
// (the machine is shared), and only reached when something is wrong.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s: %s", what, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dial opens a TCP connection that the test closes at its end.
func dial(t *testing.T, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// sendTCP writes everything r yields to a new connection to addr and closes
// it; it returns the number of bytes written.
func sendTCP(t *testing.T, addr net.Addr, r io.Reader) int64 {
	t.Helper()
	c := dial(t, addr)
	n, err := io.CopyBuffer(c, r, make([]byte, 256*kib))
	if err != nil {
		t.Fatalf("send to %s after %d bytes: %v", addr, n, err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close connection to %s: %v", addr, err)
	}
	return n
}

// heapWatch samples the process heap (runtime.MemStats.HeapInuse: the app
// runs in the test process) while an input is sent.
type heapWatch struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	done sync.WaitGroup
}

func heapInuse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// watchHeap collects garbage, takes the baseline and samples every 5ms.
func watchHeap() *heapWatch {
	runtime.GC()
	h := &heapWatch{base: heapInuse(), stop: make(chan struct{})}
	h.peak.Store(h.base)
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
			h.sample()
		}
	}()
	return h
}

func (h *heapWatch) sample() {
	v := heapInuse()
	for {
		old := h.peak.Load()
		if v <= old || h.peak.CompareAndSwap(old, v) {
			return
		}
	}
}

// end stops sampling and returns the peak growth over the baseline and the
// growth still in use after a collection (what the process kept).
func (h *heapWatch) end() (peak, kept int64) {
	h.sample()
	close(h.stop)
	h.done.Wait()
	runtime.GC()
	return int64(h.peak.Load()) - int64(h.base), int64(heapInuse()) - int64(h.base)
}

// figure is one measured row of the suite's summary (go test -v prints it).
type figure struct {
	name, outcome    string
	input            int64
	peakHeap, kept   int64
	wall             time.Duration
	deadLetters      float64
	deadLetterReason string
}

var (
	figuresMu sync.Mutex
	figures   []figure
)

func record(f figure) {
	figuresMu.Lock()
	defer figuresMu.Unlock()
	figures = append(figures, f)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if testing.Verbose() && len(figures) > 0 {
		fmt.Printf("\n%-40s %12s %14s %12s %9s  %s\n", "input", "input", "peak heap +", "kept +", "time", "outcome")
		for _, f := range figures {
			fmt.Printf("%-40s %12s %14s %12s %9s  %s\n", f.name, size(f.input), size(f.peakHeap), size(f.kept), f.wall.Round(10*time.Millisecond), f.outcome)
		}
	}
	os.Exit(code)
}

func size(n int64) string {
	switch a := max(n, -n); {
	case a >= gib:
		return fmt.Sprintf("%.2f GiB", float64(n)/gib)
	case a >= mib:
		return fmt.Sprintf("%.1f MiB", float64(n)/mib)
	case a >= kib:
		return fmt.Sprintf("%.1f KiB", float64(n)/kib)
	}
	return fmt.Sprintf("%d B", n)
}

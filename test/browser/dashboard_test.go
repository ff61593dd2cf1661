// Package browser drives the web dashboard in a real headless Chromium
// against the all-in-one app: known traffic in, exact numbers on the page,
// live updates without a reload, and the IP drill-down.
//
// Chromium is found as $LOGTALLY_CHROME, chromium, chromium-browser or
// google-chrome. Without it the test skips, unless CI is set or
// LOGTALLY_REQUIRE_BROWSER=1, when it fails. LOGTALLY_SCREENSHOT=<path>
// saves a screenshot of the dashboard there (docs/dashboard.png).
package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/hashicorp/go-hclog"

	"github.com/logtally/logtally/internal/app"
	"github.com/logtally/logtally/internal/config"
)

// chromePath finds Chromium, or skips (fails in CI) without it.
func chromePath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LOGTALLY_CHROME"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("LOGTALLY_CHROME=%s: %v", p, err)
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium found (looked for $LOGTALLY_CHROME, chromium, chromium-browser, google-chrome); install it, e.g. apt-get install -y chromium"
	if os.Getenv("CI") != "" || os.Getenv("LOGTALLY_REQUIRE_BROWSER") == "1" {
		t.Fatalf("%s: the browser test is required here (CI or LOGTALLY_REQUIRE_BROWSER=1 is set)", msg)
	}
	t.Skip(msg)
	return ""
}

// startApp runs the all-in-one app on free loopback ports; extra flags
// come last and win.
func startApp(t *testing.T, extra ...string) *app.App {
	t.Helper()
	var cfg app.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	args := []string{
		"-http.addr=127.0.0.1:0", "-grpc.addr=127.0.0.1:0",
		"-ingest.tcp.addr=127.0.0.1:0", "-ingest.syslog.addr=127.0.0.1:0",
		"-aggregator.flush-interval=200ms", "-aggregator.heartbeat=200ms",
		"-parser.partitions=8", "-data.dir=" + t.TempDir(),
	}
	if err := config.Parse(fs, append(args, extra...), "LOGTALLY_TEST_UNUSED_"); err != nil {
		t.Fatal(err)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "browser", Level: hclog.Error, Output: io.Discard})
	if os.Getenv("LOGTALLY_TEST_LOG") != "" {
		log = hclog.New(&hclog.LoggerOptions{Name: "browser", Level: hclog.Debug})
	}
	a, err := app.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return a
}

// traffic is the workload with its known answer.
type traffic struct {
	lines  [][]byte
	counts map[string]int
	total  int
}

var paths = []string{"/", "/index.html", "/api/v1/items?page=2", "/static/app.css", "/login", "/search?q=logs", "/robots.txt", "/wp-login.php", "/feed.xml", "/img/logo.png"}
var agents = []string{"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "curl/8.5.0", "Googlebot/2.1 (+http://www.google.com/bot.html)", "python-requests/2.32.3", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"}

func combined(rng *rand.Rand, ip string, at time.Time) []byte {
	status := []int{200, 200, 200, 200, 304, 301, 404, 500}[rng.IntN(8)]
	return fmt.Appendf(nil, `%s - - [%s] "GET %s HTTP/1.1" %d %d "-" "%s"`,
		ip, at.UTC().Format("02/Jan/2006:15:04:05 -0700"), paths[rng.IntN(len(paths))],
		status, 200+rng.IntN(40000), agents[rng.IntN(len(agents))])
}

// newTraffic spreads known per-IP counts over the 56 minutes before now,
// with a daily-looking wave and a burst from the top IP, so the charts look
// like real traffic.
func newTraffic(now time.Time) traffic {
	rng := rand.New(rand.NewPCG(7, 11))
	tr := traffic{counts: map[string]int{}}
	fixed := []struct {
		ip    string
		count int
	}{
		{"203.0.113.7", 1286}, {"198.51.100.23", 943}, {"192.0.2.44", 871},
		{"2001:db8:85a3::8a2e:370:7334", 655}, {"203.0.113.91", 512}, {"198.51.100.7", 407},
		{"10.20.30.40", 388}, {"172.16.4.2", 301}, {"192.0.2.200", 256}, {"203.0.113.150", 199},
	}
	for i := range 40 {
		fixed = append(fixed, struct {
			ip    string
			count int
		}{fmt.Sprintf("198.51.%d.%d", 100+i%3, 30+i*5), 8 + rng.IntN(150)})
	}
	const span = 56 * 60 // seconds
	weight := func(sec int) float64 {
		m := float64(sec) / 60
		return 1 + 0.45*math.Sin(m/7) + 0.25*math.Sin(m/2.3)
	}
	for i, f := range fixed {
		for range f.count {
			var sec int
			if i == 0 && rng.IntN(3) > 0 {
				sec = 36*60 + rng.IntN(8*60) // a burst 20 to 12 minutes ago
			} else {
				for {
					sec = rng.IntN(span)
					if rng.Float64()*1.7 < weight(sec) {
						break
					}
				}
			}
			at := now.Add(-time.Duration(span-sec)*time.Second - time.Duration(rng.IntN(1000))*time.Millisecond)
			tr.lines = append(tr.lines, combined(rng, f.ip, at))
		}
		tr.counts[f.ip] = f.count
		tr.total += f.count
	}
	rng.Shuffle(len(tr.lines), func(i, j int) { tr.lines[i], tr.lines[j] = tr.lines[j], tr.lines[i] })
	return tr
}

// deadLines all become dead letters; one tries to inject HTML.
func deadLines(now time.Time) [][]byte {
	ts := now.UTC().Format("02/Jan/2006:15:04:05 -0700")
	return [][]byte{
		{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03},
		[]byte(`999.1.1.1 - - [` + ts + `] "GET / HTTP/1.1" 200 1 "-" "-"`),
		[]byte(`203.0.113.10 - - [31/Feb/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"`),
		[]byte(`<img src=x onerror="window.__xss=1"><script>window.__xss=2</script> no address here`),
		[]byte("no address in this line at all"),
	}
}

func ingest(t *testing.T, base, source string, lines [][]byte) {
	t.Helper()
	for i := 0; i < len(lines); i += 5000 {
		body := bytes.Join(lines[i:min(i+5000, len(lines))], []byte("\n"))
		body = append(body, '\n')
		resp, err := http.Post(base+"/api/v1/ingest?source="+source, "text/plain", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("ingest: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("ingest: %d %s", resp.StatusCode, b)
		}
	}
}

type totals struct {
	Requests    int `json:"requests"`
	DistinctIPs int `json:"distinct_ips"`
	DeadLetters int `json:"dead_letters"`
}

func waitTotals(t *testing.T, base string, requests, dead int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var got totals
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/api/v1/totals?last=1h")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got.Requests == requests && got.DeadLetters == dead {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("pipeline did not catch up: %+v, want %d requests and %d dead letters", got, requests, dead)
}

func fmtCount(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// waitJS evaluates expr until ok accepts its value, failing with the last
// value after timeout.
func waitJS[T any](t *testing.T, ctx context.Context, what, expr string, ok func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var v T
	var err error
	for time.Now().Before(deadline) {
		var cur T
		if cur, err = chromedp.Run(ctx, chromedp.Evaluate[T](expr)); err == nil {
			v = cur
			if ok(cur) {
				return cur
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not reached in time; last value %+v (error %v)", what, v, err)
	return v
}

type row struct {
	IP    string `json:"ip"`
	Count string `json:"count"`
	Bars  int    `json:"bars"`
	Rows  int    `json:"rows"`
}

const firstRowJS = `(() => {
  const rows = document.querySelectorAll('#top-chart g.row');
  const r = rows[0];
  return {
    ip: r ? r.querySelector('text.ip').textContent : '',
    count: r ? r.querySelector('text.count').textContent : '',
    bars: document.querySelectorAll('#top-chart rect.bar').length,
    rows: rows.length,
  };
})()`

// openBrowser starts a headless Chromium; its context ends with the test.
// Any uncaught script error or console.error on the page fails the test.
func openBrowser(t *testing.T, chrome string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1440, 1010),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(acancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, tcancel := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(tcancel)

	// Any uncaught script error fails the test.
	var (
		jsMu   sync.Mutex
		jsErrs []string
	)
	listenErr := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg := e.ExceptionDetails.Text
			if ex := e.ExceptionDetails.Exception; ex != nil {
				msg += " " + ex.Description
			}
			jsMu.Lock()
			jsErrs = append(jsErrs, fmt.Sprintf("%s (%s:%d)", msg, e.ExceptionDetails.URL, e.ExceptionDetails.LineNumber))
			jsMu.Unlock()
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, arg := range e.Args {
					parts = append(parts, string(arg.Value))
				}
				jsMu.Lock()
				jsErrs = append(jsErrs, "console.error: "+strings.Join(parts, " "))
				jsMu.Unlock()
			}
		}
	})
	if listenErr != nil {
		t.Fatalf("listen to page events: %v", listenErr)
	}
	t.Cleanup(func() {
		jsMu.Lock()
		defer jsMu.Unlock()
		for _, e := range jsErrs {
			t.Errorf("script error on the page: %s", e)
		}
	})
	return ctx
}

func TestDashboard(t *testing.T) {
	chrome := chromePath(t)
	a := startApp(t)
	base := "http://" + a.HTTPAddr().String()

	now := time.Now()
	tr := newTraffic(now)
	dead := deadLines(now)
	ingest(t, base, "nginx", tr.lines)
	ingest(t, base, "edge-proxy", dead)
	waitTotals(t, base, tr.total, len(dead))

	ctx := openBrowser(t, chrome)
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1440, 1010),
		chromedp.Navigate(base+"/?last=1h&n=10"),
		chromedp.WaitVisible(chromedp.CSS(`#top-chart g.row`)),
	); err != nil {
		t.Fatalf("open dashboard: %v", err)
	}

	// The top IP, its exact count with separators, and one bar per row.
	r := waitJS(t, ctx, "top IP on the page", firstRowJS, func(r row) bool {
		return r.IP == "203.0.113.7" && r.Count == "1,286" && r.Bars == 10
	})
	t.Logf("first row: %+v", r)
	stats := waitJS(t, ctx, "totals on the page",
		`({req: document.querySelector('#stat-requests').textContent, distinct: document.querySelector('#stat-distinct').textContent, dead: document.querySelector('#stat-dead').textContent, chart: document.querySelectorAll('#rpm-chart path.line').length})`,
		func(v map[string]any) bool {
			return v["req"] == fmtCount(tr.total) && v["distinct"] == fmtCount(len(tr.counts)) && v["dead"] == fmtCount(len(dead)) && v["chart"].(float64) >= 1
		})
	t.Logf("stats: %v", stats)

	// No rules file here: the decisions panel is empty and says the mode is
	// not known on this target.
	waitJS(t, ctx, "empty decisions panel",
		`({rows: document.querySelector('#decisions-table tbody').textContent, mode: document.querySelector('#decisions-mode').textContent,
		   badgeHidden: document.querySelector('#decisions-mode-badge').getBoundingClientRect().width === 0, marks: document.querySelectorAll('#top-chart g.badge').length})`,
		func(v map[string]any) bool {
			return v["rows"] == "No active decisions." && strings.Contains(v["mode"].(string), "no -rules.file") && v["badgeHidden"] == true && v["marks"].(float64) == 0
		})

	// Dead letters are listed as text: the injected markup is not an element.
	waitJS(t, ctx, "dead letters listed as text",
		`(() => {
		  const cells = [...document.querySelectorAll('#dead-table td.what .line')].map(td => td.textContent);
		  return {rows: cells.length, injected: cells.some(c => c.includes('<img src=x onerror=')),
		          elements: document.querySelectorAll('#dead-table img, #dead-table script').length,
		          xss: window.__xss === undefined ? 0 : window.__xss};
		})()`,
		func(v map[string]float64OrBool) bool {
			return v["rows"].n == float64(len(dead)) && v["injected"].b && v["elements"].n == 0 && v["xss"].n == 0
		})

	// A new IP enters the top: the page updates by push, without a reload.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.__marker = 1`)); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	var burst [][]byte
	for i := range 2000 {
		// Spread over the last 30 minutes, like a scanner warming up.
		burst = append(burst, combined(rng, "198.18.0.99", time.Now().Add(-time.Duration((i*i)%1800)*time.Second)))
	}
	ingest(t, base, "nginx", burst)
	r = waitJS(t, ctx, "new top IP pushed to the page", firstRowJS, func(r row) bool {
		return r.IP == "198.18.0.99" && r.Count == "2,000"
	})
	marker, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__marker || 0`))
	if err != nil || marker != 1 {
		t.Fatalf("page was reloaded (window.__marker = %d, %v)", marker, err)
	}
	waitJS(t, ctx, "totals pushed to the page", `document.querySelector('#stat-requests').textContent`,
		func(v string) bool { return v == fmtCount(tr.total+2000) })

	// Click an IP: its series, count and share.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#top-chart g.row[data-ip="203.0.113.7"] rect.bar`))); err != nil {
		t.Fatalf("click IP: %v", err)
	}
	detail := waitJS(t, ctx, "IP detail panel",
		`(() => { const d = document.querySelector('#ip-detail'); const q = s => { const e = d.querySelector(s); return e ? e.textContent : ''; };
		  return {ip: q('.ip-name'), count: q('.ip-count'), share: q('.ip-share'), first: q('.ip-first'), last: q('.ip-last'),
		          lines: d.querySelectorAll('svg.ip-series path.line').length, url: location.search}; })()`,
		func(v map[string]any) bool {
			return v["ip"] == "203.0.113.7" && v["count"] == "1,286" && v["lines"].(float64) >= 1 &&
				strings.Contains(v["share"].(string), "%") && strings.Contains(v["first"].(string), "UTC")
		})
	t.Logf("detail: %v", detail)
	if marker, err = chromedp.Run(ctx, chromedp.Evaluate[int](`window.__marker || 0`)); err != nil || marker != 1 {
		t.Fatalf("page was reloaded by the click (window.__marker = %d, %v)", marker, err)
	}

	// A CIDR search filters before the top N.
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#q`), "203.0.113.0/24"),
		chromedp.Click(chromedp.CSS(`#search button[type=submit]`)),
	); err != nil {
		t.Fatal(err)
	}
	cidr := waitJS(t, ctx, "CIDR search", `[...document.querySelectorAll('#ip-detail table.cidr tbody tr')].map(tr => tr.children[0].textContent + '=' + tr.children[1].textContent)`,
		func(v []string) bool { return len(v) == 3 })
	if want := []string{"203.0.113.7=1,286", "203.0.113.91=512", "203.0.113.150=199"}; strings.Join(cidr, " ") != strings.Join(want, " ") {
		t.Fatalf("CIDR rows %v, want %v", cidr, want)
	}

	// Back to the IP for the screenshot.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#top-chart g.row[data-ip="203.0.113.7"] text.ip`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "IP detail again", `document.querySelector('#ip-detail .ip-count')?.textContent || ''`, func(v string) bool { return v == "1,286" })
	if err := chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`),
		chromedp.Sleep(400*time.Millisecond), // bar transitions
	); err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < 700 {
		t.Fatalf("screenshot is %v", b)
	}
	out := filepath.Join(t.TempDir(), "dashboard.png")
	if p := os.Getenv("LOGTALLY_SCREENSHOT"); p != "" {
		out = p
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", out, len(shot))
}

// float64OrBool decodes a JSON number or boolean.
type float64OrBool struct {
	n float64
	b bool
}

func (v *float64OrBool) UnmarshalJSON(data []byte) error {
	switch string(data) {
	case "true":
		v.b = true
		return nil
	case "false":
		return nil
	}
	return json.Unmarshal(data, &v.n)
}

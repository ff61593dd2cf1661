package browser

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// rulesYAML is a rules file with one low threshold. The range covers the
// previous minute too, so a flood sent just before a minute ends is still
// decided after it.
func rulesYAML(mode string, threshold int) string {
	return fmt.Sprintf(`mode: %s
rules:
  - name: http-flood
    key: ip
    range: 2m
    threshold: %d
    ban: 10m
    class: requests
`, mode, threshold)
}

// writeRules replaces the rules file atomically: a reload never reads it
// half written (an empty rules file is valid).
func writeRules(t *testing.T, path, yaml string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// sendTCP writes n access-log lines of ip, timestamped now, to the TCP
// ingest listener.
func sendTCP(t *testing.T, addr net.Addr, ip string, n int) {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b bytes.Buffer
	ts := time.Now().UTC().Format("02/Jan/2006:15:04:05 -0700")
	for i := range n {
		fmt.Fprintf(&b, "%s - - [%s] \"GET /item/%d HTTP/1.1\" 200 512 \"-\" \"flood/1.0\"\n", ip, ts, i)
	}
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
}

type apiDecision struct {
	ID        uint64 `json:"id"`
	Rule      string `json:"rule"`
	Key       string `json:"key"`
	Count     uint64 `json:"count"`
	Threshold uint64 `json:"threshold"`
	Origin    string `json:"origin"`
	Reason    string `json:"reason"`
	Simulated bool   `json:"simulated"`
}

func listDecisions(t *testing.T, base string) []apiDecision {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/decisions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Items []apiDecision }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Items
}

// waitDecision waits until the API lists a decision of rule for key.
func waitDecision(t *testing.T, base, rule, key string) apiDecision {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, d := range listDecisions(t, base) {
			if d.Rule == rule && d.Key == key {
				return d
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no decision of %s for %s: %+v", rule, key, listDecisions(t, base))
	return apiDecision{}
}

func banByHand(t *testing.T, base, key, reason string) apiDecision {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"key": key, "duration": "1h", "reason": reason})
	resp, err := http.Post(base+"/api/v1/decisions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d apiDecision
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("ban %s: %d %v", key, resp.StatusCode, err)
	}
	return d
}

// metric reads one sample of the process's /metrics ("" when absent).
func metric(t *testing.T, base, sample string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}

// panelRow is a row of the decisions panel as the page shows it.
type panelRow struct {
	Found     bool   `json:"found"`
	ID        string `json:"id"`
	Key       string `json:"key"`
	Rule      string `json:"rule"`
	Count     string `json:"count"`
	Left      string `json:"left"`
	Origin    string `json:"origin"`
	Reason    string `json:"reason"`
	Simulated bool   `json:"simulated"`
	SimBadge  bool   `json:"sim_badge"`
	Same      bool   `json:"same"` // the row element tagged by probe is still there
}

// panelRowJS finds the row of the decision with the full key (CIDR form);
// with probe set it tags the row element, later calls report whether the
// same element is still shown (the page did not re-render the table).
func panelRowJS(key string, probe bool) string {
	k, _ := json.Marshal(key)
	return fmt.Sprintf(`(() => {
	  const tr = [...document.querySelectorAll('#decisions-table tbody tr[data-key]')].find(r => r.dataset.key === %s);
	  if (!tr) return {found: false};
	  const same = tr.__probe === 1;
	  if (%t) tr.__probe = 1;
	  const c = tr.children;
	  return {found: true, id: tr.dataset.id, key: c[0].textContent, rule: c[1].textContent, count: c[2].textContent,
	          left: c[3].textContent, origin: c[4].textContent, reason: c[5].textContent,
	          simulated: tr.classList.contains('simulated'), sim_badge: !!c[4].querySelector('.badge.sim'), same};
	})()`, k, probe)
}

// topMark is how the top list marks an IP.
type topMark struct {
	Found bool   `json:"found"`
	Mark  string `json:"mark"`
	Badge string `json:"badge"`
	Title string `json:"title"`
}

func topMarkJS(ip string) string {
	k, _ := json.Marshal(`#top-chart g.row[data-ip="` + ip + `"]`)
	return fmt.Sprintf(`(() => {
	  const g = document.querySelector(%s);
	  if (!g) return {found: false};
	  const b = g.querySelector('g.badge');
	  return {found: true, mark: g.getAttribute('data-mark') || '', badge: b ? b.querySelector('text').textContent : '',
	          title: b ? b.querySelector('title').textContent : ''};
	})()`, k)
}

var leftRE = regexp.MustCompile(`^(?:(\d+)m )?(\d+)s$`)

// leftSeconds reads a time left shown as "9m 58s" or "45s".
func leftSeconds(t *testing.T, s string) int {
	t.Helper()
	m := leftRE.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("time left %q is not like 9m 58s", s)
	}
	mins, _ := strconv.Atoi(m[1])
	sec, _ := strconv.Atoi(m[2])
	return mins*60 + sec
}

// A flood over TCP is decided by the rule and shows up live: in the
// decisions panel with its rule, count and a time left that counts down in
// the page, and marked banned in the top list. A ban by hand of a network
// marks the IPs inside it, its reason shown as text. After the threshold is
// raised (so that the still flooding IP is not decided again at once), an
// unban through the API removes the decision from the page without a
// reload.
func TestDashboardDecisions(t *testing.T) {
	chrome := chromePath(t)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	writeRules(t, rules, rulesYAML("enforce", 50))
	a := startApp(t, "-rules.file="+rules, "-detector.interval=200ms")
	base := "http://" + a.HTTPAddr().String()
	tcp := a.Ingest.TCPAddr()

	ctx := openBrowser(t, chrome)
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1440, 1010),
		chromedp.Navigate(base+"/?last=15m&n=10"),
		chromedp.WaitVisible(chromedp.CSS(`#decisions-panel`)),
	); err != nil {
		t.Fatalf("open dashboard: %v", err)
	}
	waitJS(t, ctx, "empty panel in enforce mode",
		`({rows: document.querySelector('#decisions-table tbody').textContent, mode: document.querySelector('#decisions-panel').dataset.mode,
		   text: document.querySelector('#decisions-mode').textContent, badgeHidden: document.querySelector('#decisions-mode-badge').getBoundingClientRect().width === 0})`,
		func(v map[string]any) bool {
			return v["rows"] == "No active decisions." && v["mode"] == "enforce" && strings.HasPrefix(v["text"].(string), "Enforce mode") && v["badgeHidden"] == true
		})
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.__marker = 1`)); err != nil {
		t.Fatal(err)
	}
	noReload := func(when string) {
		t.Helper()
		if m, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__marker || 0`)); err != nil || m != 1 {
			t.Fatalf("page was reloaded %s (window.__marker = %d, %v)", when, m, err)
		}
	}

	const flood = "198.18.0.66"
	sendTCP(t, tcp, flood, 300)
	sendTCP(t, tcp, "192.0.2.10", 30) // below the threshold
	sendTCP(t, tcp, "203.0.113.5", 20)
	d := waitDecision(t, base, "http-flood", flood+"/32")
	if d.Count <= 50 || d.Threshold != 50 || d.Origin != "logtally" || d.Simulated {
		t.Fatalf("decision %+v", d)
	}

	// The panel lists it, pushed: rule, count that triggered / threshold,
	// origin, time left.
	row := waitJS(t, ctx, "the flood's decision in the panel", panelRowJS(flood+"/32", true), func(r panelRow) bool { return r.Found })
	if row.ID != strconv.FormatUint(d.ID, 10) || row.Key != flood || row.Rule != "http-flood" || row.Count != fmtCount(int(d.Count))+" / 50" ||
		row.Origin != "detector" || row.Simulated || row.SimBadge || row.Reason != "" {
		t.Fatalf("panel row %+v for decision %+v", row, d)
	}
	left0 := leftSeconds(t, row.Left)
	if left0 > 600 || left0 < 580 {
		t.Fatalf("time left %q of a 10m ban", row.Left)
	}
	// The top list marks the IP banned, with the rule and the time left.
	mark := waitJS(t, ctx, "the flood marked banned in the top list", topMarkJS(flood), func(m topMark) bool { return m.Mark == "banned" })
	if mark.Badge != "banned" || !strings.Contains(mark.Title, "http-flood") || !strings.HasSuffix(mark.Title, " left") {
		t.Fatalf("top mark %+v", mark)
	}
	if m := waitJS(t, ctx, "an IP below the threshold", topMarkJS("203.0.113.5"), func(m topMark) bool { return m.Found }); m.Mark != "" || m.Badge != "" {
		t.Fatalf("203.0.113.5 is marked: %+v", m)
	}

	// The time left counts down in the page: the same row element (no new
	// event re-rendered the table) shows less time.
	time.Sleep(2200 * time.Millisecond)
	row = waitJS(t, ctx, "the time left counting down", panelRowJS(flood+"/32", false), func(r panelRow) bool { return r.Found })
	if left1 := leftSeconds(t, row.Left); !row.Same || left1 >= left0 || left1 < left0-10 {
		t.Fatalf("time left went from %ds to %q (same row element: %v); want it about 2 seconds less, counted in the page", left0, row.Left, row.Same)
	}
	mark = waitJS(t, ctx, "the badge's title counting down", topMarkJS(flood), func(m topMark) bool { return m.Mark == "banned" })
	t.Logf("panel: %+v; top list badge title: %q", row, mark.Title)

	// A ban by hand of a network, with markup in its reason: the reason is
	// text, and the IP inside the network is marked.
	reason := `<img src=x onerror="window.__xss=3"><b>bold</b> & "quoted" <script>window.__xss=4</script>`
	manual := banByHand(t, base, "192.0.2.0/24", reason)
	row = waitJS(t, ctx, "the ban by hand in the panel", panelRowJS("192.0.2.0/24", false), func(r panelRow) bool { return r.Found })
	if row.ID != strconv.FormatUint(manual.ID, 10) || row.Key != "192.0.2.0/24" || row.Rule != "manual" || row.Origin != "manual" || row.Count != "–" || row.Reason != reason {
		t.Fatalf("manual row %+v", row)
	}
	xss := waitJS(t, ctx, "markup shown as text",
		`({elements: document.querySelectorAll('#decisions-panel img, #decisions-panel b, #decisions-panel script').length, xss: window.__xss === undefined ? 0 : window.__xss})`,
		func(v map[string]float64) bool { return true })
	if xss["elements"] != 0 || xss["xss"] != 0 {
		t.Fatalf("the reason became markup: %v", xss)
	}
	mark = waitJS(t, ctx, "an IP inside the banned network", topMarkJS("192.0.2.10"), func(m topMark) bool { return m.Mark == "banned" })
	if !strings.Contains(mark.Title, "by hand") || !strings.Contains(mark.Title, "192.0.2.0/24") {
		t.Fatalf("mark of 192.0.2.10: %+v", mark)
	}

	// Raise the threshold, so that the detector does not decide the flood
	// again at once (it is still over 50 in its range), then unban it
	// through the API.
	writeRules(t, rules, rulesYAML("enforce", 100000))
	deadline := time.Now().Add(30 * time.Second)
	for metric(t, base, `logtally_detector_rules_reloads_total{result="ok"}`) == "0" {
		if time.Now().After(deadline) {
			t.Fatal("the detector did not reload the rules")
		}
		time.Sleep(100 * time.Millisecond)
	}
	req, _ := http.NewRequest(http.MethodDelete, fmt.Sprintf("%s/api/v1/decisions/%d", base, d.ID), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("unban: %d", resp.StatusCode)
	}
	waitJS(t, ctx, "the unbanned decision leaves the panel", panelRowJS(flood+"/32", false), func(r panelRow) bool { return !r.Found })
	waitJS(t, ctx, "the unbanned IP unmarked", topMarkJS(flood), func(m topMark) bool { return m.Found && m.Mark == "" && m.Badge == "" })
	time.Sleep(time.Second) // five evaluations
	if r := waitJS(t, ctx, "the panel after the unban", panelRowJS(flood+"/32", false), func(panelRow) bool { return true }); r.Found {
		t.Fatalf("decided again: %+v", r)
	}
	if m := waitJS(t, ctx, "the ban by hand still marked", topMarkJS("192.0.2.10"), func(topMark) bool { return true }); m.Mark != "banned" {
		t.Fatalf("192.0.2.10 after the other unban: %+v", m)
	}
	noReload("during the test")
}

// In simulate mode the panel says so, the rule's decision is listed with a
// "simulated" badge and its IP is marked simulated in the top list, not
// banned; a ban by hand (enforced in either mode) of an IPv6 network is
// marked banned next to it.
func TestDashboardSimulateMode(t *testing.T) {
	chrome := chromePath(t)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	writeRules(t, rules, rulesYAML("simulate", 50))
	a := startApp(t, "-rules.file="+rules, "-detector.interval=200ms")
	base := "http://" + a.HTTPAddr().String()
	tcp := a.Ingest.TCPAddr()

	ctx := openBrowser(t, chrome)
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1440, 1010),
		chromedp.Navigate(base+"/?last=15m&n=10"),
		chromedp.WaitVisible(chromedp.CSS(`#decisions-panel`)),
	); err != nil {
		t.Fatalf("open dashboard: %v", err)
	}
	mode := waitJS(t, ctx, "simulate mode shown",
		`(() => { const b = document.querySelector('#decisions-mode-badge');
		  return {mode: document.querySelector('#decisions-panel').dataset.mode, text: document.querySelector('#decisions-mode').textContent,
		          badge: b.hidden ? '' : b.textContent, visible: b.getBoundingClientRect().width > 0}; })()`,
		func(v map[string]any) bool {
			return v["mode"] == "simulate" && v["badge"] == "simulate mode" && v["visible"] == true
		})
	if text := mode["text"].(string); !strings.HasPrefix(text, "Simulate mode") || !strings.Contains(text, "not enforced") {
		t.Fatalf("mode notice %q", text)
	}

	const flood = "198.18.0.77"
	sendTCP(t, tcp, flood, 200)
	sendTCP(t, tcp, "2001:db8:7::5", 20)
	d := waitDecision(t, base, "http-flood", flood+"/32")
	if !d.Simulated {
		t.Fatalf("decision in simulate mode %+v", d)
	}
	manual := banByHand(t, base, "2001:db8:7::/48", "v6 test")

	row := waitJS(t, ctx, "the simulated decision in the panel", panelRowJS(flood+"/32", false), func(r panelRow) bool { return r.Found })
	if row.Rule != "http-flood" || !row.Simulated || !row.SimBadge || row.Origin != "detector simulated" {
		t.Fatalf("simulated row %+v", row)
	}
	mark := waitJS(t, ctx, "the flood marked simulated", topMarkJS(flood), func(m topMark) bool { return m.Mark == "simulated" })
	if mark.Badge != "simulated" || !strings.Contains(mark.Title, "not enforced") || !strings.Contains(mark.Title, "http-flood") {
		t.Fatalf("top mark %+v", mark)
	}
	row = waitJS(t, ctx, "the ban by hand in the panel", panelRowJS("2001:db8:7::/48", false), func(r panelRow) bool { return r.Found })
	if row.ID != strconv.FormatUint(manual.ID, 10) || row.Simulated || row.SimBadge || row.Reason != "v6 test" {
		t.Fatalf("manual row %+v", row)
	}
	if mark = waitJS(t, ctx, "the IPv6 address in the banned network", topMarkJS("2001:db8:7::5"), func(m topMark) bool { return m.Mark != "" }); mark.Mark != "banned" {
		t.Fatalf("mark of 2001:db8:7::5: %+v", mark)
	}
}

package browser

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// fieldRowsJS reads one field panel: value → count text, and the "other"
// row's count ("" when absent).
func fieldRowsJS(field string) string {
	return `(() => {
	  const p = document.querySelector('#field-` + field + `');
	  if (!p) return {rows: [], other: ''};
	  const rows = [...p.querySelectorAll('tr[data-value]')].map(tr => tr.dataset.value + '=' + tr.children[1].textContent);
	  const o = p.querySelector('tr.other');
	  return {rows, other: o ? o.children[1].textContent : ''};
	})()`
}

type fieldRows struct {
	Rows  []string `json:"rows"`
	Other string   `json:"other"`
}

// The field panels show each field's exact counts, pushed live; clicking a
// 4xx status ranks the clients and the fields by client errors, in the URL
// too, until the filter is cleared.
func TestFieldPanels(t *testing.T) {
	chrome := chromePath(t)
	a := startApp(t)
	base := "http://" + a.HTTPAddr().String()
	now := time.Now()
	ts := func(i int) string {
		return now.Add(-time.Duration(i%1800) * time.Second).UTC().Format("02/Jan/2006:15:04:05 -0700")
	}
	// 203.0.113.7 sends the most requests, all answered 200; 198.51.100.9
	// fewer, all 404 (a scanner); 192.0.2.1 a few 500s.
	var lines [][]byte
	add := func(n int, ip, method, target string, status int, ua string) {
		for i := range n {
			lines = append(lines, fmt.Appendf(nil, `%s - - [%s] "%s %s HTTP/1.1" %d 512 "-" "%s"`, ip, ts(i), method, target, status, ua))
		}
	}
	chrome120 := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	add(600, "203.0.113.7", "GET", "/index.html", 200, chrome120)
	add(250, "203.0.113.7", "GET", "/search?q=logs", 200, chrome120) // counted as /search
	add(300, "198.51.100.9", "GET", "/wp-login.php", 404, "curl/8.5.0")
	add(120, "198.51.100.9", "POST", "/xmlrpc.php", 404, "curl/8.5.0")
	add(40, "192.0.2.1", "GET", "/api/v1/items", 500, chrome120)
	ingest(t, base, "nginx", lines)
	waitTotals(t, base, len(lines), 0)

	ctx := openBrowser(t, chrome)
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1440, 1300),
		chromedp.Navigate(base+"/?last=1h&n=10"),
		chromedp.WaitVisible(chromedp.CSS(`#field-status tr[data-value]`)),
	); err != nil {
		t.Fatalf("open dashboard: %v", err)
	}
	same := func(want []string, other string) func(fieldRows) bool {
		return func(r fieldRows) bool { return slices.Equal(r.Rows, want) && r.Other == other }
	}
	waitJS(t, ctx, "status panel", fieldRowsJS("status"), same([]string{"200=850", "404=420", "500=40"}, ""))
	waitJS(t, ctx, "path panel, query strings dropped", fieldRowsJS("path"),
		same([]string{"/index.html=600", "/wp-login.php=300", "/search=250", "/xmlrpc.php=120", "/api/v1/items=40"}, ""))
	waitJS(t, ctx, "method panel", fieldRowsJS("method"), same([]string{"GET=1,190", "POST=120"}, ""))
	waitJS(t, ctx, "browser panel", fieldRowsJS("ua"), same([]string{"Chrome=890", "curl=420"}, ""))
	waitJS(t, ctx, "first IP by requests", firstRowJS, func(r row) bool { return r.IP == "203.0.113.7" && r.Count == "850" })

	// Click 404: clients and fields are ranked by 4xx answers.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#field-status tr[data-value="404"]`))); err != nil {
		t.Fatalf("click status: %v", err)
	}
	waitJS(t, ctx, "first IP by 4xx", firstRowJS, func(r row) bool { return r.IP == "198.51.100.9" && r.Count == "420" && r.Rows == 1 })
	waitJS(t, ctx, "paths by 4xx", fieldRowsJS("path"), same([]string{"/wp-login.php=300", "/xmlrpc.php=120"}, ""))
	f := waitJS(t, ctx, "filter shown and kept in the URL",
		`({text: document.querySelector('#filter-text').textContent, hidden: document.querySelector('#filter').hidden, url: location.search})`,
		func(v map[string]any) bool {
			return v["hidden"] == false && strings.Contains(v["url"].(string), "class=4xx")
		})
	t.Logf("filter: %v", f)

	// New lines are pushed into the filtered view without a reload.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.__marker = 1`)); err != nil {
		t.Fatal(err)
	}
	lines = lines[:0]
	add(500, "192.0.2.77", "GET", "/.env", 404, "python-requests/2.32.3")
	ingest(t, base, "nginx", lines)
	waitJS(t, ctx, "new scanner pushed", firstRowJS, func(r row) bool { return r.IP == "192.0.2.77" && r.Count == "500" })
	waitJS(t, ctx, "its path pushed", fieldRowsJS("path"), same([]string{"/.env=500", "/wp-login.php=300", "/xmlrpc.php=120"}, ""))
	if marker, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__marker || 0`)); err != nil || marker != 1 {
		t.Fatalf("page was reloaded (window.__marker = %d, %v)", marker, err)
	}

	// Clear: back to requests.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#filter-clear`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "first IP by requests again", firstRowJS, func(r row) bool { return r.IP == "203.0.113.7" && r.Count == "850" })
	waitJS(t, ctx, "status panel by requests", fieldRowsJS("status"), same([]string{"404=920", "200=850", "500=40"}, ""))
}

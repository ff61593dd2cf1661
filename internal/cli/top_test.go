package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// fakeQueryAPI behaves like the server's /api/v1/top and /api/v1/totals.
type fakeQueryAPI struct {
	mu      sync.Mutex
	queries map[string]url.Values // path → last query
	topBody string
	status  int    // non-zero: answer every request with it
	errBody string // body for status
}

func (f *fakeQueryAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if f.queries == nil {
		f.queries = map[string]url.Values{}
	}
	f.queries[r.URL.Path] = r.URL.Query()
	f.mu.Unlock()
	if r.Method != http.MethodGet {
		http.Error(w, `{"error":"method not allowed"}`, http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if f.status != 0 {
		w.WriteHeader(f.status)
		io.WriteString(w, f.errBody)
		return
	}
	switch r.URL.Path {
	case "/api/v1/top":
		io.WriteString(w, f.topBody)
	case "/api/v1/totals":
		json.NewEncoder(w).Encode(TotalsAnswer{
			Requests: 98765, DistinctIPs: 1234, DeadLetters: 2, Late: 17,
			From: "2024-05-01T12:00:00Z", To: "2024-05-01T12:05:00Z",
		})
	default:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"no such endpoint"}`)
	}
}

func (f *fakeQueryAPI) query(path string) url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries[path]
}

const sampleTop = `{"from":"2024-05-01T12:00:00Z","to":"2024-05-01T12:05:00Z","items":[` +
	`{"ip":"203.0.113.7","count":1286},{"ip":"198.51.100.23","count":643},` +
	`{"ip":"2001:db8::1","count":321},{"ip":"192.0.2.1","count":1}]}`

func newQueryServer(t *testing.T, f *fakeQueryAPI) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv
}

func countRune(s string, r rune) int { return strings.Count(s, string(r)) }

// barOf returns the bar at the end of a table row: its full blocks and
// whether it has a partial block.
func barOf(row string) (full int, partial bool) {
	full = countRune(row, '█')
	for _, p := range barEighths[1:] {
		if strings.Contains(row, p) {
			partial = true
		}
	}
	return full, partial
}

func TestTopTable(t *testing.T) {
	f := &fakeQueryAPI{topBody: sampleTop}
	srv := newQueryServer(t, f)
	var out, errOut strings.Builder
	err := Top(context.Background(), []string{"--addr", srv.URL, "-n", "4", "--last", "5m"}, &out, &errOut)
	if err != nil {
		t.Fatalf("Top: %v (stderr %q)", err, errOut.String())
	}
	got := out.String()
	t.Logf("output:\n%s", got)

	if q := f.query("/api/v1/top"); q.Get("n") != "4" || q.Get("last") != "5m" {
		t.Errorf("top query = %v, want n=4 last=5m", q)
	}
	if q := f.query("/api/v1/totals"); q.Get("last") != "5m" {
		t.Errorf("totals query = %v, want last=5m", q)
	}
	for _, want := range []string{
		"2024-05-01 12:00:00 → 12:05:00 UTC (5m0s)",
		"requests 98,765", "distinct IPs 1,234", "dead letters 2", "late 17",
		"1,286", "listed 2,251 requests of 98,765 (2.3%)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	var rows []string
	for _, l := range lines {
		if strings.Contains(l, "█") || strings.Contains(l, "▏") {
			rows = append(rows, l)
		}
	}
	if len(rows) != 4 {
		t.Fatalf("got %d rows with bars, want 4:\n%s", len(rows), got)
	}
	wantIPs := []string{"203.0.113.7", "198.51.100.23", "2001:db8::1", "192.0.2.1"}
	wantShare := []string{"57.1%", "28.6%", "14.3%", "0.0%"}
	for i, row := range rows {
		fields := strings.Fields(row)
		if fields[0] != string(rune('1'+i)) || fields[1] != wantIPs[i] || fields[3] != wantShare[i] {
			t.Errorf("row %d = %q, want rank %d, IP %s, share %s", i, row, i+1, wantIPs[i], wantShare[i])
		}
	}
	// Bars: the largest fills DefaultBarWidth, the others scale with it.
	// 1286 → 40 blocks, 643 → 20, 321 → 79.9 eighths ≈ 10, 1 → a sliver.
	wantFull := []int{40, 20, 10, 0}
	full0, _ := barOf(rows[0])
	full1, part1 := barOf(rows[1])
	full3, part3 := barOf(rows[3])
	if full0 != wantFull[0] || full1 != wantFull[1] || part1 {
		t.Errorf("bars 1,2 = %d,%d(+partial %v) blocks, want 40,20", full0, full1, part1)
	}
	full2, _ := barOf(rows[2])
	if full2 != wantFull[2] {
		t.Errorf("bar 3 = %d blocks, want %d", full2, wantFull[2])
	}
	if full3 != 0 || !part3 {
		t.Errorf("bar 4 = %d full blocks (partial %v), want a sliver", full3, part3)
	}
	// Bars start in the same column.
	col := -1
	for _, row := range rows {
		i := strings.IndexAny(row, "█▏▎▍▌▋▊▉")
		c := utf8.RuneCountInString(row[:i])
		if col >= 0 && c != col {
			t.Errorf("bar columns differ: %d vs %d", c, col)
		}
		col = c
	}
}

func TestRenderTopRespectsWidth(t *testing.T) {
	var top TopAnswer
	if err := json.Unmarshal([]byte(sampleTop), &top); err != nil {
		t.Fatal(err)
	}
	totals := TotalsAnswer{Requests: 3000, DistinctIPs: 4}
	for _, width := range []int{120, 80, 60, 30} {
		var b strings.Builder
		if err := RenderTop(&b, top, totals, width); err != nil {
			t.Fatal(err)
		}
		maxFull := 0
		for _, l := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
			if n := utf8.RuneCountInString(l); n > width {
				t.Errorf("width %d: line of %d columns: %q", width, n, l)
			}
			full, _ := barOf(l)
			maxFull = max(maxFull, full)
		}
		if width >= 60 {
			// The top row uses the whole width: its bar ends at the edge.
			var first string
			for _, l := range strings.Split(b.String(), "\n") {
				if strings.Contains(l, "203.0.113.7") {
					first = l
				}
			}
			if n := utf8.RuneCountInString(first); n != width {
				t.Errorf("width %d: top row has %d columns, want %d: %q", width, n, width, first)
			}
		}
		if width == 120 && maxFull <= DefaultBarWidth {
			t.Errorf("width 120: longest bar %d, want wider than the default", maxFull)
		}
	}
}

func TestRenderTopEmpty(t *testing.T) {
	var b strings.Builder
	if err := RenderTop(&b, TopAnswer{From: "x", To: "y"}, TotalsAnswer{}, 0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "no requests in this range") || !strings.Contains(b.String(), "x → y") {
		t.Errorf("empty table:\n%s", b.String())
	}
}

func TestTopJSONPassthrough(t *testing.T) {
	f := &fakeQueryAPI{topBody: sampleTop}
	srv := newQueryServer(t, f)
	var out strings.Builder
	err := Top(context.Background(), []string{"-addr", srv.URL, "--json", "--from", "2024-05-01T12:00:00Z", "--to", "2024-05-01T12:05:00Z"}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != sampleTop+"\n" {
		t.Errorf("--json output = %q, want the server's body", out.String())
	}
	q := f.query("/api/v1/top")
	if q.Get("from") != "2024-05-01T12:00:00Z" || q.Get("to") != "2024-05-01T12:05:00Z" || q.Has("last") {
		t.Errorf("query = %v, want from/to and no last", q)
	}
	if f.query("/api/v1/totals") != nil {
		t.Errorf("--json fetched totals too")
	}
}

func TestTopServerError(t *testing.T) {
	f := &fakeQueryAPI{status: http.StatusBadRequest, errBody: `{"error":"invalid last: \"5 parsecs\""}`}
	srv := newQueryServer(t, f)
	for _, extra := range [][]string{nil, {"--json"}} {
		err := Top(context.Background(), append([]string{"--addr", srv.URL, "--last", "5 parsecs"}, extra...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), `invalid last: "5 parsecs"`) || !strings.Contains(err.Error(), "400") {
			t.Errorf("args %v: err = %v, want the server's message and status", extra, err)
		}
	}

	f2 := &fakeQueryAPI{status: http.StatusInternalServerError, errBody: "boom, not json"}
	srv2 := newQueryServer(t, f2)
	err := Top(context.Background(), []string{"--addr", srv2.URL}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "boom, not json") {
		t.Errorf("err = %v, want the plain body", err)
	}
}

func TestTopConnectionError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	err := Top(context.Background(), []string{"--addr", addr}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "/api/v1/top") {
		t.Errorf("err = %v", err)
	}
}

func TestTopFlags(t *testing.T) {
	var usage strings.Builder
	if err := Top(context.Background(), []string{"-h"}, io.Discard, &usage); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: err = %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(usage.String(), "logtally top") || !strings.Contains(usage.String(), "-last") {
		t.Errorf("usage = %q", usage.String())
	}
	for _, args := range [][]string{
		{"--last", "5m", "--from", "2024-05-01T12:00:00Z"},
		{"--from", "yesterday"},
		{"-n", "0"},
		{"extra"},
		{"--addr", "ftp://x"},
	} {
		if err := Top(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("args %v: no error", args)
		}
	}
}

func TestFormatCount(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0", 7: "7", 999: "999", 1000: "1,000", 1286: "1,286", 123456: "123,456",
		1234567: "1,234,567", -1286: "-1,286", -9223372036854775808: "-9,223,372,036,854,775,808",
	} {
		if got := formatCount(n); got != want {
			t.Errorf("formatCount(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBar(t *testing.T) {
	if got := bar(100, 100, 10); got != strings.Repeat("█", 10) {
		t.Errorf("full bar = %q", got)
	}
	if got := bar(50, 100, 10); got != strings.Repeat("█", 5) {
		t.Errorf("half bar = %q", got)
	}
	if got := bar(1, 100, 10); got != "▏" {
		t.Errorf("sliver = %q", got)
	}
	if got := bar(0, 100, 10); got != "" {
		t.Errorf("zero = %q", got)
	}
	if got := bar(55, 100, 10); got != strings.Repeat("█", 5)+"▌" {
		t.Errorf("5.5 bar = %q", got)
	}
}

package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/apptest"
	"github.com/logtally/logtally/internal/cli"
)

// `logtally top --by <field>` against a running logtally: the table shows
// the values, their counts and class counters as the lines sent make them,
// the exact remainder and the total; --status 4xx ranks by client errors,
// also for IPs; what the server refuses comes back with its reason.
func TestTopByFieldAgainstServer(t *testing.T) {
	a := apptest.Start(t, "-parser.partitions=2")
	now := time.Now().UTC().Truncate(time.Second)
	from := now.Truncate(time.Minute)
	to := from.Add(time.Minute)
	stamp := now.Format("02/Jan/2006:15:04:05 -0700")
	var b strings.Builder
	add := func(n int, ip, path string, status, size int) {
		for range n {
			fmt.Fprintf(&b, "%s - - [%s] \"GET %s HTTP/1.1\" %d %d\n", ip, stamp, path, status, size)
		}
	}
	long := "/static/" + strings.Repeat("z", 30) + ".js" // hashed: longer than a key holds
	add(40, "10.0.0.1", "/index.html", 200, 100)
	add(25, "10.0.0.2", long, 200, 1000)
	add(9, "10.0.0.3", "/admin", 404, 10)
	add(3, "10.0.0.4", "/admin", 500, 10)
	add(2, "10.0.0.5", "/rare", 403, 10)
	c, err := net.Dial("tcp", a.Ingest.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	addr := "http://" + a.HTTPAddr().String()
	rangeArgs := []string{"--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339)}
	apptest.Eventually(t, "lines counted", 30*time.Second, func() bool {
		resp, err := http.Get(addr + "/api/v1/top?by=path&from=" + url.QueryEscape(from.Format(time.RFC3339)) + "&to=" + url.QueryEscape(to.Format(time.RFC3339)))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var v cli.ValuesAnswer
		return json.NewDecoder(resp.Body).Decode(&v) == nil && v.Total.Requests == 79
	})
	top := func(args ...string) (string, error) {
		var out, errOut strings.Builder
		err := cli.Top(context.Background(), append(append([]string{"--addr", addr}, rangeArgs...), args...), &out, &errOut)
		t.Logf("logtally top %v:\n%s%s", args, out.String(), errOut.String())
		return out.String(), err
	}
	// row finds the table row of a value and returns its cells.
	row := func(out, value string) []string {
		for _, l := range strings.Split(out, "\n") {
			f := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(l), -1)
			if len(f) == 8 && f[1] == value {
				return f
			}
		}
		t.Fatalf("no row of %q in:\n%s", value, out)
		return nil
	}

	out, err := top("--by", "path", "-n", "3")
	if err != nil {
		t.Fatal(err)
	}
	for value, want := range map[string]string{
		"/index.html": "1 /index.html 40 40 0 0 0 3.9 KiB",
		long:          "2 " + long + " 25 25 0 0 0 24.4 KiB",
		"/admin":      "3 /admin 12 12 9 3 0 120 B",
	} {
		if got := strings.Join(row(out, value), " "); got != want {
			t.Errorf("row %q = %q, want %q", value, got, want)
		}
	}
	for _, want := range []string{
		"top 3 path values · " + from.Format("2006-01-02 15:04:05"),
		"# PATH COUNT REQUESTS 4XX 5XX AUTH BYTES",
		"other 2 requests in the values not listed",
		"total requests 79 · 4xx 11 · 5xx 3 · auth failures 0 · bytes 28.5 KiB",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("output lacks %q", want)
		}
	}

	// --status 4xx ranks the paths by client errors.
	out, err = top("--by", "path", "--status", "4xx")
	if err != nil {
		t.Fatal(err)
	}
	if r := row(out, "/admin"); r[0] != "1" || r[2] != "9" {
		t.Errorf("--status 4xx: /admin row %v, want rank 1 count 9", r)
	}
	if r := row(out, "/rare"); r[0] != "2" || r[2] != "2" || strings.Contains(out, "/index.html") {
		t.Errorf("--status 4xx: /rare row %v, and only values with 4xx", r)
	}
	if !strings.Contains(out, "top 2 path values by 4xx") || !strings.Contains(out, "other  0 4xx") {
		t.Errorf("--status 4xx: header or other line wrong")
	}
	// --by status lists the codes.
	out, err = top("--by", "status")
	if err != nil {
		t.Fatal(err)
	}
	if r := row(out, "200"); r[2] != "65" {
		t.Errorf("--by status: 200 row %v", r)
	}
	// --json passes the server's answer through.
	out, err = top("--by", "method", "--json")
	var v cli.ValuesAnswer
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || v.By != "method" || len(v.Items) != 1 || v.Items[0].Value != "GET" || v.Items[0].Count != 79 {
		t.Errorf("--json: %v %+v", err, v)
	}
	// IPs by 4xx, footer against the 4xx total.
	out, err = top("--status", "4xx")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "top 2 IPs by 4xx") || !strings.Contains(out, "listed 11 4xx of 11 (100.0%)") || !strings.Contains(out, "10.0.0.3") {
		t.Errorf("IPs --status 4xx: wrong table")
	}

	// Refused by the server, with its reason; --watch is for IPs.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--status", "404"}, "by=status"},
		{[]string{"--by", "path", "--status", "404"}, "by=status"},
		{[]string{"--by", "nope"}, "not known"},
		{[]string{"--by", "path", "--watch"}, "--watch shows IPs only"},
	} {
		if _, err := top(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want one mentioning %q", c.args, err, c.want)
		}
	}
}

// With a terminal width every line fits: the value column is cut with "…";
// a value whose text the server lacks says so.
func TestRenderValuesWidth(t *testing.T) {
	v := cli.ValuesAnswer{From: "2024-05-01T12:00:00Z", To: "2024-05-01T12:05:00Z", By: "ua", Class: "requests", Other: 5,
		Items: []cli.ValueItem{
			{Value: strings.Repeat("LongBrowserName", 10), Known: true, Count: 1286, ValueCounters: cli.ValueCounters{Requests: 1286, Bytes: 1 << 20}},
			{Value: "#0102", Known: false, Count: 3, ValueCounters: cli.ValueCounters{Requests: 3}},
		},
		Total: cli.ValueCounters{Requests: 1294}}
	for _, width := range []int{60, 80, 200} {
		var out strings.Builder
		if err := cli.RenderValues(&out, v, width); err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
			if n := len([]rune(l)); n > width {
				t.Errorf("width %d: line of %d columns: %q", width, n, l)
			}
		}
		if !strings.Contains(out.String(), "1,286") || !strings.Contains(out.String(), "1.0 MiB") {
			t.Errorf("width %d: counts missing:\n%s", width, out.String())
		}
		if width == 200 && !strings.Contains(out.String(), "#0102 (text unknown)") {
			t.Errorf("unknown value not marked:\n%s", out.String())
		}
		if width == 60 && !strings.Contains(out.String(), "…") {
			t.Errorf("width 60: nothing cut:\n%s", out.String())
		}
	}
	var out strings.Builder
	if err := cli.RenderValues(&out, cli.ValuesAnswer{By: "path", Class: "4xx"}, 0); err != nil || !strings.Contains(out.String(), "no 4xx in this range") {
		t.Errorf("empty: %v %q", err, out.String())
	}
}

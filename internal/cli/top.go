package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TopItem is one row of the /api/v1/top answer.
type TopItem struct {
	IP    string `json:"ip"`
	Count int64  `json:"count"`
}

// TopAnswer is the body of GET /api/v1/top.
type TopAnswer struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Class is what the items are ranked by (requests when empty).
	Class string    `json:"class"`
	Items []TopItem `json:"items"`
}

// TotalsAnswer is the body of GET /api/v1/totals.
type TotalsAnswer struct {
	Requests    int64  `json:"requests"`
	DistinctIPs int64  `json:"distinct_ips"`
	DeadLetters int64  `json:"dead_letters"`
	Late        int64  `json:"late"`
	From        string `json:"from"`
	To          string `json:"to"`
	Status4xx   int64  `json:"status_4xx"`
	Status5xx   int64  `json:"status_5xx"`
}

// DefaultBarWidth is the bar width RenderTop uses when it is given no
// terminal width (width <= 0), e.g. when stdout is a pipe or a file.
const DefaultBarWidth = 40

const topSynopsis = "logtally top [--addr URL] [--by ip|status|method|path|vhost|ua|os|program|event] [--status 4xx|5xx] [--last 5m | --from TIME --to TIME] [-n 10] [--json] [--watch]"

const topDescription = `Shows the IPs with the most requests in a time range, fetched from a running
logtally server. --from/--to take RFC 3339 times (2024-05-01T12:00:00Z) and
replace --last. --json prints the server's /api/v1/top answer unchanged.
--watch keeps the table open and redraws it whenever the server pushes a
change (Server-Sent Events, no polling); with --json it prints one JSON
object per update instead (NDJSON).

--by ranks the values of another field instead of the IPs (docs/fields.md):
the table shows each value's count and class counters, then the exact
remainder of the field (other) and its total. --status 4xx (or 5xx) ranks
by that class instead of requests; the windows count classes, not single
status codes (for those: --by status). --watch shows IPs only.`

// topOptions are the parsed flags of the top subcommand.
type topOptions struct {
	addr    string
	by      string
	status  string
	last    string
	from    string
	to      string
	n       int
	json    bool
	watch   bool
	timeout time.Duration
}

func parseTopFlags(args []string, stderr io.Writer) (topOptions, error) {
	var o topOptions
	fs := newFlagSet("top", topSynopsis, topDescription, stderr)
	fs.StringVar(&o.addr, "addr", DefaultAddr, "base `URL` of the logtally HTTP API")
	fs.StringVar(&o.by, "by", "ip", "`field` to rank: ip, status, method, path, vhost, ua, os, program or event")
	fs.StringVar(&o.status, "status", "", "rank by a status `class`, 4xx or 5xx, instead of requests")
	fs.StringVar(&o.last, "last", "5m", "time range ending now, e.g. 30s, 5m, 1h (ignored with --from/--to)")
	fs.StringVar(&o.from, "from", "", "start of the range, RFC 3339 `time`")
	fs.StringVar(&o.to, "to", "", "end of the range, RFC 3339 `time`")
	fs.IntVar(&o.n, "n", 10, "number of IPs to show")
	fs.BoolVar(&o.json, "json", false, "print the raw JSON answer of /api/v1/top")
	fs.BoolVar(&o.watch, "watch", false, "keep watching: redraw on every change the server pushes (with --json: one JSON object per line)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "timeout of the whole command (0 = none; with --watch the default is none)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.watch && !flagWasSet(fs, "timeout") {
		o.timeout = 0
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return o, fmt.Errorf("top: unexpected argument %q", fs.Arg(0))
	}
	if o.n <= 0 {
		return o, fmt.Errorf("top: -n must be positive, got %d", o.n)
	}
	if o.by = strings.TrimSpace(o.by); o.by == "" {
		o.by = "ip"
	}
	if o.watch && o.by != "ip" {
		return o, fmt.Errorf("top: --watch shows IPs only, not --by %s", o.by)
	}
	if o.from != "" || o.to != "" {
		if flagWasSet(fs, "last") {
			return o, errors.New("top: --last cannot be combined with --from/--to")
		}
		o.last = ""
		for _, t := range []struct{ name, v string }{{"from", o.from}, {"to", o.to}} {
			if t.v == "" {
				continue
			}
			if _, err := time.Parse(time.RFC3339Nano, t.v); err != nil {
				return o, fmt.Errorf("top: --%s must be an RFC 3339 time like 2024-05-01T12:00:00Z, got %q", t.name, t.v)
			}
		}
	} else if strings.TrimSpace(o.last) == "" {
		return o, errors.New("top: --last must not be empty")
	}
	return o, nil
}

// topQuery holds the parameters of /top and /watch/top: the range, n,
// status and, for a field, by.
func (o topOptions) topQuery() url.Values {
	q := o.rangeQuery()
	q.Set("n", strconv.Itoa(o.n))
	if o.by != "ip" {
		q.Set("by", o.by)
	}
	if o.status != "" {
		q.Set("status", o.status)
	}
	return q
}

// rangeQuery holds the range parameters shared by /top and /totals.
func (o topOptions) rangeQuery() url.Values {
	q := url.Values{}
	if o.last != "" {
		q.Set("last", o.last)
	}
	if o.from != "" {
		q.Set("from", o.from)
	}
	if o.to != "" {
		q.Set("to", o.to)
	}
	return q
}

// Top implements `logtally top`.
func Top(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseTopFlags(args, stderr)
	if err != nil {
		return err
	}
	base, err := baseURL(o.addr)
	if err != nil {
		return err
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	client := &http.Client{}
	if o.watch {
		out, stop := newWatchOutput(stdout)
		defer stop()
		return watchTop(ctx, o, base, client, out, stderr)
	}

	topQ := o.topQuery()
	if o.json {
		body, err := getJSON(ctx, client, base, "/api/v1/top", topQ, nil)
		if err != nil {
			return err
		}
		if !bytes.HasSuffix(body, []byte("\n")) {
			body = append(body, '\n')
		}
		_, err = stdout.Write(body)
		return err
	}
	if o.by != "ip" {
		return topValues(ctx, o, base, client, stdout)
	}

	var (
		top       TopAnswer
		totals    TotalsAnswer
		totalsErr error
		wg        sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, totalsErr = getJSON(ctx, client, base, "/api/v1/totals", o.rangeQuery(), &totals)
	}()
	_, topErr := getJSON(ctx, client, base, "/api/v1/top", topQ, &top)
	wg.Wait()
	if err := errors.Join(topErr, totalsErr); err != nil {
		return err
	}
	width, _ := terminalWidth(stdout)
	return RenderTop(stdout, top, totals, width)
}

// classTotal is the total of the class top is ranked by, when totals
// carries it.
func classTotal(class string, totals TotalsAnswer) (int64, bool) {
	switch class {
	case "", "requests":
		return totals.Requests, true
	case "4xx":
		return totals.Status4xx, true
	case "5xx":
		return totals.Status5xx, true
	}
	return 0, false
}

// getJSON GETs base+path?q, returns the body of a 2xx answer and, when into
// is non-nil, decodes it there. Other answers become errors carrying the
// server's error message.
func getJSON(ctx context.Context, client *http.Client, base, path string, q url.Values, into any) ([]byte, error) {
	u := base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading answer: %w", path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, apiError(http.MethodGet, path, resp, body)
	}
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			return nil, fmt.Errorf("GET %s: decoding answer: %v", path, err)
		}
	}
	return body, nil
}

// barEighths are the partial block characters for 1/8 … 7/8 of a column.
var barEighths = []string{"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"}

// bar draws count as a bar of block characters where maxCount fills width
// columns, with 1/8-column resolution. A non-zero count always shows at least
// a sliver.
func bar(count, maxCount int64, width int) string {
	if count <= 0 || maxCount <= 0 || width <= 0 {
		return ""
	}
	eighths := int(math.Round(float64(count) / float64(maxCount) * float64(width*8)))
	if eighths > width*8 {
		eighths = width * 8
	}
	if eighths == 0 {
		eighths = 1
	}
	return strings.Repeat("█", eighths/8) + barEighths[eighths%8]
}

// formatRange renders the from/to of an answer for the header, e.g.
// "2024-05-01 12:00:00 → 12:05:00 UTC (5m0s)".
func formatRange(from, to string) string {
	f, errF := time.Parse(time.RFC3339Nano, from)
	t, errT := time.Parse(time.RFC3339Nano, to)
	if errF != nil || errT != nil {
		switch {
		case from == "" && to == "":
			return "unknown range"
		default:
			return from + " → " + to
		}
	}
	zone := func(x time.Time) string {
		name, off := x.Zone()
		if off == 0 {
			return "UTC"
		}
		if name != "" && !strings.ContainsAny(name, "+-") {
			return name
		}
		return x.Format("-07:00")
	}
	s := f.Format("2006-01-02 15:04:05") + " → "
	if f.Year() == t.Year() && f.YearDay() == t.YearDay() && zone(f) == zone(t) {
		s += t.Format("15:04:05")
	} else {
		s += t.Format("2006-01-02 15:04:05")
	}
	s += " " + zone(t)
	if d := t.Sub(f); d > 0 {
		s += " (" + d.Round(time.Second).String() + ")"
	}
	return s
}

// RenderTop writes the top table: a header with the range and the totals,
// then one row per IP with its rank, address, count, share of the listed
// total and a bar scaled to the largest count.
//
// width is the number of terminal columns available: every line written
// fits in it and the bars take the room the other columns leave. When width
// <= 0 (not a terminal) nothing is cut and the bars are DefaultBarWidth
// columns. RenderTop writes the whole table in one Write, so a watch mode
// can clear the screen and call it again.
func RenderTop(w io.Writer, top TopAnswer, totals TotalsAnswer, width int) error {
	items := append([]TopItem(nil), top.Items...)
	sort.SliceStable(items, func(i, j int) bool { return items[i].Count > items[j].Count })

	var lines []string
	lines = append(lines,
		fmt.Sprintf("top %d IPs%s · %s", len(items), byClass(top.Class), formatRange(top.From, top.To)),
		fmt.Sprintf("requests %s · distinct IPs %s · dead letters %s · late %s",
			formatCount(totals.Requests), formatCount(totals.DistinctIPs),
			formatCount(totals.DeadLetters), formatCount(totals.Late)),
		"")

	if len(items) == 0 {
		lines = append(lines, "no "+className(top.Class)+" in this range")
	} else {
		var sum, maxCount int64
		counts := make([]string, len(items))
		rankW := max(len("#"), len(strconv.Itoa(len(items))))
		ipW, countW, shareW := len("IP"), len("COUNT"), len("100.0%")
		for i, it := range items {
			sum += it.Count
			maxCount = max(maxCount, it.Count)
			counts[i] = formatCount(it.Count)
			ipW = max(ipW, displayWidth(it.IP))
			countW = max(countW, len(counts[i]))
		}
		const gap = "  "
		prefixW := rankW + len(gap) + ipW + len(gap) + countW + len(gap) + shareW + len(gap)
		barW := DefaultBarWidth
		if width > 0 {
			barW = width - prefixW
		}
		lines = append(lines, strings.TrimRight(fmt.Sprintf("%*s%s%-*s%s%*s%s%*s",
			rankW, "#", gap, ipW, "IP", gap, countW, "COUNT", gap, shareW, "SHARE"), " "))
		for i, it := range items {
			share := 0.0
			if sum > 0 {
				share = float64(it.Count) / float64(sum) * 100
			}
			row := fmt.Sprintf("%*d%s%-*s%s%*s%s%*s",
				rankW, i+1, gap, ipW, it.IP, gap, countW, counts[i], gap, shareW, fmt.Sprintf("%.1f%%", share))
			if b := bar(it.Count, maxCount, barW); b != "" {
				row += gap + b
			}
			lines = append(lines, row)
		}
		footer := fmt.Sprintf("listed %s %s", formatCount(sum), className(top.Class))
		if total, ok := classTotal(top.Class, totals); ok && total > 0 {
			footer += fmt.Sprintf(" of %s (%.1f%%)", formatCount(total),
				float64(sum)/float64(total)*100)
		}
		lines = append(lines, "", footer)
	}

	var buf bytes.Buffer
	for _, l := range lines {
		if width > 0 {
			l = truncate(l, width)
		}
		buf.WriteString(l)
		buf.WriteByte('\n')
	}
	_, err := w.Write(buf.Bytes())
	return err
}

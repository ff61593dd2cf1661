package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// ValueItem is one row of the /api/v1/top?by=<field> answer.
type ValueItem struct {
	Value string `json:"value"`
	// Known is false for a long value whose text the server no longer
	// has (Value is then "#" and its key).
	Known bool  `json:"known"`
	Count int64 `json:"count"`
	ValueCounters
}

// ValueCounters are the class counters of a value or of a field.
type ValueCounters struct {
	Requests     int64 `json:"requests"`
	Status4xx    int64 `json:"status_4xx"`
	Status5xx    int64 `json:"status_5xx"`
	AuthFailures int64 `json:"auth_failures"`
	Bytes        int64 `json:"bytes"`
}

// ValuesAnswer is the body of GET /api/v1/top?by=<field>.
type ValuesAnswer struct {
	From  string      `json:"from"`
	To    string      `json:"to"`
	By    string      `json:"by"`
	Class string      `json:"class"`
	Items []ValueItem `json:"items"`
	// Other is the ranked class over the values not listed, exactly;
	// Total the field's counters over every value.
	Other int64         `json:"other"`
	Total ValueCounters `json:"total"`
}

// topValues runs `logtally top --by <field>` (not ip).
func topValues(ctx context.Context, o topOptions, base string, client *http.Client, stdout io.Writer) error {
	var v ValuesAnswer
	if _, err := getJSON(ctx, client, base, "/api/v1/top", o.topQuery(), &v); err != nil {
		return err
	}
	width, _ := terminalWidth(stdout)
	return RenderValues(stdout, v, width)
}

// className is how a class reads in a sentence: "requests", "4xx".
func className(class string) string {
	if class == "" {
		return "requests"
	}
	return class
}

// byClass is the header's " by 4xx" for a ranking other than requests.
func byClass(class string) string {
	if class == "" || class == "requests" {
		return ""
	}
	return " by " + class
}

// RenderValues writes the table of a field's top values: a header with the
// field, the class and the range, one row per value with its rank, text,
// ranked count and class counters, then the exact remainder of the field
// (other) and its total. width is as for RenderTop: with a terminal the
// value column is cut (with "…") so that rows fit, and every line is cut
// to width; width <= 0 cuts nothing. One Write, like RenderTop.
func RenderValues(w io.Writer, v ValuesAnswer, width int) error {
	count := formatCount
	if v.Class == "bytes" {
		count = formatBytes
	}
	field := v.By
	if field == "" {
		field = "value"
	}
	lines := []string{fmt.Sprintf("top %d %s values%s · %s", len(v.Items), field, byClass(v.Class), formatRange(v.From, v.To)), ""}
	if len(v.Items) == 0 {
		lines = append(lines, "no "+className(v.Class)+" in this range")
	} else {
		header := []string{"#", strings.ToUpper(field), "COUNT", "REQUESTS", "4XX", "5XX", "AUTH", "BYTES"}
		rows := make([][]string, len(v.Items))
		for i, it := range v.Items {
			value := it.Value
			if !it.Known {
				value += " (text unknown)"
			}
			rows[i] = []string{strconv.Itoa(i + 1), value, count(it.Count), formatCount(it.Requests), formatCount(it.Status4xx),
				formatCount(it.Status5xx), formatCount(it.AuthFailures), formatBytes(it.Bytes)}
		}
		widths := make([]int, len(header))
		for c, h := range header {
			widths[c] = displayWidth(h)
			for _, r := range rows {
				widths[c] = max(widths[c], displayWidth(r[c]))
			}
		}
		const gap = "  "
		if width > 0 {
			// The value column takes what the others leave, at least 8.
			rest := 0
			for c, cw := range widths {
				if c != 1 {
					rest += cw + len(gap)
				}
			}
			widths[1] = max(min(widths[1], width-rest), 8)
		}
		format := func(cells []string) string {
			var b strings.Builder
			for c, cell := range cells {
				if c > 0 {
					b.WriteString(gap)
				}
				if c == 1 {
					cell = truncate(cell, widths[1])
					b.WriteString(cell + strings.Repeat(" ", widths[1]-displayWidth(cell)))
				} else {
					b.WriteString(strings.Repeat(" ", widths[c]-displayWidth(cell)) + cell)
				}
			}
			return strings.TrimRight(b.String(), " ")
		}
		lines = append(lines, format(header))
		for _, r := range rows {
			lines = append(lines, format(r))
		}
		lines = append(lines, "")
	}
	lines = append(lines,
		fmt.Sprintf("other  %s %s in the values not listed", count(v.Other), className(v.Class)),
		fmt.Sprintf("total  requests %s · 4xx %s · 5xx %s · auth failures %s · bytes %s",
			formatCount(v.Total.Requests), formatCount(v.Total.Status4xx), formatCount(v.Total.Status5xx),
			formatCount(v.Total.AuthFailures), formatBytes(v.Total.Bytes)))
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

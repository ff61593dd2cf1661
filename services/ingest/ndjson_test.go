package ingest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
)

// Access log lines as nginx writes them, the payload of the shippers below.
var shipperLines = []string{
	`203.0.113.10 - - [24/Nov/2026:09:00:01 +0000] "GET / HTTP/1.1" 200 612 "-" "curl/8.5.0"`,
	`203.0.113.11 - - [24/Nov/2026:09:00:02 +0000] "GET /login HTTP/1.1" 401 17 "-" "Mozilla/5.0 \"quoted\""`,
}

// Payloads as the shippers send them (shapes from their documentation and
// source: Fluent Bit's out_http with format json_lines / json /
// json_stream and the default json_date_key "date" as a double; Vector's
// http sink with encoding.codec = "json", with framing.method =
// "newline_delimited" (records joined by "\n", no final newline) and with
// its default framing (a JSON array)).
func fluentBitJSONLines() string {
	var b strings.Builder
	for i, l := range shipperLines {
		q, _ := json.Marshal(l)
		b.WriteString(`{"date":17639856` + string(rune('0'+i)) + `1.123456,"log":` + string(q) + "}\n")
	}
	return b.String()
}

func vectorRecord(l string) string {
	q, _ := json.Marshal(l)
	return `{"file":"/var/log/nginx/access.log","host":"web-1","message":` + string(q) + `,"source_type":"file","timestamp":"2026-11-24T09:00:03.123456789Z"}`
}

func vectorNDJSON() string {
	var recs []string
	for _, l := range shipperLines {
		recs = append(recs, vectorRecord(l))
	}
	return strings.Join(recs, "\n")
}

func vectorArray() string {
	var recs []string
	for _, l := range shipperLines {
		recs = append(recs, vectorRecord(l))
	}
	return "[" + strings.Join(recs, ",") + "]"
}

func postCT(t *testing.T, url, ct, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", ct)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func TestIngestJSONBodies(t *testing.T) {
	e := newEnv(t, nil)
	ts := httptest.NewServer(e.mux)
	defer ts.Close()
	url := ts.URL + "/api/v1/ingest"
	sorted := func(ls []string) string {
		ls = append([]string(nil), ls...)
		sort.Strings(ls)
		return strings.Join(ls, "\n")
	}
	want := sorted(shipperLines)

	for _, c := range []struct{ name, ct, body string }{
		{"fluent bit json_lines", "application/x-ndjson", fluentBitJSONLines()},
		{"fluent bit json", "application/json", "[" + strings.ReplaceAll(strings.TrimSpace(fluentBitJSONLines()), "\n", ",") + "]"},
		{"fluent bit json_stream", "application/json", strings.ReplaceAll(fluentBitJSONLines(), "\n", "")},
		{"vector ndjson", "application/x-ndjson", vectorNDJSON()},
		{"vector json array", "application/json; charset=utf-8", vectorArray()},
		{"pretty array", "application/json", "[\n  " + strings.ReplaceAll(vectorArray()[1:len(vectorArray())-1], `,"`, ",\n    \"") + "\n]"},
	} {
		before := len(e.fetch(t))
		code, out := postCT(t, url, c.ct, c.body)
		if code != http.StatusOK || out["accepted"] != 2.0 || out["objects"] != 2.0 || out["without_message"] != nil {
			t.Fatalf("%s: %d %v", c.name, code, out)
		}
		msgs := e.fetch(t)[before:]
		if got := sorted(linesOf(msgs, SourceHTTP)); got != want {
			t.Fatalf("%s: lines\n%s\nwant\n%s", c.name, got, want)
		}
	}

	// Objects without the field are forwarded whole (compact), counted;
	// lines that are not objects pass as they are; other kinds of values.
	before := len(e.fetch(t))
	body := `{"remote":"198.51.100.4","code":"200"}` + "\n" +
		"plain 198.51.100.5 text\n" +
		`{"log": "broken` + "\n" +
		"\n" +
		`{"message":{"client_ip":"198.51.100.6"}}` + "\n" +
		`{"message":42}` + "\n" +
		`{"message":null,"log":"from log"}` + "\n"
	code, out := postCT(t, url, "application/x-ndjson", body)
	if code != http.StatusOK || out["accepted"] != 7.0 || out["objects"] != 4.0 || out["without_message"] != 1.0 {
		t.Fatalf("mixed: %d %v", code, out)
	}
	got := strings.Join(linesOf(e.fetch(t)[before:], SourceHTTP), "|")
	if got != `{"remote":"198.51.100.4","code":"200"}|plain 198.51.100.5 text|{"log": "broken||{"client_ip":"198.51.100.6"}|42|from log` {
		t.Fatalf("mixed lines: %s", got)
	}

	// ?message_field= and dotted paths.
	before = len(e.fetch(t))
	code, out = postCT(t, url+"?message_field=event.original,msg", "application/json",
		`[{"event":{"original":"198.51.100.7 nested"}},{"event.original":"198.51.100.8 flat"},{"msg":"198.51.100.9 third"}]`)
	if code != http.StatusOK || out["accepted"] != 3.0 {
		t.Fatalf("message_field: %d %v", code, out)
	}
	if got := strings.Join(linesOf(e.fetch(t)[before:], SourceHTTP), "|"); got != "198.51.100.7 nested|198.51.100.8 flat|198.51.100.9 third" {
		t.Fatalf("message_field lines: %s", got)
	}

	// Client errors store nothing.
	before = len(e.fetch(t))
	for _, c := range []struct{ name, url, ct, body string }{
		{"bad field", url + "?message_field=a*b", "application/x-ndjson", `{"a":"b"}`},
		{"bad json", url, "application/json", `[{"message":"x"},`},
		{"json then garbage", url, "application/json", `{"message":"x"} nope`},
	} {
		if code, out := postCT(t, c.url, c.ct, c.body); code != http.StatusBadRequest {
			t.Fatalf("%s: %d %v", c.name, code, out)
		}
	}
	if n := len(e.fetch(t)); n != before {
		t.Fatalf("client errors stored %d batches", n-before)
	}

	// Plain bodies are untouched by the JSON handling, whatever they hold.
	before = len(e.fetch(t))
	code, out = postCT(t, url, "application/x-www-form-urlencoded", `{"message":"kept whole"}`)
	if code != http.StatusOK || out["objects"] != nil {
		t.Fatalf("plain: %d %v", code, out)
	}
	if got := strings.Join(linesOf(e.fetch(t)[before:], SourceHTTP), "|"); got != `{"message":"kept whole"}` {
		t.Fatalf("plain body: %s", got)
	}
}

func TestMessageFieldFlag(t *testing.T) {
	c := testConfig()
	c.HTTPMessageField = " , "
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "message-field") {
		t.Fatalf("empty message field list: %v", err)
	}
	if f, err := parseMessageFields("message, log,a.b"); err != nil || strings.Join(f, "|") != "message|log|a.b" {
		t.Fatalf("%v %v", f, err)
	}
}

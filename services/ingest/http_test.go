package ingest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func post(t testing.TB, url string, body []byte, encoding string) (int, http.Header, map[string]any) {
	t.Helper()
	h := http.Header{}
	if encoding != "" {
		h.Set("Content-Encoding", encoding)
	}
	return postHeader(t, url, body, h)
}

// postKey posts body with an Idempotency-Key ("" sends none).
func postKey(t testing.TB, url string, body []byte, key string) (int, map[string]any) {
	t.Helper()
	h := http.Header{}
	if key != "" {
		h.Set(IdempotencyKeyHeader, key)
	}
	code, _, out := postHeader(t, url, body, h)
	return code, out
}

func postHeader(t testing.TB, url string, body []byte, h http.Header) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("status %d: answer is not JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, out
}

func gz(t testing.TB, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestHTTPIngest(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.HTTPMaxBodyBytes = 256 << 10
		c.MaxLineBytes = 100
		c.BatchMaxBytes = 4096
	})
	ts := httptest.NewServer(e.mux)
	defer ts.Close()
	url := ts.URL + "/api/v1/ingest"

	var body bytes.Buffer
	for i := range 1000 {
		fmt.Fprintf(&body, "198.51.100.%d plain line %d\r\n", i%200, i)
	}
	body.WriteString("\n" + strings.Repeat("O", 150) + "\nlast")
	code, _, out := post(t, url, body.Bytes(), "")
	// accepted counts the empty line too: accepted + oversized = lines.
	if code != http.StatusOK || out["accepted"] != 1002.0 || out["oversized"] != 1.0 || out["duplicate_batches"] != 0.0 {
		t.Fatalf("plain: %d %v", code, out)
	}
	// The answer comes after the acks: the lines are in the stream now.
	msgs := e.fetch(t)
	if l, o := entries(msgs, SourceHTTP); l != 1002 || o != 1 {
		t.Fatalf("stream has %d lines and %d oversized right after the answer, want 1002 and 1", l, o)
	}
	if out["batches"] != float64(len(msgs)) {
		t.Errorf("answer says %v batches, stream has %d messages", out["batches"], len(msgs))
	}
	if len(msgs) < 2 {
		t.Errorf("%d messages: a 30 KB body should span several 4 KiB batches", len(msgs))
	}
	// Batches of one body are published concurrently: their order in the
	// stream is not the body's order, the order inside a batch is.
	got := map[string]int{}
	for _, l := range linesOf(msgs, SourceHTTP) {
		got[l]++
	}
	for i := range 1000 {
		if l := fmt.Sprintf("198.51.100.%d plain line %d", i%200, i); got[l] != 1 {
			t.Fatalf("line %q stored %d times", l, got[l])
		}
	}
	if got["last"] != 1 {
		t.Errorf("unterminated last line stored %d times", got["last"])
	}
	if got[""] != 1 {
		t.Errorf("empty line stored %d times, want 1 (as an empty entry)", got[""])
	}
	for _, m := range msgs {
		if m.subject != "logs.raw.http" || m.batch.Format != "" || m.batch.Peer == "" || !hasPrefix(m.msgID, testInstance+"-http-") {
			t.Errorf("plain batch: subject %s format %q peer %q id %q", m.subject, m.batch.Format, m.batch.Peer, m.msgID)
		}
	}

	// gzip with a source label and a format.
	gzBody := gz(t, []byte("{\"ip\":\"192.0.2.1\"}\n{\"ip\":\"192.0.2.2\"}\n"))
	code, _, out = post(t, url+"?source=My%20App&format=json", gzBody, "gzip")
	if code != http.StatusOK || out["accepted"] != 2.0 || out["oversized"] != 0.0 {
		t.Fatalf("gzip: %d %v", code, out)
	}
	msgs = e.fetch(t)
	if got := strings.Join(linesOf(msgs, "my_app"), "|"); got != `{"ip":"192.0.2.1"}|{"ip":"192.0.2.2"}` {
		t.Errorf("gzip lines %q", got)
	}
	for _, m := range msgs {
		if m.batch.Source == "my_app" && (m.subject != "logs.raw.my_app" || m.batch.Format != "json") {
			t.Errorf("gzip batch: subject %s format %q", m.subject, m.batch.Format)
		}
	}
	stored := len(msgs)

	// Client errors: JSON errors, never 500, nothing stored.
	big := bytes.Repeat([]byte("0123456789abcde\n"), 20<<10) // 320 KiB
	for _, tc := range []struct {
		name, query, enc string
		body             []byte
		want             int
	}{
		{"bad gzip", "", "gzip", []byte("this is not gzip"), http.StatusBadRequest},
		{"truncated gzip", "", "gzip", gz(t, big)[:500], http.StatusBadRequest},
		{"too large", "", "", big, http.StatusRequestEntityTooLarge},
		{"too large after gunzip", "", "gzip", gz(t, big), http.StatusRequestEntityTooLarge},
		{"unknown encoding", "", "br", []byte("x\n"), http.StatusUnsupportedMediaType},
		{"bad format", "?format=Bad%20Format", "", []byte("x\n"), http.StatusBadRequest},
	} {
		code, _, out := post(t, url+tc.query, tc.body, tc.enc)
		if code != tc.want || out["error"] == nil {
			t.Errorf("%s: %d %v, want %d with an error", tc.name, code, out, tc.want)
		}
	}
	if n := len(e.fetch(t)); n != stored {
		t.Errorf("failed requests stored %d messages", n-stored)
	}
	if v := counterValue(e.svc.m.lines.WithLabelValues(SourceHTTP)); v != 1004 {
		t.Errorf("http lines_total %v, want 1004", v)
	}
	if v := counterValue(e.svc.m.empty.WithLabelValues(SourceHTTP)); v != 1 {
		t.Errorf("http empty_lines_total %v, want 1", v)
	}
}

// TestHTTPEmptyLines: empty lines are forwarded as empty entries; a single
// final newline adds none.
func TestHTTPEmptyLines(t *testing.T) {
	e := newEnv(t, nil)
	ts := httptest.NewServer(e.mux)
	defer ts.Close()
	for i, tc := range []struct {
		body string
		want []string
	}{
		{"a\nb\n", []string{"a", "b"}},
		{"a\n\nb\n", []string{"a", "", "b"}},
		{"a\r\n", []string{"a"}},
		{"\n", []string{""}},
		{"a\n\n", []string{"a", ""}},
		{"", nil},
	} {
		source := fmt.Sprintf("empty%d", i)
		code, _, out := post(t, ts.URL+"/api/v1/ingest?source="+source, []byte(tc.body), "")
		if code != http.StatusOK || out["accepted"] != float64(len(tc.want)) {
			t.Errorf("%q: %d %v, want accepted %d", tc.body, code, out, len(tc.want))
			continue
		}
		if got := linesOf(e.fetch(t), source); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
			t.Errorf("%q: stored %q, want %q", tc.body, got, tc.want)
		}
	}
}

// TestHTTPIdempotencyKey: the same body sent twice with the same key is
// stored once (JetStream drops the second copy of each batch within its
// duplicate window) and the second answer reports every batch as a
// duplicate; with different keys or without a key it is stored twice.
func TestHTTPIdempotencyKey(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BatchMaxBytes = 4096; c.MaxLineBytes = 100 })
	ts := httptest.NewServer(e.mux)
	defer ts.Close()
	var body bytes.Buffer
	for i := range 500 {
		fmt.Fprintf(&body, "192.0.2.%d idempotent line %d\n", i%250, i)
		if i%100 == 0 {
			body.WriteString("\n" + strings.Repeat("O", 150) + "\n") // an empty and an oversized line
		}
	}
	const wantLines, wantOver = 505, 5
	url := func(source string) string { return ts.URL + "/api/v1/ingest?source=" + source }

	for _, tc := range []struct {
		source     string
		key1, key2 string
		times      int
	}{
		{"samekey", "replay-0123abcd-7", "replay-0123abcd-7", 1},
		{"diffkeys", "k.1:a_b-C", "k.2:a_b-C", 2},
		{"nokey", "", "", 2},
	} {
		code, first := postKey(t, url(tc.source), body.Bytes(), tc.key1)
		if code != http.StatusOK || first["accepted"] != float64(wantLines) || first["oversized"] != float64(wantOver) || first["duplicate_batches"] != 0.0 {
			t.Fatalf("%s: first answer %d %v", tc.source, code, first)
		}
		batches := first["batches"].(float64)
		if batches < 3 {
			t.Fatalf("%s: %v batches, want a body spanning several", tc.source, batches)
		}
		code, second := postKey(t, url(tc.source), body.Bytes(), tc.key2)
		// accepted stays the number of lines, duplicates or not.
		if code != http.StatusOK || second["accepted"] != float64(wantLines) || second["oversized"] != float64(wantOver) || second["batches"] != batches {
			t.Fatalf("%s: second answer %d %v", tc.source, code, second)
		}
		wantDup := 0.0
		if tc.times == 1 {
			wantDup = batches
		}
		if second["duplicate_batches"] != wantDup {
			t.Errorf("%s: second answer reports %v duplicate batches, want %v", tc.source, second["duplicate_batches"], wantDup)
		}
		msgs := e.fetch(t)
		if l, o := entries(msgs, tc.source); l != tc.times*wantLines || o != tc.times*wantOver {
			t.Errorf("%s: stream holds %d lines and %d oversized, want %d and %d", tc.source, l, o, tc.times*wantLines, tc.times*wantOver)
		}
		for _, m := range msgs {
			if m.batch.Source == tc.source && tc.key1 != "" && !hasPrefix(m.msgID, "http-"+tc.key1+"-") && !hasPrefix(m.msgID, "http-"+tc.key2+"-") {
				t.Errorf("%s: Nats-Msg-Id %q", tc.source, m.msgID)
			}
		}
	}
	if v := counterValue(e.svc.m.duplicates); v < 3 {
		t.Errorf("duplicates_total %v, want at least 3", v)
	}

	// Bad keys: 400, nothing stored.
	stored := len(e.fetch(t))
	for _, key := range []string{strings.Repeat("k", 129), "has space", "slash/key", "ümlaut", "semi;colon"} {
		if code, out := postKey(t, url("badkey"), []byte("x\n"), key); code != http.StatusBadRequest || out["error"] == nil {
			t.Errorf("key %q: %d %v, want 400", key, code, out)
		}
	}
	h := http.Header{}
	h[IdempotencyKeyHeader] = []string{""}
	if code, _, out := postHeader(t, url("badkey"), []byte("x\n"), h); code != http.StatusBadRequest {
		t.Errorf("empty key: %d %v, want 400", code, out)
	}
	h[IdempotencyKeyHeader] = []string{"a", "b"}
	if code, _, out := postHeader(t, url("badkey"), []byte("x\n"), h); code != http.StatusBadRequest {
		t.Errorf("two keys: %d %v, want 400", code, out)
	}
	if n := len(e.fetch(t)); n != stored {
		t.Errorf("requests with bad keys stored %d messages", n-stored)
	}
	if code, out := postKey(t, url("longkey"), []byte("x\n"), strings.Repeat("k", 128)); code != http.StatusOK || out["accepted"] != 1.0 {
		t.Errorf("128-character key: %d %v", code, out)
	}
}

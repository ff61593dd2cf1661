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
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
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
	if code != http.StatusOK || out["accepted"] != 1001.0 || out["oversized"] != 1.0 {
		t.Fatalf("plain: %d %v", code, out)
	}
	// The answer comes after the acks: the lines are in the stream now.
	msgs := e.fetch(t)
	if l, o := entries(msgs, SourceHTTP); l != 1001 || o != 1 {
		t.Fatalf("stream has %d lines and %d oversized right after the answer, want 1001 and 1", l, o)
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
	if v := counterValue(e.svc.m.lines.WithLabelValues(SourceHTTP)); v != 1003 {
		t.Errorf("http lines_total %v, want 1003", v)
	}
}

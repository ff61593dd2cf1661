package ingest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHTTPMaxConcurrent: with -ingest.http.max-concurrent=1, a second
// request while one is being read gets 429 with Retry-After; once the first
// is answered the next is served.
func TestHTTPMaxConcurrent(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.HTTPMaxConcurrent = 1 })
	ts := httptest.NewServer(e.mux)
	defer ts.Close()
	const line = "203.0.113.5 - - [24/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n"

	pr, pw := io.Pipe()
	first := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Post(ts.URL+"/api/v1/ingest?source=slow", "text/plain", pr)
		if err != nil {
			t.Error(err)
			first <- nil
			return
		}
		first <- resp
	}()
	if _, err := pw.Write([]byte(line)); err != nil { // the handler is reading now
		t.Fatal(err)
	}
	var second *http.Response
	poll(t, 10*time.Second, "a 429 for the second request", func() bool {
		resp, err := http.Post(ts.URL+"/api/v1/ingest?source=second", "text/plain", strings.NewReader(line))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		second = resp
		return resp.StatusCode == http.StatusTooManyRequests
	})
	if second.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	pw.Close()
	resp := <-first
	if resp == nil {
		t.FailNow()
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	resp, err := http.Post(ts.URL+"/api/v1/ingest?source=third", "text/plain", strings.NewReader(line))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after the first finished: %d", resp.StatusCode)
	}
}

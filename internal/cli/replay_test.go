package cli

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeIngest behaves like POST /api/v1/ingest: it decompresses each body,
// counts its lines independently of the client and remembers every line.
type fakeIngest struct {
	t *testing.T

	// busyFirst answers the first busyFirst requests with 503 and
	// Retry-After: retryAfter, without storing anything.
	busyFirst  int
	retryAfter string
	// dropFirst closes the connection of the first dropFirst requests
	// without an answer.
	dropFirst int
	// rejectLine answers 400 to a chunk holding a line containing it.
	rejectLine string
	// oversize counts lines longer than it as oversized (0: none).
	oversize int
	// shortchange answers one line fewer than received.
	shortchange bool

	mu        sync.Mutex
	requests  int
	lines     map[string]int // line → times received
	total     int
	inFlight  int
	maxFlight int
	sources   map[string]bool
	formats   map[string]bool
	keys      map[string]bool
}

func newFakeIngest(t *testing.T) *fakeIngest {
	return &fakeIngest{t: t, lines: map[string]int{}, sources: map[string]bool{}, formats: map[string]bool{}, keys: map[string]bool{}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (f *fakeIngest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/ingest" {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
		return
	}
	f.mu.Lock()
	f.requests++
	n := f.requests
	f.inFlight++
	f.maxFlight = max(f.maxFlight, f.inFlight)
	f.sources[r.URL.Query().Get("source")] = true
	f.formats[r.URL.Query().Get("format")] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()

	raw, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if n <= f.dropFirst {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	if n <= f.dropFirst+f.busyFirst {
		w.Header().Set("Retry-After", f.retryAfter)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "ingest backlog full"})
		return
	}
	body := raw
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad gzip: " + err.Error()})
			return
		}
	} else {
		f.t.Errorf("request without Content-Encoding: gzip")
	}
	if len(body) == 0 || body[len(body)-1] != '\n' {
		f.t.Errorf("chunk does not end with a newline: %q", body[max(0, len(body)-20):])
	}
	text := strings.TrimSuffix(string(body), "\n")
	lines := strings.Split(text, "\n")
	if f.rejectLine != "" && strings.Contains(text, f.rejectLine) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unparseable line: " + f.rejectLine})
		return
	}
	accepted, oversized := 0, 0
	f.mu.Lock()
	f.keys[r.Header.Get("Idempotency-Key")] = true
	for _, l := range lines {
		f.lines[l]++
		f.total++
		if f.oversize > 0 && len(l) > f.oversize {
			oversized++
		} else {
			accepted++
		}
	}
	f.mu.Unlock()
	if f.shortchange {
		accepted--
	}
	writeJSON(w, http.StatusOK, map[string]int{"accepted": accepted, "oversized": oversized})
}

// checkExactlyOnce fails unless the server received exactly want, each once.
func (f *fakeIngest) checkExactlyOnce(t *testing.T, want []string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.total != len(want) {
		t.Errorf("server received %d lines, want %d", f.total, len(want))
	}
	seen := map[string]bool{}
	for _, l := range want {
		if seen[l] {
			t.Fatalf("test bug: duplicate line %q", l)
		}
		seen[l] = true
		if c := f.lines[l]; c != 1 {
			t.Errorf("line %q received %d times", l, c)
			return
		}
	}
	for l := range f.lines {
		if !seen[l] {
			t.Errorf("server received unexpected line %q", l)
			return
		}
	}
}

// genLog writes n log lines, some ending in CRLF, a blank line in the middle
// and the last without a newline, and returns the content and the lines the
// server should receive (without line ends; blank lines are not sent).
func genLog(prefix string, n int) (content []byte, lines []string) {
	var b bytes.Buffer
	for i := 1; i <= n; i++ {
		l := fmt.Sprintf(`10.%d.%d.%d - - [01/May/2024:12:00:%02d +0000] "GET /%s/item/%d HTTP/1.1" 200 %d`,
			i%256, (i/256)%256, i%7, i%60, prefix, i, 100+i%900)
		lines = append(lines, l)
		b.WriteString(l)
		switch {
		case i == n:
			// no newline at the end
		case i%5 == 0:
			b.WriteString("\r\n")
		default:
			b.WriteString("\n")
		}
		if i == n/2 {
			b.WriteString("\n") // a blank line
		}
	}
	return b.Bytes(), lines
}

func gzipped(t *testing.T, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(p)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeFile(t *testing.T, dir, name string, p []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, p, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// summaryValue returns the value of a summary row such as "lines sent".
func summaryValue(t *testing.T, summary, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(key) + ` +(.*)$`).FindStringSubmatch(summary)
	if m == nil {
		t.Fatalf("summary has no %q row:\n%s", key, summary)
	}
	return m[1]
}

func summaryInt(t *testing.T, summary, key string) int {
	t.Helper()
	v, err := strconv.Atoi(strings.ReplaceAll(summaryValue(t, summary, key), ",", ""))
	if err != nil {
		t.Fatalf("summary row %q: %v", key, err)
	}
	return v
}

func TestReplayPlainAndGzipFiles(t *testing.T) {
	dir := t.TempDir()
	plain, plainLines := genLog("plain", 3000)
	gz, gzLines := genLog("gz", 2500)
	multi1, m1 := genLog("multi1", 700)
	multi2, m2 := genLog("multi2", 300)
	files := []string{
		writeFile(t, dir, "access.log", plain),
		// gzip detected by content, not by the name
		writeFile(t, dir, "access.log.1", gzipped(t, gz)),
		// concatenated gzip members (as `cat a.gz b.gz` makes)
		writeFile(t, dir, "multi.gz", append(gzipped(t, append(multi1, '\n')), gzipped(t, multi2)...)),
	}
	want := append(append(append(plainLines, gzLines...), m1...), m2...)

	f := newFakeIngest(t)
	srv := httptest.NewServer(f)
	defer srv.Close()

	var out, errOut bytes.Buffer
	args := append([]string{"--addr", srv.URL, "--chunk-bytes", "8KiB", "--format", "combined"}, files...)
	if err := Replay(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("Replay: %v\nstderr: %s", err, errOut.String())
	}
	t.Logf("summary:\n%s", out.String())
	f.checkExactlyOnce(t, want)

	s := out.String()
	if !strings.HasPrefix(s, "replay finished\n") {
		t.Errorf("summary does not start with its title")
	}
	if got := summaryValue(t, s, "files"); got != "3 of 3" {
		t.Errorf("files = %q", got)
	}
	if got := summaryInt(t, s, "lines sent"); got != len(want) {
		t.Errorf("lines sent = %d, want %d", got, len(want))
	}
	if got := summaryInt(t, s, "lines accepted"); got != len(want) {
		t.Errorf("lines accepted = %d, want %d", got, len(want))
	}
	if got := summaryInt(t, s, "retries"); got != 0 {
		t.Errorf("retries = %d", got)
	}
	if got := summaryInt(t, s, "blank skipped"); got != 4 {
		t.Errorf("blank skipped = %d, want 4 (one per generated file)", got)
	}
	for _, k := range []string{"oversized", "bytes", "duration", "lines/s", "chunks"} {
		summaryValue(t, s, k)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.requests < 20 {
		t.Errorf("only %d requests for ~500 KiB in 8 KiB chunks", f.requests)
	}
	if f.maxFlight < 2 || f.maxFlight > 4 {
		t.Logf("max requests in flight = %d (want 2..4, timing dependent)", f.maxFlight)
	}
	if f.maxFlight > 4 {
		t.Errorf("max requests in flight = %d, want at most 4", f.maxFlight)
	}
	if !f.sources["replay"] || len(f.sources) != 1 || !f.formats["combined"] || len(f.formats) != 1 {
		t.Errorf("sources %v formats %v", f.sources, f.formats)
	}
	if len(f.keys) != f.requests {
		t.Errorf("%d distinct Idempotency-Keys for %d requests", len(f.keys), f.requests)
	}
}

func TestReplayChunksAreWholeLinesNearChunkBytes(t *testing.T) {
	dir := t.TempDir()
	content, lines := genLog("c", 2000)
	// One line much longer than a chunk goes alone in its chunk.
	long := strings.Repeat("x", 20000)
	content = append(append(content, '\n'), long...)
	lines = append(lines, long)
	file := writeFile(t, dir, "c.log", content)

	var mu sync.Mutex
	var sizes []int
	f := newFakeIngest(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			t.Error(err)
			return
		}
		body, _ := io.ReadAll(zr)
		mu.Lock()
		sizes = append(sizes, len(body))
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(gzipped(t, body)))
		f.ServeHTTP(w, r)
	}))
	defer srv.Close()
	if err := Replay(context.Background(), []string{"--addr", srv.URL, "--chunk-bytes", "4096", file}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	f.checkExactlyOnce(t, lines)
	sort.Ints(sizes)
	big := 0
	for _, s := range sizes {
		if s > 4096 {
			big++
			if s != len(long)+1 {
				t.Errorf("chunk of %d bytes exceeds --chunk-bytes and is not the single long line", s)
			}
		}
	}
	if big != 1 {
		t.Errorf("%d chunks over --chunk-bytes, want 1 (the long line)", big)
	}
	if sizes[len(sizes)/2] < 3500 {
		t.Errorf("median chunk %d bytes, want close to 4096", sizes[len(sizes)/2])
	}
}

func TestReplayRetriesBusyServer(t *testing.T) {
	dir := t.TempDir()
	content, lines := genLog("busy", 4000)
	file := writeFile(t, dir, "busy.log.gz", gzipped(t, content))

	f := newFakeIngest(t)
	f.busyFirst = 5
	f.retryAfter = "1"
	f.dropFirst = 2 // and the two before them lose their connection
	srv := httptest.NewServer(f)
	defer srv.Close()

	old := retryBaseDelay
	retryBaseDelay = 10 * time.Millisecond
	defer func() { retryBaseDelay = old }()

	var out, errOut bytes.Buffer
	start := time.Now()
	err := Replay(context.Background(), []string{"--addr", srv.URL, "--chunk-bytes", "16KiB", file}, &out, &errOut)
	if err != nil {
		t.Fatalf("Replay: %v\nstderr: %s", err, errOut.String())
	}
	elapsed := time.Since(start)
	t.Logf("summary:\n%s\nstderr:\n%s", out.String(), errOut.String())
	f.checkExactlyOnce(t, lines)
	if got := summaryInt(t, out.String(), "retries"); got < 7 {
		t.Errorf("retries = %d, want at least 7 (2 dropped + 5 busy)", got)
	}
	if got := summaryInt(t, out.String(), "lines accepted"); got != len(lines) {
		t.Errorf("lines accepted = %d, want %d", got, len(lines))
	}
	if elapsed < 900*time.Millisecond {
		t.Errorf("replay took %v: Retry-After: 1 was not honoured", elapsed)
	}
	if !strings.Contains(errOut.String(), "ingest backlog full") && !strings.Contains(errOut.String(), "EOF") {
		t.Errorf("stderr does not mention the retried failure: %q", errOut.String())
	}
}

func TestReplayStdin(t *testing.T) {
	content, lines := genLog("stdin", 1500)
	for _, tc := range []struct {
		name string
		in   []byte
	}{{"plain", content}, {"gzip", gzipped(t, content)}} {
		t.Run(tc.name, func(t *testing.T) {
			old := stdin
			stdin = bytes.NewReader(tc.in)
			defer func() { stdin = old }()

			f := newFakeIngest(t)
			srv := httptest.NewServer(f)
			defer srv.Close()
			var out bytes.Buffer
			if err := Replay(context.Background(), []string{"--addr", srv.URL, "--source", "backfill", "-"}, &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			f.checkExactlyOnce(t, lines)
			if summaryInt(t, out.String(), "lines sent") != len(lines) {
				t.Errorf("summary:\n%s", out.String())
			}
			if !f.sources["backfill"] {
				t.Errorf("sources = %v", f.sources)
			}
		})
	}
}

func TestReplayRejectedChunkIsHardError(t *testing.T) {
	dir := t.TempDir()
	content, lines := genLog("bad", 3000)
	file := writeFile(t, dir, "bad.log", content)
	f := newFakeIngest(t)
	f.rejectLine = lines[1999] // line 2000 of the file
	srv := httptest.NewServer(f)
	defer srv.Close()

	var out bytes.Buffer
	err := Replay(context.Background(), []string{"--addr", srv.URL, "--chunk-bytes", "8KiB", file}, &out, io.Discard)
	if err == nil {
		t.Fatal("no error for a 400 answer")
	}
	t.Logf("error: %v", err)
	m := regexp.MustCompile(`bad\.log lines (\d+)-(\d+) rejected: POST /api/v1/ingest: server answered 400 Bad Request: unparseable line`).FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("error %q does not name the file, line range and server message", err)
	}
	// The range covers line 2000 (one blank line precedes it at 1501).
	first, _ := strconv.Atoi(m[1])
	last, _ := strconv.Atoi(m[2])
	if first > 2001 || last < 2001 {
		t.Errorf("line range %d-%d does not contain line 2001", first, last)
	}
	if !strings.HasPrefix(out.String(), "replay stopped\n") {
		t.Errorf("summary:\n%s", out.String())
	}
}

func TestReplayTooLarge(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "x.log", []byte("a\nb\n"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "body over 1 MiB"})
	}))
	defer srv.Close()
	err := Replay(context.Background(), []string{"--addr", srv.URL, file}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "x.log lines 1-2") || !strings.Contains(err.Error(), "body over 1 MiB") ||
		!strings.Contains(err.Error(), "--chunk-bytes") {
		t.Errorf("err = %v", err)
	}
}

func TestReplayOversizedAndMismatch(t *testing.T) {
	dir := t.TempDir()
	content := []byte("short\n" + strings.Repeat("L", 300) + "\nshort too\n")
	file := writeFile(t, dir, "o.log", content)

	f := newFakeIngest(t)
	f.oversize = 100
	srv := httptest.NewServer(f)
	defer srv.Close()
	var out bytes.Buffer
	if err := Replay(context.Background(), []string{"--addr", srv.URL, file}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if summaryInt(t, out.String(), "oversized") != 1 || summaryInt(t, out.String(), "lines accepted") != 2 {
		t.Errorf("summary:\n%s", out.String())
	}

	f2 := newFakeIngest(t)
	f2.shortchange = true
	srv2 := httptest.NewServer(f2)
	defer srv2.Close()
	var errOut bytes.Buffer
	err := Replay(context.Background(), []string{"--addr", srv2.URL, file}, io.Discard, &errOut)
	if err == nil || !strings.Contains(err.Error(), "acknowledged 2 lines") {
		t.Errorf("err = %v, want an acknowledgement mismatch", err)
	}
	if !strings.Contains(errOut.String(), "o.log lines 1-3: server acknowledged 2 lines") {
		t.Errorf("stderr = %q", errOut.String())
	}
}

func TestReplayCancelWhileBusy(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "x.log", []byte("a\nb\n"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "busy"})
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Replay(ctx, []string{"--addr", srv.URL, file}, io.Discard, io.Discard)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancellation took %v", d)
	}
}

func TestReplayFlagsAndFiles(t *testing.T) {
	var usage strings.Builder
	if err := Replay(context.Background(), []string{"--help"}, io.Discard, &usage); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: err = %v", err)
	}
	if !strings.Contains(usage.String(), "-chunk-bytes") {
		t.Errorf("usage = %q", usage.String())
	}
	dir := t.TempDir()
	ok := writeFile(t, dir, "ok.log", []byte("a\n"))
	for _, args := range [][]string{
		{},
		{"--chunk-bytes", "0", ok},
		{"--chunk-bytes", "lots", ok},
		{"--parallel", "0", ok},
		{"-", "-"},
		{ok, filepath.Join(dir, "missing.log")},
		{dir},
	} {
		if err := Replay(context.Background(), append([]string{"--addr", "http://127.0.0.1:1"}, args...), io.Discard, io.Discard); err == nil {
			t.Errorf("args %v: no error", args)
		}
	}
}

func TestPlainProgressLine(t *testing.T) {
	dir := t.TempDir()
	content, lines := genLog("p", 2000)
	file := writeFile(t, dir, "p.log", content)
	f := newFakeIngest(t)
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		f.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(slow)
	defer srv.Close()
	old := plainProgressInterval
	plainProgressInterval = 50 * time.Millisecond
	defer func() { plainProgressInterval = old }()

	var errOut bytes.Buffer
	if err := Replay(context.Background(), []string{"--addr", srv.URL, "--chunk-bytes", "8KiB", "--parallel", "1", file}, io.Discard, &errOut); err != nil {
		t.Fatal(err)
	}
	f.checkExactlyOnce(t, lines)
	if !regexp.MustCompile(`replay: [\d.]+ KiB of [\d.]+ KiB \(\d+%\), [\d,]+ lines delivered, [\d,]+ lines/s, ETA \d+:\d\d, 0 retries`).MatchString(errOut.String()) {
		t.Errorf("no progress line on stderr: %q", errOut.String())
	}
}

func TestProgressBarFitsWidth(t *testing.T) {
	r := &replayer{total: 10 << 20}
	r.stats.bytesRead.Store(4 << 20)
	r.stats.ackLines.Store(123456)
	r.stats.retries.Store(2)
	for _, w := range []int{120, 80, 40, 10} {
		line := r.progressBar(3*time.Second, w)
		if n := displayWidth(line); n > w-1 {
			t.Errorf("width %d: bar of %d columns: %q", w, n, line)
		}
		if w >= 80 && (!strings.Contains(line, " 40% ") || !strings.Contains(line, "ETA 0:05") || !strings.Contains(line, "4.0 MiB/10.0 MiB")) {
			t.Errorf("width %d: %q", w, line)
		}
	}
	r.total = -1
	if line := r.progressBar(time.Second, 80); !strings.Contains(line, "123,456 lines") {
		t.Errorf("unknown total: %q", line)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1MiB": 1 << 20, "512KiB": 512 << 10, "64k": 64 << 10, "1MB": 1e6, "100": 100, "1.5m": 3 << 19, "2 GiB": 2 << 30} {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "1XB", "-1"} {
		if _, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q): no error", in)
		}
	}
	b := byteSize(1 << 20)
	if b.String() != "1MiB" {
		t.Errorf("String = %q", b.String())
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	if d, ok := parseRetryAfter("2", now); !ok || d != 2*time.Second {
		t.Errorf("seconds: %v %v", d, ok)
	}
	if d, ok := parseRetryAfter(now.Add(3*time.Second).Format(http.TimeFormat), now); !ok || d != 3*time.Second {
		t.Errorf("date: %v %v", d, ok)
	}
	if _, ok := parseRetryAfter("soon", now); ok {
		t.Errorf("garbage accepted")
	}
	if d, _ := parseRetryAfter("999999", now); d != retryAfterMax {
		t.Errorf("not capped: %v", d)
	}
}

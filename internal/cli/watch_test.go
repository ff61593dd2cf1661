package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// fakeSSE serves /api/v1/watch/top and /api/v1/watch/overview as real
// event streams: every value sent on a channel becomes one event.
type fakeSSE struct {
	top      chan string
	overview chan string
	// dropAfter > 0 ends a top stream after that many events.
	dropAfter int
	topConns  atomic.Int32
	status    int // non-zero: refuse every stream with it
	mu        sync.Mutex
	queries   map[string]string
}

func newFakeSSE() *fakeSSE {
	return &fakeSSE{top: make(chan string, 16), overview: make(chan string, 16), queries: map[string]string{}}
}

func (f *fakeSSE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.queries[r.URL.Path] = r.URL.RawQuery
	f.mu.Unlock()
	if f.status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.status)
		io.WriteString(w, `{"error":"last \"soon\" is not a duration such as 5m, 2h or 7d"}`)
		return
	}
	var ch chan string
	switch r.URL.Path {
	case "/api/v1/watch/top":
		f.topConns.Add(1)
		ch = f.top
	case "/api/v1/watch/overview":
		ch = f.overview
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "retry: 2000\n\n: hello\n\n")
	w.(http.Flusher).Flush()
	sent := 0
	for {
		select {
		case <-r.Context().Done():
			return
		case data := <-ch:
			sent++
			fmt.Fprintf(w, "id: %d\ndata: %s\n\n", sent, data)
			w.(http.Flusher).Flush()
			if f.dropAfter > 0 && ch == f.top && sent >= f.dropAfter {
				return
			}
		}
	}
}

func (f *fakeSSE) query(path string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries[path]
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

const topUpdate2 = `{"from":"2024-05-01T12:00:00Z","to":"2024-05-01T12:05:00Z","items":[` +
	`{"ip":"198.18.0.99","count":2000},{"ip":"203.0.113.7","count":1286}]}`

func TestWatchJSONPrintsOneObjectPerUpdate(t *testing.T) {
	f := newFakeSSE()
	srv := httptest.NewServer(f)
	defer srv.Close()
	f.top <- sampleTop
	f.top <- topUpdate2

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Top(ctx, []string{"--addr", srv.URL, "--last", "5m", "-n", "2", "--watch", "--json"}, &out, &errOut)
	}()
	waitFor(t, "two NDJSON lines", func() bool { return strings.Count(out.String(), "\n") >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v (stderr %s)", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", out.String())
	}
	for i, want := range []string{sampleTop, topUpdate2} {
		var got, exp TopAnswer
		if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
			t.Fatalf("line %d is not JSON: %q", i, lines[i])
		}
		json.Unmarshal([]byte(want), &exp)
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Errorf("line %d: %+v, want %+v", i, got, exp)
		}
	}
	if q := f.query("/api/v1/watch/top"); q != "last=5m&n=2" {
		t.Errorf("query %q", q)
	}
	if f.query("/api/v1/watch/overview") != "" {
		t.Error("--json should not open the overview stream")
	}
}

func TestWatchReconnectsAfterALostStream(t *testing.T) {
	old := watchReconnect
	watchReconnect.min, watchReconnect.max = 10*time.Millisecond, 50*time.Millisecond
	defer func() { watchReconnect = old }()

	f := newFakeSSE()
	f.dropAfter = 1
	srv := httptest.NewServer(f)
	defer srv.Close()
	f.top <- sampleTop

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Top(ctx, []string{"--addr", srv.URL, "--watch", "--json"}, &out, &errOut)
	}()
	waitFor(t, "first line", func() bool { return strings.Count(out.String(), "\n") == 1 })
	waitFor(t, "a reconnection", func() bool { return f.topConns.Load() >= 2 })
	f.top <- topUpdate2
	waitFor(t, "second line", func() bool { return strings.Count(out.String(), "\n") == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "stream ended; reconnecting") {
		t.Errorf("stderr %q", errOut.String())
	}
}

func TestWatchRefusedStreamIsAnError(t *testing.T) {
	f := newFakeSSE()
	f.status = http.StatusBadRequest
	srv := httptest.NewServer(f)
	defer srv.Close()
	for _, args := range [][]string{{"--watch", "--json"}, {"--watch"}} {
		var out, errOut syncBuffer
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := Top(ctx, append([]string{"--addr", srv.URL, "--last", "soon"}, args...), &out, &errOut)
		cancel()
		if err == nil || !strings.Contains(err.Error(), `last "soon" is not a duration`) || !strings.Contains(err.Error(), "400") {
			t.Errorf("%v: error %v", args, err)
		}
	}
}

var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

func TestWatchRedrawsTheTerminal(t *testing.T) {
	f := newFakeSSE()
	srv := httptest.NewServer(f)
	defer srv.Close()
	f.overview <- `{"totals":{"from":"2024-05-01T12:00:00Z","to":"2024-05-01T12:05:00Z","requests":98765,"distinct_ips":1234,"dead_letters":2,"late":17},"series":{},"last_minute":{}}`
	f.top <- sampleTop

	var out syncBuffer
	var mu sync.Mutex
	cols, rows := 72, 24
	resize := make(chan struct{}, 1)
	o, err := parseTopFlags([]string{"--addr", srv.URL, "--last", "5m", "--watch"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	wo := watchOutput{w: &out, tty: true, resize: resize, size: func() (int, int, bool) {
		mu.Lock()
		defer mu.Unlock()
		return cols, rows, true
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- watchTop(ctx, o, srv.URL, &http.Client{}, wo, io.Discard) }()

	frames := func() []string {
		parts := strings.Split(out.String(), ansiHome)
		return parts[1:]
	}
	waitFor(t, "a frame with rows and totals", func() bool {
		fr := frames()
		return len(fr) > 0 && strings.Contains(fr[len(fr)-1], "1,286") && strings.Contains(fr[len(fr)-1], "98,765")
	})
	f.top <- topUpdate2
	waitFor(t, "the pushed frame", func() bool {
		fr := frames()
		return strings.Contains(fr[len(fr)-1], "198.18.0.99") && strings.Contains(fr[len(fr)-1], "2,000")
	})

	// A smaller terminal: the next frame fits it.
	mu.Lock()
	cols, rows = 40, 6
	mu.Unlock()
	n := len(frames())
	resize <- struct{}{}
	waitFor(t, "a frame after the resize", func() bool { return len(frames()) > n })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.HasPrefix(s, ansiAltScreenOn+ansiHideCursor) || !strings.HasSuffix(s, ansiShowCursor+ansiAltScreenOff) {
		t.Errorf("screen not set up and restored: %q … %q", s[:min(20, len(s))], s[max(0, len(s)-20):])
	}
	fr := frames()
	for i, frame := range fr {
		if !strings.HasSuffix(strings.TrimSuffix(frame, ansiShowCursor+ansiAltScreenOff), ansiClearEOS) {
			t.Errorf("frame %d does not clear the rest of the screen: %q", i, frame)
		}
		if strings.Contains(frame, "\x1b[2J") {
			t.Errorf("frame %d clears the whole screen (flicker)", i)
		}
	}
	last := strings.TrimSuffix(fr[len(fr)-1], ansiShowCursor+ansiAltScreenOff)
	lines := strings.Split(last, "\r\n")
	if len(lines) > 6 {
		t.Errorf("frame after resize has %d lines for 6 rows: %q", len(lines), last)
	}
	for _, l := range lines {
		if !strings.Contains(l, ansiClearEOL) {
			t.Errorf("line without clear-to-end: %q", l)
		}
		if w := utf8.RuneCountInString(ansiRE.ReplaceAllString(l, "")); w > 40 {
			t.Errorf("line of %d columns for 40: %q", w, l)
		}
	}
	if !strings.Contains(lines[len(lines)-1], "live · updated") {
		t.Errorf("status line missing: %q", lines[len(lines)-1])
	}
	if q := f.query("/api/v1/watch/overview"); q != "last=5m&step=1d" {
		t.Errorf("overview query %q", q)
	}
}

func TestWatchPipeGetsPlainFrames(t *testing.T) {
	f := newFakeSSE()
	srv := httptest.NewServer(f)
	defer srv.Close()
	f.top <- sampleTop

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- Top(ctx, []string{"--addr", srv.URL, "--watch"}, &out, io.Discard) }()
	waitFor(t, "a frame", func() bool { return strings.Contains(out.String(), "1,286") })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := out.String(); strings.Contains(s, "\x1b") || !strings.Contains(s, "203.0.113.7") {
		t.Errorf("pipe output %q", s)
	}
}

func TestReadSSE(t *testing.T) {
	in := "retry: 1000\n\n: comment\n\nid: 1\ndata: {\"a\":1}\n\ndata:x\ndata: y\n\nevent: other\ndata: z\n\n"
	var got []string
	err := readSSE(strings.NewReader(in), func(d []byte) error { got = append(got, string(d)); return nil })
	if err != io.EOF {
		t.Fatalf("err %v", err)
	}
	if want := []string{`{"a":1}`, "x\ny", "z"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestWatchFlags(t *testing.T) {
	o, err := parseTopFlags([]string{"--watch"}, io.Discard)
	if err != nil || !o.watch || o.timeout != 0 {
		t.Fatalf("watch without timeout: %+v %v", o, err)
	}
	o, err = parseTopFlags([]string{"--watch", "--timeout", "5s"}, io.Discard)
	if err != nil || o.timeout != 5*time.Second {
		t.Fatalf("watch with timeout: %+v %v", o, err)
	}
	o, err = parseTopFlags(nil, io.Discard)
	if err != nil || o.watch || o.timeout != 30*time.Second {
		t.Fatalf("default: %+v %v", o, err)
	}
}

package cli

import (
	"context"
	"errors"
	"flag"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// runTail starts `logtally tail` with args; stop cancels it (as SIGTERM
// does) and returns its error and summary.
func runTail(t *testing.T, args ...string) (stderr *syncBuffer, stop func() (string, error)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	stderr = &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- Tail(ctx, args, out, stderr) }()
	var once sync.Once
	var err error
	stop = func() (string, error) {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return out.String(), err
	}
	t.Cleanup(func() { stop() })
	return stderr, stop
}

func (f *fakeIngest) received() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.total
}

func fastTailArgs(dir, addr string) []string {
	return []string{"--addr", addr, "--state-file", filepath.Join(dir, "state.json"),
		"--batch-wait", "10ms", "--poll-interval", "50ms", "--rotate-wait", "100ms", "--chunk-bytes", "8KiB"}
}

func TestTailRetriesBusyServerWithOneKeyPerChunk(t *testing.T) {
	old := retryBaseDelay
	retryBaseDelay = 10 * time.Millisecond
	defer func() { retryBaseDelay = old }()

	dir := t.TempDir()
	content, lines := genLog("tail", 3000)
	path := writeFile(t, dir, "access.log", append(content, '\n'))
	f := newFakeIngest(t)
	f.dropFirst, f.busyFirst, f.retryAfter = 2, 3, "0"
	srv := httptest.NewServer(f)
	defer srv.Close()

	stderr, stop := runTail(t, append(fastTailArgs(dir, srv.URL), "--source", "web1", "--format", "combined", path)...)
	waitFor(t, "every line received", func() bool { return f.received() >= len(lines) })
	summary, err := stop()
	if err != nil {
		t.Fatalf("tail: %v\n%s", err, stderr)
	}
	t.Logf("summary:\n%s", summary)
	f.checkExactlyOnce(t, lines)
	if got := summaryInt(t, summary, "retries"); got < 5 {
		t.Errorf("retries = %d, want at least 5", got)
	}
	if got := summaryInt(t, summary, "lines sent"); got != len(lines) {
		t.Errorf("lines sent = %d", got)
	}
	if got := summaryInt(t, summary, "lines accepted"); got != len(lines) {
		t.Errorf("lines accepted = %d", got)
	}
	if !strings.Contains(stderr.String(), "ingest backlog full") && !strings.Contains(stderr.String(), "EOF") {
		t.Errorf("stderr does not mention the retried failure:\n%s", stderr)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	key := regexp.MustCompile(`^tail-[0-9a-f]{8}-1-[0-9a-f]+-[0-9a-f]+-[0-9a-f]{16}-[0-9a-f]+-[0-9a-f]+$`)
	for k := range f.keys {
		if !key.MatchString(k) {
			t.Errorf("Idempotency-Key %q", k)
		}
	}
	if chunks := summaryInt(t, summary, "chunks"); len(f.keys) != chunks || chunks < 5 {
		t.Errorf("%d distinct keys stored for %d chunks", len(f.keys), chunks)
	}
	if !f.sources["web1"] || !f.formats["combined"] {
		t.Errorf("sources %v formats %v", f.sources, f.formats)
	}
}

func TestTailOversizedAndCutLinesAreReported(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "x.log", []byte("short\n"+strings.Repeat("L", 300)+"\n"+strings.Repeat("C", 5000)+"\nlast\n"))
	f := newFakeIngest(t)
	f.oversize = 100
	srv := httptest.NewServer(f)
	defer srv.Close()
	stderr, stop := runTail(t, append(fastTailArgs(dir, srv.URL), "--max-line-bytes", "2KiB", path)...)
	waitFor(t, "4 lines", func() bool { return f.received() >= 4 })
	summary, err := stop()
	if err != nil {
		t.Fatal(err)
	}
	f.checkExactlyOnce(t, []string{"short", strings.Repeat("L", 300), strings.Repeat("C", 2048), "last"})
	if summaryInt(t, summary, "oversized") != 2 || summaryInt(t, summary, "lines cut") != 1 || summaryInt(t, summary, "lines accepted") != 2 {
		t.Errorf("summary:\n%s", summary)
	}
	for _, want := range []string{"2 lines over the server's -ingest.max-line-bytes were stored as dead letters",
		"the line at byte 307 is 5001 bytes, over -max-line-bytes 2048"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestTailRejectedChunkStopsAndStaysPending(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "bad.log", []byte("good\nBAD\n"))
	f := newFakeIngest(t)
	f.rejectLine = "BAD"
	srv := httptest.NewServer(f)
	defer srv.Close()
	var out, errOut syncBuffer
	err := Tail(context.Background(), append(fastTailArgs(dir, srv.URL), path), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "bad.log bytes 0-9 rejected: POST /api/v1/ingest: server answered 400") {
		t.Fatalf("err = %v", err)
	}
	if !strings.HasPrefix(out.String(), "tail failed\n") {
		t.Errorf("summary:\n%s", out.String())
	}
	st, _ := os.ReadFile(filepath.Join(dir, "state.json"))
	if !strings.Contains(string(st), `"pending"`) {
		t.Errorf("state has no pending chunk:\n%s", st)
	}
}

func TestTailFlags(t *testing.T) {
	var usage strings.Builder
	if err := Tail(context.Background(), []string{"--help"}, io.Discard, &usage); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	for _, want := range []string{"-state-file", "-from", "-rotate-wait", "duplicate window"} {
		if !strings.Contains(usage.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
	dir := t.TempDir()
	for _, args := range [][]string{
		{},
		{"--from", "middle", "x.log"},
		{"--chunk-bytes", "0", "x.log"},
		{"--source", "", "x.log"},
		{"--poll-interval", "0s", "x.log"},
		{"--addr", "ftp://x", "x.log"},
		{"[", "x.log"},
	} {
		a := append([]string{"--state-file", filepath.Join(dir, "s.json")}, args...)
		if err := Tail(context.Background(), a, io.Discard, io.Discard); err == nil {
			t.Errorf("args %v: no error", args)
		}
	}
}

func TestDefaultStateFile(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "/var/lib/logtally-tail:/other")
	if got := defaultStateFile(); got != "/var/lib/logtally-tail/tail.json" {
		t.Errorf("with STATE_DIRECTORY: %s", got)
	}
	t.Setenv("STATE_DIRECTORY", "")
	t.Setenv("XDG_STATE_HOME", "/x/state")
	if got := defaultStateFile(); got != "/x/state/logtally/tail.json" {
		t.Errorf("with XDG_STATE_HOME: %s", got)
	}
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if got := defaultStateFile(); got != "/home/u/.local/state/logtally/tail.json" {
		t.Errorf("with HOME: %s", got)
	}
}

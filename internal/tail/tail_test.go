package tail

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder stands for ingest: it keeps every line of every chunk it
// acknowledges, and drops a chunk whose key it has seen (as JetStream's
// duplicate window does, without a time limit here).
type recorder struct {
	mu     sync.Mutex
	keys   map[string][]byte // key → body
	lines  map[string]int
	chunks []*Chunk
	dups   int
	// after, if set, is called with each chunk after it was stored; an
	// error is returned to the tailer as if the answer was lost.
	after func(c *Chunk) error
	// block, if set, is called before storing (to hold a send).
	block func(ctx context.Context, c *Chunk) error
}

func newRecorder() *recorder {
	return &recorder{keys: map[string][]byte{}, lines: map[string]int{}}
}

func (rc *recorder) send(ctx context.Context, c *Chunk) (Ack, error) {
	if rc.block != nil {
		if err := rc.block(ctx, c); err != nil {
			return Ack{}, err
		}
	}
	rc.mu.Lock()
	if !bytes.HasSuffix(c.Body, []byte("\n")) || c.Key == "" {
		rc.mu.Unlock()
		return Ack{}, fmt.Errorf("bad chunk %q key %q", c.Body, c.Key)
	}
	if prev, ok := rc.keys[c.Key]; ok {
		rc.dups++
		if !bytes.Equal(prev, c.Body) {
			rc.mu.Unlock()
			return Ack{}, fmt.Errorf("key %s sent again with another body", c.Key)
		}
	} else {
		rc.keys[c.Key] = bytes.Clone(c.Body)
		for _, l := range strings.Split(strings.TrimSuffix(string(c.Body), "\n"), "\n") {
			rc.lines[l]++
		}
	}
	rc.chunks = append(rc.chunks, c)
	after := rc.after
	rc.mu.Unlock()
	if after != nil {
		if err := after(c); err != nil {
			return Ack{}, err
		}
	}
	return Ack{Attempts: 1, LastAttempt: time.Now()}, nil
}

func (rc *recorder) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, c := range rc.lines {
		n += c
	}
	return n
}

// check fails unless exactly want was stored, each line once.
func (rc *recorder) check(t *testing.T, want []string) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	w := map[string]bool{}
	for _, l := range want {
		if w[l] {
			t.Fatalf("test bug: duplicate line %q", l)
		}
		w[l] = true
		if rc.lines[l] != 1 {
			t.Errorf("line %q stored %d times", l, rc.lines[l])
		}
	}
	for l, n := range rc.lines {
		if !w[l] {
			t.Errorf("unexpected line %q stored %d times", l, n)
		}
	}
}

func (rc *recorder) waitLines(t *testing.T, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d lines stored", n), func() bool { return rc.count() >= n })
	if got := rc.count(); got != n {
		t.Fatalf("%d lines stored, want %d", got, n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logBuf collects Logf lines.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logBuf) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func testConfig(dir string, files ...string) Config {
	return Config{
		Files:           files,
		StateFile:       filepath.Join(dir, "state", "tail.json"),
		ChunkBytes:      4 << 10,
		MaxLineBytes:    1 << 10,
		BatchWait:       5 * time.Millisecond,
		PollInterval:    20 * time.Millisecond,
		RotateWait:      100 * time.Millisecond,
		DedupWindow:     2 * time.Minute,
		ShutdownTimeout: 5 * time.Second,
	}
}

// running is a Tailer in a goroutine.
type running struct {
	t      *Tailer
	cancel context.CancelFunc
	done   chan error
	log    *logBuf
}

func start(t *testing.T, cfg Config, rc *recorder) *running {
	t.Helper()
	lb := &logBuf{}
	cfg.Logf = lb.logf
	tl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: tl, cancel: cancel, done: make(chan error, 1), log: lb}
	go func() { r.done <- tl.Run(ctx, rc.send) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
		if t.Failed() {
			t.Logf("tail log:\n%s", lb)
		}
	})
	return r
}

// stop cancels the run and returns Run's error.
func (r *running) stop() error {
	r.cancel()
	err := <-r.done
	r.done <- err // for the cleanup
	return err
}

// writer appends numbered lines to a file and remembers them.
type writer struct {
	path string
	name string
	n    int
	all  []string
}

func (w *writer) line() string {
	w.n++
	return fmt.Sprintf("198.51.100.%d - - %s line %d", w.n%250+1, w.name, w.n)
}

// write appends n lines through a fresh open (O_APPEND).
func (w *writer) write(t *testing.T, n int) {
	t.Helper()
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w.writeTo(t, f, n)
}

func (w *writer) writeTo(t *testing.T, f *os.File, n int) {
	t.Helper()
	var b bytes.Buffer
	for range n {
		l := w.line()
		w.all = append(w.all, l)
		b.WriteString(l + "\n")
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
}

func readState(t *testing.T, path string) *State {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func TestFollowResumeCRLFBlankAndPartialLine(t *testing.T) {
	for _, noNotify := range []bool{false, true} {
		t.Run(fmt.Sprintf("no-notify=%v", noNotify), func(t *testing.T) {
			dir := t.TempDir()
			w := &writer{path: filepath.Join(dir, "access.log"), name: "a"}
			w.write(t, 200)
			cfg := testConfig(dir, w.path)
			cfg.NoNotify = noNotify
			rc := newRecorder()
			r := start(t, cfg, rc)
			rc.waitLines(t, 200)
			w.write(t, 300)
			rc.waitLines(t, 500)
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			st := readState(t, cfg.StateFile)
			fi, _ := os.Stat(w.path)
			if len(st.Files) != 1 || st.Files[0].Offset != fi.Size() || st.Files[0].Pending != nil {
				t.Fatalf("state after stop: %+v, file size %d", st.Files[0], fi.Size())
			}

			// While stopped: CRLF lines, a blank line and a partial line.
			f, _ := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND, 0)
			f.WriteString("crlf one\r\n\r\n\ncrlf two\r\npartial ")
			r = start(t, cfg, rc)
			rc.waitLines(t, 502)
			w.all = append(w.all, "crlf one", "crlf two")
			// The partial line stays held while nothing else happens.
			time.Sleep(3 * cfg.PollInterval)
			if rc.count() != 502 {
				t.Fatalf("partial line sent before its newline")
			}
			f.WriteString("line completed\n")
			f.Close()
			w.all = append(w.all, "partial line completed")
			rc.waitLines(t, 503)
			w.write(t, 10)
			rc.waitLines(t, 513)
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			rc.check(t, w.all)
			if n := r.t.Stats().Blank.Load(); n != 2 {
				t.Errorf("blank lines = %d, want 2", n)
			}
		})
	}
}

func TestRenameRotationDrainsTheOldFile(t *testing.T) {
	for _, noNotify := range []bool{false, true} {
		t.Run(fmt.Sprintf("no-notify=%v", noNotify), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "access.log")
			w := &writer{path: path, name: "rot"}
			old, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			w.writeTo(t, old, 100)
			cfg := testConfig(dir, path)
			cfg.NoNotify = noNotify
			cfg.RotateWait = 300 * time.Millisecond
			rc := newRecorder()
			r := start(t, cfg, rc)
			rc.waitLines(t, 100)

			// logrotate: rename, create; the writer keeps its old file open
			// for a while (nginx until USR1) and writes to it.
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
			w.writeTo(t, old, 50)
			w.write(t, 70) // the new file
			w.writeTo(t, old, 30)
			rc.waitLines(t, 250)
			waitFor(t, "the rotated file closed", func() bool { return r.log.has("rotated file read to its end") })
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			rc.check(t, w.all)
			st := readState(t, cfg.StateFile)
			if len(st.Files) != 1 || st.Files[0].Path != path {
				t.Errorf("state keeps %d files: %+v", len(st.Files), st.Files)
			}
			if n := r.t.Stats().Rotations.Load(); n != 1 {
				t.Errorf("rotations = %d", n)
			}
		})
	}
}

func TestCopyTruncate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	w := &writer{path: path, name: "ct"}
	w.write(t, 300)
	cfg := testConfig(dir, path)
	rc := newRecorder()
	r := start(t, cfg, rc)
	rc.waitLines(t, 300)

	// logrotate copytruncate: copy (not followed), truncate in place.
	b, _ := os.ReadFile(path)
	os.WriteFile(path+".1", b, 0o644)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	w.write(t, 20)
	rc.waitLines(t, 320)
	w.write(t, 20)
	rc.waitLines(t, 340)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if n := r.t.Stats().Truncations.Load(); n != 1 {
		t.Errorf("truncations = %d, want 1\n%s", n, r.log)
	}

	// Truncated and written past the old offset while tail is stopped:
	// the size does not tell, the first bytes do.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	w.name = "ct-again-with-a-longer-name-so-that-it-grows-past-the-offset"
	w.write(t, 100)
	r = start(t, cfg, rc)
	rc.waitLines(t, 440)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	rc.check(t, w.all)
	if !r.log.has("not the file the state knew") {
		t.Errorf("no notice of the replaced content:\n%s", r.log)
	}
}

func TestAbsentDeletedRecreatedAndGlob(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "later.log")
	cfg := testConfig(dir, path, filepath.Join(dir, "*.access"))
	cfg.FromEnd = true // files appearing later are read from 0 anyway
	rc := newRecorder()
	r := start(t, cfg, rc)
	waitFor(t, "the waiting notice", func() bool { return r.log.has("waiting for it") })
	w := &writer{path: path, name: "absent"}
	w.write(t, 40)
	rc.waitLines(t, 40)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	w.write(t, 25) // recreated
	rc.waitLines(t, 65)
	g := &writer{path: filepath.Join(dir, "vhost.access"), name: "glob"}
	g.write(t, 30)
	rc.waitLines(t, 95)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	rc.check(t, append(w.all, g.all...))
}

func TestFromEndStartsAtTheLastLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "big.log")
	w := &writer{path: path, name: "old"}
	w.write(t, 500)
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	defer f.Close()
	f.WriteString("in progress ")
	cfg := testConfig(dir, path)
	cfg.FromEnd = true
	rc := newRecorder()
	r := start(t, cfg, rc)
	waitFor(t, "the file followed", func() bool { return r.log.has("following from byte") })
	f.WriteString("when tail started\n")
	w.all = []string{"in progress when tail started"}
	w.writeTo(t, f, 5)
	rc.waitLines(t, 6)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	rc.check(t, w.all)
}

func TestPartialTimeoutAndRotatedPartial(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.log")
	os.WriteFile(path, []byte("one\ntwo without newline"), 0o644)
	cfg := testConfig(dir, path)
	cfg.PartialTimeout = 50 * time.Millisecond
	rc := newRecorder()
	r := start(t, cfg, rc)
	rc.waitLines(t, 2)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	// Without a timeout, a partial line is sent once its file is rotated
	// away and -rotate-wait passed: no writer will finish it.
	path2 := filepath.Join(dir, "q.log")
	os.WriteFile(path2, []byte("three\nfour unfinished"), 0o644)
	cfg2 := testConfig(dir, path2)
	cfg2.StateFile = filepath.Join(dir, "state2.json")
	r = start(t, cfg2, rc)
	rc.waitLines(t, 3)
	os.Rename(path2, path2+".1")
	rc.waitLines(t, 4)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	rc.check(t, []string{"one", "two without newline", "three", "four unfinished"})
}

func TestLongLineIsCutAndReported(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "long.log")
	long := strings.Repeat("x", 5000)
	exact := strings.Repeat("y", 1024)
	os.WriteFile(path, []byte("before\n"+long+"\r\n"+exact+"\r\nafter\n"), 0o644)
	cfg := testConfig(dir, path)
	rc := newRecorder()
	r := start(t, cfg, rc)
	rc.waitLines(t, 4)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	rc.check(t, []string{"before", long[:1024], exact, "after"})
	if n := r.t.Stats().Cut.Load(); n != 1 {
		t.Errorf("cut = %d", n)
	}
	if !r.log.has("the line at byte 7 is 5002 bytes, over -max-line-bytes 1024") {
		t.Errorf("no warning:\n%s", r.log)
	}
}

var errCrash = errors.New("crash after the server stored the chunk")

// TestCrashBetweenAckAndSaveIsDeduplicated: the server stores a chunk, its
// answer never arrives (the process dies); the next run sends the same
// byte range with the same key first, and the server drops it.
func TestCrashBetweenAckAndSaveIsDeduplicated(t *testing.T) {
	for _, pastWindow := range []bool{false, true} {
		t.Run(fmt.Sprintf("past-window=%v", pastWindow), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "c.log")
			w := &writer{path: path, name: "crash"}
			w.write(t, 1000) // several 4 KiB chunks
			cfg := testConfig(dir, path)
			if pastWindow {
				cfg.DedupWindow = time.Nanosecond
			}
			rc := newRecorder()
			var crashed *Chunk
			rc.after = func(c *Chunk) error {
				if len(rc.chunks) == 3 {
					crashed = c
					return errCrash
				}
				return nil
			}
			r := start(t, cfg, rc)
			if err := <-r.done; !errors.Is(err, errCrash) {
				t.Fatalf("Run = %v", err)
			}
			r.done <- nil
			st := readState(t, cfg.StateFile)
			p := st.Files[0].Pending
			if p == nil || p.Key != crashed.Key || st.Files[0].Offset != crashed.Start || p.End != crashed.End {
				t.Fatalf("state after the crash: %+v pending %+v; crashed chunk %s key %s", st.Files[0], p, crashed.Where(), crashed.Key)
			}
			rc.after = nil
			r = start(t, cfg, rc)
			rc.waitLines(t, 1000)
			w.write(t, 10)
			rc.waitLines(t, 1010)
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			rc.check(t, w.all)
			rc.mu.Lock()
			first := rc.chunks[3]
			dups := rc.dups
			rc.mu.Unlock()
			if !first.Resumed || first.Key != crashed.Key || !bytes.Equal(first.Body, crashed.Body) {
				t.Errorf("first chunk after restart: resumed %v key %s, want the crashed chunk's key %s and body", first.Resumed, first.Key, crashed.Key)
			}
			if dups != 1 {
				t.Errorf("duplicates dropped = %d, want 1", dups)
			}
			s := r.t.Stats()
			if s.Resumed.Load() != 1 {
				t.Errorf("resumed = %d", s.Resumed.Load())
			}
			want := int64(0)
			if pastWindow {
				want = 1
			}
			if s.ResentPastWindow.Load() != want || r.log.has("past the server's duplicate window") != pastWindow {
				t.Errorf("resent past window = %d, want %d\n%s", s.ResentPastWindow.Load(), want, r.log)
			}
		})
	}
}

func TestShutdownFinishesTheChunkInFlight(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.log")
	w := &writer{path: path, name: "stop"}
	w.write(t, 100)
	cfg := testConfig(dir, path)
	rc := newRecorder()
	inFlight, release := make(chan struct{}), make(chan struct{})
	rc.block = func(ctx context.Context, c *Chunk) error {
		close(inFlight)
		<-release
		return ctx.Err()
	}
	r := start(t, cfg, rc)
	<-inFlight
	r.cancel()
	close(release)
	if err := <-r.done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	r.done <- nil
	rc.check(t, w.all)
	st := readState(t, cfg.StateFile)
	if fi, _ := os.Stat(path); st.Files[0].Offset != fi.Size() || st.Files[0].Pending != nil {
		t.Errorf("state %+v", st.Files[0])
	}

	// A server that does not answer: after -shutdown-timeout the chunk
	// stays pending, and Run still returns nil.
	w.write(t, 5)
	cfg.ShutdownTimeout = 50 * time.Millisecond
	inFlight = make(chan struct{})
	rc.block = func(ctx context.Context, c *Chunk) error {
		close(inFlight)
		<-ctx.Done()
		return ctx.Err()
	}
	r = start(t, cfg, rc)
	<-inFlight
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	r.done <- nil
	if !r.log.has("not acknowledged within -shutdown-timeout") {
		t.Errorf("log:\n%s", r.log)
	}
	if st := readState(t, cfg.StateFile); st.Files[0].Pending == nil {
		t.Errorf("no pending chunk after the timed-out shutdown")
	}
	rc.block = nil
	r = start(t, cfg, rc)
	rc.waitLines(t, 105)
	r.stop()
	rc.check(t, w.all)
}

func TestRotatedWhileStopped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.log")
	w := &writer{path: path, name: "rs"}
	w.write(t, 100)
	cfg := testConfig(dir, path)
	rc := newRecorder()
	r := start(t, cfg, rc)
	rc.waitLines(t, 100)
	r.stop()
	w.write(t, 30) // unread when it is rotated
	os.Rename(path, path+".1")
	w.write(t, 40)
	// A file deleted while stopped cannot be read: reported.
	other := filepath.Join(dir, "gone.log")
	cfg.Files = append(cfg.Files, other)
	g := &writer{path: other, name: "gone"}
	g.write(t, 5)
	r = start(t, cfg, rc)
	rc.waitLines(t, 175)
	r.stop()
	os.Remove(other)
	r = start(t, cfg, rc)
	waitFor(t, "the rotation found", func() bool { return r.log.has("not found in") })
	r.stop()
	rc.check(t, append(w.all, g.all...))
	if r.t.Stats().Unreadable.Load() != 1 {
		t.Errorf("unreadable = %d", r.t.Stats().Unreadable.Load())
	}
}

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.log")
	os.WriteFile(path, []byte("a\n"), 0o644)
	cfg := testConfig(dir, path)
	rc := newRecorder()
	r := start(t, cfg, rc)
	rc.waitLines(t, 1)

	tl, _ := New(cfg)
	if err := tl.Run(context.Background(), rc.send); err == nil || !strings.Contains(err.Error(), "in use by another") {
		t.Errorf("second tail on the state file: %v", err)
	}
	r.stop()
	ents, _ := os.ReadDir(filepath.Dir(cfg.StateFile))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if fmt.Sprint(names) != "[tail.json tail.json.lock]" {
		t.Errorf("state directory holds %v (temporary files left?)", names)
	}
	os.WriteFile(cfg.StateFile, []byte(`{"version":1,"files":[`), 0o600)
	tl, _ = New(cfg)
	if err := tl.Run(context.Background(), rc.send); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged state: %v", err)
	}
}

// ingest's rule for Idempotency-Key (services/ingest/http.go).
var idempotencyKeyRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func TestKeyFitsIngest(t *testing.T) {
	tl := &Tailer{state: &State{ID: strings.Repeat("f", 16)}}
	r := &reader{id: fileID{^uint64(0), ^uint64(0)}, e: &Entry{Serial: ^uint64(0), FP: strings.Repeat("a", 16)}}
	k := tl.key(r, &Chunk{Start: 1<<63 - 1, End: 1<<63 - 1})
	if !idempotencyKeyRE.MatchString(k) {
		t.Errorf("key %q (%d characters) is not a valid Idempotency-Key", k, len(k))
	}
}

// TestNotifyWakesWithoutPolling: with an hour between polls, only
// filesystem notifications can make tail see new lines and a rotation.
func TestNotifyWakesWithoutPolling(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "n.log")
	w := &writer{path: path, name: "notify"}
	w.write(t, 10)
	cfg := testConfig(dir, path)
	cfg.PollInterval = time.Hour
	cfg.BatchWait = 0
	rc := newRecorder()
	r := start(t, cfg, rc)
	rc.waitLines(t, 10)
	w.write(t, 10)
	rc.waitLines(t, 20)
	os.Rename(path, path+".1")
	w.write(t, 10)
	rc.waitLines(t, 30)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	rc.check(t, w.all)
}

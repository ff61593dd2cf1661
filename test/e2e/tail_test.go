package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/cli"
	"github.com/logtally/logtally/internal/loggen"
)

// tailArgsEnv carries the arguments of `logtally tail` to the child
// process that TestTailChildProcess runs.
const tailArgsEnv = "LOGTALLY_E2E_TAIL_ARGS"

// TestTailChildProcess is `logtally tail` in a process of its own (this
// test binary run again), so that the tests can SIGKILL it; it does
// nothing in a normal run.
func TestTailChildProcess(t *testing.T) {
	raw := os.Getenv(tailArgsEnv)
	if raw == "" {
		t.Skip("the child process of TestTailRotationsAndCrashesCountExactly")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		panic(err)
	}
	// As cmd/logtally's main: SIGINT and SIGTERM end the context.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := cli.Tail(ctx, args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "logtally:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// lockedBuf collects a child's output.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type tailProc struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuf
	exited         chan struct{}
	err            error
}

func startTail(t *testing.T, args []string) *tailProc {
	t.Helper()
	raw, _ := json.Marshal(args)
	p := &tailProc{stdout: &lockedBuf{}, stderr: &lockedBuf{}, exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestTailChildProcess$")
	p.cmd.Env = append(os.Environ(), tailArgsEnv+"="+string(raw))
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("tail pid %d stderr:\n%s\nstdout:\n%s", p.cmd.Process.Pid, p.stderr, p.stdout)
		}
	})
	return p
}

func (p *tailProc) kill(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// faultProxy stands between tail and ingest. It can kill the tail process
// after ingest answered 200 and before the answer is passed on (a crash
// between the server's acknowledgement and the offset save), and hold an
// answer (a request in flight at SIGTERM). It records, per
// Idempotency-Key, ingest's answers.
type faultProxy struct {
	t        *testing.T
	upstream string
	client   *http.Client

	mu        sync.Mutex
	killNext  *tailProc // killed after the next acknowledged ingest request
	killedKey string
	hold      chan struct{} // answers wait for it to close
	held      chan struct{} // closed when an answer is held
	answers   map[string][]ingestAnswer
}

type ingestAnswer struct {
	Accepted         int `json:"accepted"`
	Batches          int `json:"batches"`
	DuplicateBatches int `json:"duplicate_batches"`
}

func (f *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, f.upstream+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	resp, err := f.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	respBody, _ := io.ReadAll(resp.Body)
	key := r.Header.Get("Idempotency-Key")

	f.mu.Lock()
	if resp.StatusCode == http.StatusOK {
		var a ingestAnswer
		if err := json.Unmarshal(respBody, &a); err != nil {
			f.t.Errorf("ingest answer %q: %v", respBody, err)
		}
		f.answers[key] = append(f.answers[key], a)
	}
	victim := f.killNext
	if resp.StatusCode == http.StatusOK && victim != nil {
		f.killNext, f.killedKey = nil, key
	}
	hold, held := f.hold, f.held
	if hold != nil {
		f.hold, f.held = nil, nil
	}
	f.mu.Unlock()

	if victim != nil && resp.StatusCode == http.StatusOK {
		victim.kill(f.t) // the server stored the chunk; tail never hears of it
		http.Error(w, "killed", http.StatusBadGateway)
		return
	}
	if hold != nil {
		close(held)
		<-hold
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(respBody)
}

// logWriter writes generated lines to files and keeps the oracle: the
// reference counts of every line written.
type logWriter struct {
	t     *testing.T
	g     *loggen.Generator
	i, n  int
	ref   *reference
	perIP map[netip.Addr]uint64
}

func (lw *logWriter) to(f *os.File, n int) {
	lw.t.Helper()
	var b bytes.Buffer
	for range n {
		if lw.i >= lw.n {
			lw.t.Fatal("test bug: workload exhausted")
		}
		l := lw.g.Combined(lw.i, lw.n)
		lw.i++
		lw.ref.add(l)
		lw.perIP[l.Addr]++
		b.Write(l.Text)
		b.WriteByte('\n')
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		lw.t.Fatal(err)
	}
}

// write appends n lines to path (created if missing) through a fresh open.
func (lw *logWriter) write(path string, n int) {
	lw.t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		lw.t.Fatal(err)
	}
	defer f.Close()
	lw.to(f, n)
}

type tailState struct {
	Files []struct {
		Path    string `json:"path"`
		Offset  int64  `json:"offset"`
		Pending *struct {
			Key string `json:"key"`
		} `json:"pending"`
	} `json:"files"`
}

func readTailState(t *testing.T, path string) tailState {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s tailState
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("state file: %v\n%s", err, b)
	}
	return s
}

// TestTailRotationsAndCrashesCountExactly follows real files with
// `logtally tail` in a child process against an in-process logtally, and
// rotates them by rename, by copytruncate, by delete and recreate, kills
// tail right after ingest acknowledged a chunk, kills it at a random
// moment, stops it with SIGTERM while a chunk is in flight, and restarts
// it each time. Every IP's count must equal the count of the lines written.
func TestTailRotationsAndCrashesCountExactly(t *testing.T) {
	a := startApp(t, "all", newConfig(t))
	c := newClient(t, a)
	proxy := &faultProxy{t: t, upstream: "http://" + a.HTTPAddr().String(), client: &http.Client{}, answers: map[string][]ingestAnswer{}}
	ps := httptest.NewServer(proxy)
	defer ps.Close()

	logs := t.TempDir()
	access := filepath.Join(logs, "access.log")
	app1 := filepath.Join(logs, "app-1.log")
	stateFile := filepath.Join(t.TempDir(), "state", "tail.json")
	args := []string{"--addr", ps.URL, "--state-file", stateFile, "--source", "web1",
		"--batch-wait", "20ms", "--poll-interval", "100ms", "--rotate-wait", "300ms", "--chunk-bytes", "16KiB",
		access, filepath.Join(logs, "app-*.log")}

	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	from, to := hour.Add(-10*time.Minute), hour.Add(14*time.Minute)
	lw := &logWriter{t: t, g: loggen.New(7, 400, from, to.Sub(from)), n: 10000, ref: newReference(), perIP: map[netip.Addr]uint64{}}
	caughtUp := func(what string) {
		t.Helper()
		t.Logf("%s: waiting for %d requests", what, lw.ref.total)
		c.waitTotals(t, from, to, lw.ref.total, 0, time.Minute)
	}

	// 1. Files written before tail starts; more while it runs.
	lw.write(access, 2000)
	lw.write(app1, 500)
	p := startTail(t, args)
	lw.write(access, 1000)
	caughtUp("start")

	// 2. Killed after ingest stored a chunk and before tail heard of it.
	proxy.mu.Lock()
	proxy.killNext = p
	proxy.mu.Unlock()
	lw.write(access, 500)
	<-p.exited
	proxy.mu.Lock()
	killedKey := proxy.killedKey
	proxy.mu.Unlock()
	st := readTailState(t, stateFile)
	pendingKeys := []string{}
	for _, f := range st.Files {
		if f.Pending != nil {
			pendingKeys = append(pendingKeys, f.Pending.Key)
		}
	}
	if len(pendingKeys) != 1 || pendingKeys[0] != killedKey {
		t.Fatalf("after the kill the state has pending chunks %v, want the killed one %s", pendingKeys, killedKey)
	}

	// 3. While tail is down: more lines, a rename rotation, the writer
	// still appending to its old file (as nginx does until it reopens).
	old, err := os.OpenFile(access, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	lw.to(old, 300)
	if err := os.Rename(access, access+".1"); err != nil {
		t.Fatal(err)
	}
	lw.write(access, 400)
	lw.to(old, 100)
	old.Close()
	p = startTail(t, args)
	caughtUp("restart after the kill")
	proxy.mu.Lock()
	again := proxy.answers[killedKey]
	proxy.mu.Unlock()
	if len(again) != 2 || again[1].Batches == 0 || again[1].DuplicateBatches != again[1].Batches {
		t.Fatalf("answers to the killed chunk's key %s: %+v; want the resend to be all duplicates", killedKey, again)
	}

	// 4. copytruncate while tail runs (after it caught up: lines written
	// between its last look and the truncation would be lost, by any
	// follower); the copy is not followed.
	b, _ := os.ReadFile(access)
	os.WriteFile(filepath.Join(logs, "access.log.2"), b, 0o644)
	if err := os.Truncate(access, 0); err != nil {
		t.Fatal(err)
	}
	lw.write(access, 300)
	caughtUp("copytruncate")

	// 5. Deleted and recreated; a new file matching the glob.
	if err := os.Remove(app1); err != nil {
		t.Fatal(err)
	}
	lw.write(app1, 200)
	lw.write(filepath.Join(logs, "app-2.log"), 150)
	caughtUp("delete, recreate, new file")

	// 6. SIGTERM while a chunk is in flight: it is finished, offsets are
	// saved, exit 0, nothing pending.
	held := make(chan struct{})
	hold := make(chan struct{})
	proxy.mu.Lock()
	proxy.hold, proxy.held = hold, held
	proxy.mu.Unlock()
	lw.write(access, 200)
	<-held
	p.cmd.Process.Signal(syscall.SIGTERM)
	waitForCond(t, "tail's stopping notice", func() bool { return strings.Contains(p.stderr.String(), "stopping:") })
	close(hold)
	<-p.exited
	if p.err != nil {
		t.Fatalf("tail after SIGTERM: %v", p.err)
	}
	if !strings.HasPrefix(p.stdout.String(), "tail stopped\n") {
		t.Fatalf("no summary after SIGTERM:\n%s", p.stdout)
	}
	for _, f := range readTailState(t, stateFile).Files {
		if f.Pending != nil {
			t.Fatalf("pending chunk after SIGTERM: %s", f.Pending.Key)
		}
	}
	// The lines after the finished chunk are the next run's.

	// 7. SIGKILL at a random moment while lines stream in, then restart.
	p = startTail(t, args)
	killAt := time.Duration(rand.IntN(300)) * time.Millisecond
	timer := time.AfterFunc(killAt, func() { p.cmd.Process.Signal(syscall.SIGKILL) })
	for range 20 {
		lw.write(access, 50)
		lw.write(filepath.Join(logs, "app-2.log"), 25)
	}
	<-p.exited
	timer.Stop()
	t.Logf("killed after %s", killAt)
	p = startTail(t, args)
	caughtUp("restart after the random kill")

	// The oracle, per IP, against /api/v1/top, then every answer.
	var top struct {
		Items []ipCount `json:"items"`
	}
	c.getJSON(t, "/api/v1/top?n=1000&"+rangeQuery(from, to), &top)
	if len(top.Items) != len(lw.perIP) {
		t.Errorf("top has %d IPs, %d were written", len(top.Items), len(lw.perIP))
	}
	for _, it := range top.Items {
		if want := lw.perIP[netip.MustParseAddr(it.IP)]; it.Count != want {
			t.Errorf("%s counted %d times, written %d times", it.IP, it.Count, want)
		}
	}
	verify(t, c, lw.ref, from, to, 0)
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	if p.err != nil {
		t.Fatalf("final SIGTERM: %v", p.err)
	}
	t.Logf("%d lines, %d IPs; last run's summary:\n%s", lw.ref.total, len(lw.perIP), p.stdout)
}

func waitForCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package chaos

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// RepoRoot is the directory of the module's go.mod.
func RepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the logtally module")
	}
	return filepath.Dir(mod), nil
}

// Binary builds cmd/logtally once per test process and returns its path.
// RemoveBinary deletes it (call it from TestMain).
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "logtally-chaos-")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "logtally")
		cmd := exec.Command("go", "build", "-o", buildBin, "./cmd/logtally")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// RemoveBinary deletes the binary built by Binary.
func RemoveBinary() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}

// DefaultStageFlags are added to every stage: short flush and heartbeat
// intervals so that faults show quickly, a parser ack wait of 10s (default
// 30s) so that a killed parser's batches come back within a test, and an
// HTTP ingest timeout of 3s so that an outage answers 503 quickly.
var DefaultStageFlags = []string{
	"-aggregator.flush-interval=200ms",
	"-aggregator.heartbeat=250ms",
	"-parser.ack-wait=10s",
	"-ingest.http.timeout=3s",
	"-log.format=json",
}

// Stage is one logtally process running one target. Its addresses stay
// the same across restarts.
type Stage struct {
	Name, Target string
	HTTPAddr     string
	GRPCAddr     string
	TCPAddr      string
	SyslogAddr   string
	LogPath      string
	Grace        time.Duration // -shutdown.timeout

	bin  string
	args []string
	env  []string
	t    testing.TB

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	state    *os.ProcessState
	signaled bool // exit was caused by Kill or Term
	starts   int
}

// StartStage starts `logtally -target=<target>` against the NATS URLs and
// waits until /readyz answers 200. extra flags come after the defaults.
func StartStage(t testing.TB, bin, name, target, natsURLs string, extra ...string) *Stage {
	t.Helper()
	return StartStageEnv(t, bin, name, target, natsURLs, nil, extra...)
}

// StartStageEnv is StartStage with environment variables (NAME=value) added
// to the process's environment, e.g. Cluster.StageEnv.
func StartStageEnv(t testing.TB, bin, name, target, natsURLs string, env []string, extra ...string) *Stage {
	t.Helper()
	s := &Stage{
		Name: name, Target: target, bin: bin, t: t, env: env,
		HTTPAddr: FreeAddr(t), GRPCAddr: FreeAddr(t), TCPAddr: FreeAddr(t), SyslogAddr: FreeAddr(t),
		LogPath: filepath.Join(logDir(t), name+".log"),
		Grace:   30 * time.Second,
	}
	s.args = []string{
		"-target=" + target, "-nats.url=" + natsURLs, "-nats.replicas=3",
		"-http.addr=" + s.HTTPAddr, "-grpc.addr=" + s.GRPCAddr,
		"-ingest.tcp.addr=" + s.TCPAddr, "-ingest.syslog.addr=" + s.SyslogAddr,
	}
	s.args = append(s.args, DefaultStageFlags...)
	s.args = append(s.args, extra...)
	for _, a := range s.args {
		if v, ok := strings.CutPrefix(a, "-shutdown.timeout="); ok {
			if d, err := time.ParseDuration(v); err == nil {
				s.Grace = d
			}
		}
	}
	t.Cleanup(func() {
		s.mu.Lock()
		running := s.cmd != nil && s.state == nil
		s.mu.Unlock()
		if running {
			_ = s.signal(syscall.SIGKILL)
			s.wait(10 * time.Second)
		}
		if t.Failed() {
			t.Logf("--- last lines of %s (%s) ---\n%s", s.Name, s.LogPath, s.Tail(30))
		}
	})
	s.Start(t)
	return s
}

// logDir is where stage logs go: a directory of the test's, removed after
// it, or LOGTALLY_CHAOS_LOG_DIR/<test> to keep them for a look afterwards.
func logDir(t testing.TB) string {
	keep := os.Getenv("LOGTALLY_CHAOS_LOG_DIR")
	if keep == "" {
		return t.TempDir()
	}
	dir := filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Base is the stage's HTTP base URL.
func (s *Stage) Base() string { return "http://" + s.HTTPAddr }

// Start starts the process (again) and waits until it is ready.
func (s *Stage) Start(t testing.TB) {
	t.Helper()
	s.launch(t)
	s.WaitReady(t, 60*time.Second)
}

// launch starts the process without waiting for it.
func (s *Stage) launch(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	if s.cmd != nil && s.state == nil {
		s.mu.Unlock()
		t.Fatalf("%s is already running", s.Name)
	}
	f, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.mu.Unlock()
		t.Fatal(err)
	}
	s.starts++
	fmt.Fprintf(f, "=== chaos: start #%d at %s: %s %s\n", s.starts, time.Now().Format(time.RFC3339Nano), s.bin, strings.Join(s.args, " "))
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(append(os.Environ(), "GOTRACEBACK=all"), s.env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		s.mu.Unlock()
		t.Fatalf("start %s: %v", s.Name, err)
	}
	done := make(chan struct{})
	s.cmd, s.done, s.state, s.signaled = cmd, done, nil, false
	s.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		f.Close()
		s.mu.Lock()
		s.state = cmd.ProcessState
		s.mu.Unlock()
		close(done)
	}()
}

// Started reports whether the current run has logged "logtally started"
// (every component started; see WaitReady).
func (s *Stage) Started() bool {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return false
	}
	if i := bytes.LastIndex(b, []byte("=== chaos: start #")); i >= 0 {
		b = b[i:]
	}
	return bytes.Contains(b, []byte(`"@message":"logtally started"`))
}

// WaitReady polls /readyz until it answers 200 and the process has logged
// "logtally started". /readyz alone is not enough: it answers 200 once the
// NATS connection is up, before the components have started (a POST to
// /api/v1/ingest then gets 404); TestReadyzMeansServing shows it.
func (s *Stage) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	c := http.Client{Timeout: 2 * time.Second}
	var last string
	for time.Now().Before(deadline) {
		if s.Exited() {
			t.Fatalf("%s exited while starting: %v\n%s", s.Name, s.ExitState(), s.Tail(30))
		}
		resp, err := c.Get(s.Base() + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && s.Started() {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not ready within %s: %s\n%s", s.Name, timeout, last, s.Tail(30))
}

func (s *Stage) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.state != nil {
		return errors.New("not running")
	}
	s.signaled = true
	return s.cmd.Process.Signal(sig)
}

func (s *Stage) wait(timeout time.Duration) bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// PID is the running process's id (0 if none).
func (s *Stage) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.state != nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Exited reports whether the last started process has ended.
func (s *Stage) Exited() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state != nil
}

// ExitState is the last process's exit state (nil while it runs).
func (s *Stage) ExitState() *os.ProcessState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// CheckAlive fails the test if the process ended without being told to.
func (s *Stage) CheckAlive(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	st, sig := s.state, s.signaled
	s.mu.Unlock()
	if st != nil && !sig {
		t.Fatalf("%s exited on its own: %v\n%s", s.Name, st, s.Tail(40))
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (s *Stage) Kill(t testing.TB) {
	t.Helper()
	if err := s.signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", s.Name, err)
	}
	if !s.wait(10 * time.Second) {
		t.Fatalf("%s did not die after SIGKILL", s.Name)
	}
}

// Term sends SIGTERM and asserts the process exits with code 0 within its
// grace period (-shutdown.timeout); it returns how long the exit took.
func (s *Stage) Term(t testing.TB) time.Duration {
	t.Helper()
	t0 := time.Now()
	if err := s.signal(syscall.SIGTERM); err != nil {
		t.Fatalf("term %s: %v", s.Name, err)
	}
	if !s.wait(s.Grace + 2*time.Second) {
		_ = s.signal(syscall.SIGKILL)
		s.wait(10 * time.Second)
		t.Fatalf("%s did not exit within its grace period %s after SIGTERM\n%s", s.Name, s.Grace, s.Tail(30))
	}
	took := time.Since(t0)
	if st := s.ExitState(); st.ExitCode() != 0 {
		t.Fatalf("%s exited with %v after SIGTERM (took %s)\n%s", s.Name, st, took, s.Tail(30))
	}
	return took
}

// Restart kills the process (if it runs) and starts it again.
func (s *Stage) Restart(t testing.TB) {
	t.Helper()
	if !s.Exited() {
		s.Kill(t)
	}
	s.Start(t)
}

// Tail returns the last n lines of the process's log file.
func (s *Stage) Tail(n int) string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Metric sums every sample of the named metric on the stage's /metrics.
func (s *Stage) Metric(name string) (float64, error) {
	return Metric(s.Base(), name)
}

// RSS is the process's resident set size in bytes (VmRSS).
func (s *Stage) RSS() (int64, error) {
	pid := s.PID()
	if pid == 0 {
		return 0, errors.New("not running")
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fs := strings.Fields(v)
			kb, err := strconv.ParseInt(fs[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

var metricClient = &http.Client{Timeout: 3 * time.Second}

// Metric sums every sample of name (any labels) on base+"/metrics".
func Metric(base, name string) (float64, error) {
	resp, err := metricClient.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/metrics: %d", resp.StatusCode)
	}
	var sum float64
	found := false
	for _, line := range bytes.Split(b, []byte("\n")) {
		l := string(line)
		if strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") {
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				return 0, fmt.Errorf("metric %s: %q", name, l)
			}
			sum += v
			found = true
		}
	}
	if !found {
		return 0, nil
	}
	return sum, nil
}

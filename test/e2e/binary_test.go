package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/counts"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type proc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	http   string
	tcp    string
}

func startBinary(t *testing.T, bin, dir string) *proc {
	t.Helper()
	p := &proc{stderr: &bytes.Buffer{}, http: freeAddr(t), tcp: freeAddr(t)}
	p.cmd = exec.Command(bin, "-data.dir="+dir, "-http.addr="+p.http, "-grpc.addr="+freeAddr(t),
		"-ingest.tcp.addr="+p.tcp, "-ingest.syslog.addr="+freeAddr(t))
	// Settings from the environment, as in a container.
	p.cmd.Env = append(os.Environ(), "LOGTALLY_LOG_FORMAT=json", "LOGTALLY_AGGREGATOR_FLUSH_INTERVAL=200ms")
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("binary not ready: %v\n%s", err, p.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sigterm stops the process gracefully and checks it exits cleanly.
func (p *proc) sigterm(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr)
		}
	case <-time.After(45 * time.Second):
		t.Fatalf("no exit within the grace period\n%s", p.stderr)
	}
	// Logs are JSON (set through the environment), one object per line.
	var last map[string]any
	lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("last log line is not JSON: %q", lines[len(lines)-1])
	}
	if last["@message"] != "logtally stopped" {
		t.Fatalf("last log line %v, want the stop message", last)
	}
}

// TestBinarySIGTERMAndRestart builds the real binary, counts lines, stops it
// with SIGTERM and starts it again on the same data directory.
func TestBinarySIGTERMAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "logtally")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/logtally")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	w := newWorkload(t, 20000, 6)
	p := startBinary(t, bin, dir)
	c := &client{base: "http://" + p.http}
	addr, _ := net.ResolveTCPAddr("tcp", p.tcp)
	sendTCP(t, addr, w.tcp)
	want := uint64(len(w.tcp))
	c.waitTotals(t, w.from, w.to, want, 0, 2*time.Minute)
	p.sigterm(t)

	p = startBinary(t, bin, dir)
	c = &client{base: "http://" + p.http}
	got := c.totals(t, w.from, w.to)
	if got.Requests != want || got.DistinctIPs != w.tcpRef.distinct(w.from, w.to) {
		t.Fatalf("after restart: %+v, want %d requests", got, want)
	}
	var top struct {
		Items []ipCount `json:"items"`
	}
	c.getJSON(t, fmt.Sprintf("/api/v1/top?n=5&%s", rangeQuery(w.from, w.to)), &top)
	if !equalItems(top.Items, w.tcpRef.top(w.from, w.to, 5, counts.Requests)) {
		t.Fatalf("top after restart %v", top.Items)
	}
	p.sigterm(t)
}

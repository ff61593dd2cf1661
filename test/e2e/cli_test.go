package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/cli"

	"github.com/logtally/logtally/internal/counts"
)

// TestReplayAndTopAgainstAllInOne runs the client commands against the real
// server: a gzip file through replay, then top must match the reference.
func TestReplayAndTopAgainstAllInOne(t *testing.T) {
	w := newWorkload(t, 20000, 4)
	a := startApp(t, "all", newConfig(t, "-data.dir="+t.TempDir()))
	base := "http://" + a.HTTPAddr().String()

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	for _, l := range w.tcp {
		zw.Write(l)
		zw.Write([]byte("\n"))
	}
	zw.Close()
	file := filepath.Join(t.TempDir(), "access.log.gz")
	if err := os.WriteFile(file, gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := cli.Replay(context.Background(), []string{"--addr", base, "--chunk-bytes", "256KiB", file}, &out, &errOut); err != nil {
		t.Fatalf("replay: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	// The reference for this test is the TCP share of the workload only.
	ref := w.tcpRef
	c := newClient(t, a)
	c.waitTotals(t, w.from, w.to, ref.total, 0, 2*time.Minute)

	out.Reset()
	q := "--from=" + w.from.Format(time.RFC3339)
	if err := cli.Top(context.Background(), []string{"--addr", base, q, "--to=" + w.to.Format(time.RFC3339), "-n", "10", "--json"}, &out, &errOut); err != nil {
		t.Fatalf("top: %v %s", err, errOut.String())
	}
	var got struct {
		Items []ipCount `json:"items"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("top --json: %v: %s", err, out.String())
	}
	want := ref.top(w.from, w.to, 10, counts.Requests)
	if len(got.Items) != 10 || !equalItems(got.Items, want) {
		t.Fatalf("top --json %v, want %v", got.Items, want)
	}
	out.Reset()
	if err := cli.Top(context.Background(), []string{"--addr", base, q, "--to=" + w.to.Format(time.RFC3339), "-n", "3"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), want[0].IP) {
		t.Fatalf("table lacks the top IP %s:\n%s", want[0].IP, out.String())
	}

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
}

func equalItems(a, b []ipCount) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// child is a stage running as its own process of this binary, joined to the
// bench's embedded NATS server: `-aggregators N` measures the aggregator
// the way it is deployed, and its CPU from the kernel's accounting.
type child struct {
	name string
	cmd  *exec.Cmd
	base string
	log  string
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startChild runs `<this binary> -target=<target> -nats.url=<url> …` and
// waits until it answers /readyz.
func startChild(ctx context.Context, name, target, natsURL, dir string, extra []string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: own executable: %w", err)
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, name+".log")
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{"-target=" + target, "-nats.url=" + natsURL, "-http.addr=" + httpAddr,
		"-grpc.addr=127.0.0.1:0", "-data.dir=" + filepath.Join(dir, name)}, extra...)
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	out.Close()
	c := &child{name: name, cmd: cmd, base: "http://" + httpAddr, log: logPath}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(c.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.stop()
			return nil, fmt.Errorf("bench: %s not ready after 60s (log %s)", name, logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpu is the process's user+system time so far.
func (c *child) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may
	// contain spaces: state is field 3, utime 14, stime 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks
}

// labelled is one labelled series of a metric on the child's /metrics.
func (c *child) labelled(name, label, value string) float64 {
	mfs := c.families()
	var list []*dto.MetricFamily
	for _, mf := range mfs {
		list = append(list, mf)
	}
	return seriesValue(list, name, label, value)
}

func (c *child) families() map[string]*dto.MetricFamily {
	resp, err := http.Get(c.base + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil
	}
	return mfs
}

// peakRSSMiB is the child's peak resident set (VmHWM), in MiB.
func (c *child) peakRSSMiB() float64 {
	return vmHWM(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
}

// metric sums every series of a metric on the child's /metrics.
func (c *child) metric(name string) float64 {
	mf, ok := c.families()[name]
	if !ok {
		return 0
	}
	return familySum(mf)
}

// stop ends the child gracefully (SIGTERM), then for good.
func (c *child) stop() {
	if c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

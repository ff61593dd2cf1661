// Package apptest builds configurations and loggers for tests that run the
// whole logtally process in the test process (test/e2e, test/nasty).
package apptest

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/logtally/logtally/internal/app"
	"github.com/logtally/logtally/internal/config"
)

// Config builds a configuration the way the binary does, from flags: every
// listener on a free loopback port, the embedded server's data in a
// directory of the test's own, short flush and heartbeat intervals, then
// args (later flags win). The environment is not read.
func Config(t testing.TB, args ...string) app.Config {
	t.Helper()
	var cfg app.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	base := []string{
		"-data.dir=" + t.TempDir(),
		"-http.addr=127.0.0.1:0", "-grpc.addr=127.0.0.1:0",
		"-ingest.tcp.addr=127.0.0.1:0", "-ingest.syslog.addr=127.0.0.1:0",
		"-aggregator.flush-interval=200ms", "-aggregator.heartbeat=200ms",
	}
	if err := config.Parse(fs, append(base, args...), "LOGTALLY_TEST_UNUSED_"); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Logger logs errors only, to nowhere, unless LOGTALLY_TEST_LOG is set
// (then everything, to stderr).
func Logger(name string) hclog.Logger {
	if os.Getenv("LOGTALLY_TEST_LOG") != "" {
		return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Debug})
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Error, Output: io.Discard})
}

// Start builds an app from Config(t, args...), starts it and stops it when
// the test ends.
func Start(t testing.TB, args ...string) *app.App {
	t.Helper()
	a, err := app.New(Config(t, args...), Logger("logtally"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = a.Stop(ctx)
	})
	return a
}

// SendAccessLines writes n combined-format lines of each ip, stamped ts,
// over one TCP connection to addr.
func SendAccessLines(t testing.TB, addr net.Addr, ts time.Time, n int, ips ...string) {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := bufio.NewWriterSize(c, 64<<10)
	stamp := ts.UTC().Format("02/Jan/2006:15:04:05 -0700")
	for _, ip := range ips {
		for range n {
			fmt.Fprintf(w, "%s - - [%s] \"GET / HTTP/1.1\" 200 12\n", ip, stamp)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// SendLines writes lines, each with a newline, over one TCP connection to
// addr.
func SendLines(t testing.TB, addr net.Addr, lines []string) {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := bufio.NewWriterSize(c, 64<<10)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// Eventually polls ok every 50ms until it holds, failing the test after
// timeout.
func Eventually(t testing.TB, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Metric is the value of the first series of name (counter or gauge) with
// the label pairs kv, 0 when there is none.
func Metric(t testing.TB, a *app.App, name string, kv ...string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i < len(kv); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == kv[i] && l.GetValue() == kv[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return 0
}

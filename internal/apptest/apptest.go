// Package apptest builds configurations and loggers for tests that run the
// whole logtally process in the test process (test/e2e, test/nasty).
package apptest

import (
	"flag"
	"io"
	"os"
	"testing"

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

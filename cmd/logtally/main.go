// Command logtally runs any logtally stage (-target), or all of them with an
// embedded NATS server, and the client subcommands top, replay, tail and bench.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/logtally/logtally/internal/app"
	"github.com/logtally/logtally/internal/bench"
	"github.com/logtally/logtally/internal/cli"
	"github.com/logtally/logtally/internal/config"
	"github.com/logtally/logtally/internal/obs"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `logtally: real-time network-log analytics on NATS JetStream

Usage:
  logtally [flags]              run the server (-target=all runs every stage with embedded NATS)
  logtally top [flags]          top IPs as a table with bars
  logtally replay [flags] FILE  send a log file (plain or .gz) through ingest
  logtally decisions list|ban|unban|watch  list, make, remove and follow bans
  logtally tail [flags] FILE... follow log files on this host (rotation, restarts) into ingest
  logtally bench [flags]        drive the all-in-one pipeline and report throughput
  logtally version              print the version

Run 'logtally -h' for server flags, 'logtally <command> -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // usage was asked for and printed
		}
		fmt.Fprintln(os.Stderr, "logtally:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "top":
			return cli.Top(ctx, args[1:], stdout, stderr)
		case "replay":
			return cli.Replay(ctx, args[1:], stdout, stderr)
		case "decisions":
			return cli.Decisions(ctx, args[1:], stdout, stderr)
		case "tail":
			return cli.Tail(ctx, args[1:], stdout, stderr)
		case "bench":
			return bench.Run(ctx, args[1:], stdout, stderr)
		case "version":
			fmt.Fprintln(stdout, versionString())
			return nil
		case "help":
			fmt.Fprint(stdout, usage)
			return nil
		default:
			fmt.Fprint(stderr, usage)
			return fmt.Errorf("unknown command %q", args[0])
		}
	}
	return serve(ctx, args, stderr)
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	var cfg app.Config
	fs := flag.NewFlagSet("logtally", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage, "\nServer flags (also LOGTALLY_<FLAG> in the environment, dots as underscores, or keys of -config.file):\n")
		fs.PrintDefaults()
	}
	cfg.RegisterFlags(fs)
	if err := config.Parse(fs, args, "LOGTALLY_"); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := cfg.Log.Validate(); err != nil {
		return err
	}
	log := obs.NewLogger(cfg.Log, stderr)
	a, err := app.New(cfg, log)
	if err != nil {
		return err
	}
	log.Info("starting logtally", "version", versionString(), "target", cfg.Target)
	if err := a.Start(ctx); err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		return errors.Join(err, a.Stop(stopCtx))
	}
	<-ctx.Done()
	log.Info("shutting down", "grace", cfg.ShutdownTimeout)
	stopCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return a.Stop(stopCtx)
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		v += " " + bi.GoVersion
	}
	return v
}

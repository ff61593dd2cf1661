// Package app assembles a logtally process from the targets it runs.
package app

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/logtally/logtally/internal/apiauth"
	"github.com/logtally/logtally/internal/config"
	"github.com/logtally/logtally/internal/natsconn"
	"github.com/logtally/logtally/internal/obs"
	"github.com/logtally/logtally/internal/topology"
	"github.com/logtally/logtally/services/aggregator"
	"github.com/logtally/logtally/services/detector"
	"github.com/logtally/logtally/services/export"
	"github.com/logtally/logtally/services/ingest"
	"github.com/logtally/logtally/services/parser"
	"github.com/logtally/logtally/services/query"
)

// Targets a process can run.
const (
	TargetAll        = "all"
	TargetIngest     = "ingest"
	TargetParser     = "parser"
	TargetAggregator = "aggregator"
	TargetQuery      = "query"
	TargetDetector   = "detector"
	TargetExport     = "export"
)

var allTargets = []string{TargetIngest, TargetParser, TargetAggregator, TargetQuery, TargetDetector, TargetExport}

// Config is the root configuration; each component registers its own flags.
type Config struct {
	Target          string        `yaml:"target"`
	ConfigFile      string        `yaml:"-"`
	DataDir         string        `yaml:"data_dir"`
	HTTPAddr        string        `yaml:"http_addr"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	Retention1m     time.Duration `yaml:"retention_1m"`
	RawMaxBytes     int64         `yaml:"raw_max_bytes"`
	RawMaxAge       time.Duration `yaml:"raw_max_age"`
	ParsedMaxAge    time.Duration `yaml:"parsed_max_age"`
	ParsedMaxBytes  int64         `yaml:"parsed_max_bytes"`
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	Retention1h     time.Duration `yaml:"retention_1h"`
	RulesFile       string        `yaml:"rules_file"`
	DecisionsMaxAge time.Duration `yaml:"decisions_max_age"`

	API        apiauth.Config    `yaml:"api"`
	Log        obs.LogConfig     `yaml:"log"`
	NATS       natsconn.Config   `yaml:"nats"`
	Ingest     ingest.Config     `yaml:"ingest"`
	Parser     parser.Config     `yaml:"parser"`
	Aggregator aggregator.Config `yaml:"aggregator"`
	Query      query.Config      `yaml:"query"`
	Detector   detector.Config   `yaml:"detector"`
	Export     export.Config     `yaml:"export"`
}

// RegisterFlags registers every flag of the binary.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.Target, "target", TargetAll, "what to run: all, or a comma list of ingest, parser, aggregator, query, detector, export")
	f.StringVar(&c.ConfigFile, config.FileFlag, "", "YAML config file; keys nest by the dots of flag names")
	f.StringVar(&c.DataDir, "data.dir", "./data", "directory of the embedded NATS server's JetStream data")
	f.StringVar(&c.HTTPAddr, "http.addr", ":8080", "HTTP address: API, ingest, /healthz, /readyz, /metrics, dashboard")
	f.DurationVar(&c.ShutdownTimeout, "shutdown.timeout", 30*time.Second, "grace period to drain, flush and ack on SIGTERM")
	f.DurationVar(&c.Retention1m, "retention.1m", 48*time.Hour, "how long 1-minute windows are kept")
	f.Int64Var(&c.RawMaxBytes, "raw.max-bytes", 1<<30, "bytes of raw batches waiting for a parser before ingest pushes back (0: no bound)")
	f.DurationVar(&c.Retention1h, "retention.1h", 90*24*time.Hour, "how long 1-hour windows are kept")
	f.DurationVar(&c.RawMaxAge, "raw.max-age", 0, "drop raw batches no parser took within this long (0: never); dropped batches are reported as lost by the aggregators")
	f.DurationVar(&c.ParsedMaxAge, "parsed.max-age", 24*time.Hour, "keep parsed batches no aggregator counted this long (0: no limit); counted ones are purged anyway, lost ones are reported")
	f.Int64Var(&c.ParsedMaxBytes, "parsed.max-bytes", 0, "bytes of parsed batches not yet counted before parsers are pushed back (0: no bound)")
	f.DurationVar(&c.DuplicateWindow, "nats.duplicate-window", 2*time.Minute, "JetStream duplicate window of the streams: publish retries within it are stored once; retries past it are counted (logtally_ingest_retries_past_dedup_window_total)")
	f.StringVar(&c.RulesFile, "rules.file", "", "detector rules (YAML, docs/rules.md), reloaded when it changes; the query target reads its allow list and mode")
	f.DurationVar(&c.DecisionsMaxAge, "decisions.history-max-age", 90*24*time.Hour, "how long the audit trail of decisions (stream LOGTALLY_DECISIONS) is kept")
	c.API.RegisterFlags(f)
	c.Log.RegisterFlags(f)
	c.NATS.RegisterFlags(f)
	c.Ingest.RegisterFlags(f)
	c.Parser.RegisterFlags(f)
	c.Aggregator.RegisterFlags(f)
	c.Query.RegisterFlags(f)
	c.Detector.RegisterFlags(f)
	c.Export.RegisterFlags(f)
}

// Targets returns the components to run.
func (c *Config) Targets() ([]string, error) {
	var out []string
	for _, t := range strings.Split(c.Target, ",") {
		t = strings.TrimSpace(t)
		switch {
		case t == TargetAll:
			return slices.Clone(allTargets), nil
		case slices.Contains(allTargets, t):
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		default:
			return nil, fmt.Errorf("unknown target %q (want all, ingest, parser, aggregator, query, detector, export)", t)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("target is empty")
	}
	return out, nil
}

// Runs reports whether target t is part of this process.
func (c *Config) Runs(t string) bool {
	ts, err := c.Targets()
	return err == nil && slices.Contains(ts, t)
}

// Topology derives the JetStream layout from the configuration.
func (c *Config) Topology() topology.Config {
	t := topology.Defaults()
	t.Replicas = c.NATS.Replicas
	t.Partitions = c.Parser.Partitions
	t.Resolutions[0].Retention = c.Retention1m
	t.Resolutions[1].Retention = c.Retention1h
	t.RawMaxBytes = c.RawMaxBytes
	t.RawMaxAge = c.RawMaxAge
	t.ParsedMaxAge = c.ParsedMaxAge
	t.ParsedMaxBytes = c.ParsedMaxBytes
	t.DuplicateWindow = c.DuplicateWindow
	t.DecisionsMaxAge = c.DecisionsMaxAge
	return t
}

// Validate checks the configuration of the targets that run.
func (c *Config) Validate() error {
	var errs []error
	if _, err := c.Targets(); err != nil {
		errs = append(errs, err)
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown.timeout must be positive, got %s", c.ShutdownTimeout))
	}
	if c.Retention1m < time.Hour {
		errs = append(errs, fmt.Errorf("retention.1m must be at least 1h, got %s", c.Retention1m))
	}
	if c.RawMaxBytes != 0 && c.RawMaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("raw.max-bytes must be 0 (no bound) or at least 1 MiB, got %d", c.RawMaxBytes))
	}
	if c.RawMaxAge < 0 || c.ParsedMaxAge < 0 || c.ParsedMaxBytes < 0 {
		errs = append(errs, errors.New("raw.max-age, parsed.max-age and parsed.max-bytes must not be negative"))
	}
	if c.ParsedMaxBytes != 0 && c.ParsedMaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("parsed.max-bytes must be 0 (no bound) or at least 1 MiB, got %d", c.ParsedMaxBytes))
	}
	if c.DuplicateWindow < time.Second {
		errs = append(errs, fmt.Errorf("nats.duplicate-window must be at least 1s, got %s", c.DuplicateWindow))
	}
	for _, lim := range []struct {
		name string
		age  time.Duration
	}{{"parsed.max-age", c.ParsedMaxAge}, {"raw.max-age", c.RawMaxAge}} {
		if lim.age > 0 && c.DuplicateWindow > lim.age {
			errs = append(errs, fmt.Errorf("nats.duplicate-window (%s) must not exceed %s (%s)", c.DuplicateWindow, lim.name, lim.age))
		}
	}
	if c.Retention1h < c.Retention1m {
		errs = append(errs, fmt.Errorf("retention.1h (%s) must not be shorter than retention.1m (%s)", c.Retention1h, c.Retention1m))
	}
	errs = append(errs, c.Log.Validate(), c.NATS.Validate(), c.Parser.Validate(), c.API.Validate())
	if c.Runs(TargetIngest) {
		errs = append(errs, c.Ingest.Validate())
	}
	if c.Runs(TargetAggregator) {
		errs = append(errs, c.Aggregator.Validate())
	}
	if c.Runs(TargetQuery) {
		errs = append(errs, c.Query.Validate())
	}
	if c.Runs(TargetDetector) {
		errs = append(errs, c.Detector.Validate())
	}
	if c.Runs(TargetExport) {
		errs = append(errs, c.Export.Validate())
	}
	return errors.Join(errs...)
}

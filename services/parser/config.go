package parser

import (
	"errors"
	"flag"
	"fmt"
	"runtime"
	"strings"
	"time"
)

// Config of the parser stage.
type Config struct {
	Partitions     int           `yaml:"partitions"`
	Workers        int           `yaml:"workers"`
	AckWait        time.Duration `yaml:"ack_wait"`
	MaxAckPending  int           `yaml:"max_ack_pending"`
	JSONIPFields   string        `yaml:"json_ip_fields"`
	JSONTimeFields string        `yaml:"json_time_fields"`
	MaxFuture      time.Duration `yaml:"max_future"`
	// Dims lists the fields counted besides the IP (internal/dims).
	Dims       string `yaml:"dims"`
	KeepQuery  bool   `yaml:"keep_query"`
	UAPerBatch int    `yaml:"ua_per_batch"`
}

// RegisterFlags registers the parser.* flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.IntVar(&c.Partitions, "parser.partitions", 32, "partitions of logs.parsed (fixed when the stream is first created)")
	f.IntVar(&c.Workers, "parser.workers", runtime.GOMAXPROCS(0), "raw batches parsed concurrently by this instance")
	f.DurationVar(&c.AckWait, "parser.ack-wait", 30*time.Second, "time before an unacknowledged raw batch is delivered again; keep well under the streams' duplicate window")
	f.IntVar(&c.MaxAckPending, "parser.max-ack-pending", 256, "raw batches in flight across all parser instances")
	f.StringVar(&c.JSONIPFields, "parser.json.ip-fields", "", "comma-separated JSON field names tried for the client IP (empty: built-in list)")
	f.StringVar(&c.JSONTimeFields, "parser.json.time-fields", "", "comma-separated JSON field names tried for the timestamp (empty: built-in list)")
	f.DurationVar(&c.MaxFuture, "parser.max-future", 24*time.Hour, "timestamps later than the receive time plus this are dead letters")
	f.StringVar(&c.Dims, "parser.dims", "all", "fields counted besides the client IP: all, none, or a comma list of status, method, path, vhost, ua, os, program, event")
	f.BoolVar(&c.KeepQuery, "parser.dims.keep-query", false, "count paths with their query string (default: the query string is dropped)")
	f.IntVar(&c.UAPerBatch, "parser.dims.ua-per-batch", 256, "distinct user agents classified per raw batch; later new ones count as family \"Unparsed\" (logtally_parser_ua_unparsed_total)")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Partitions < 1 || c.Partitions > 4096 {
		errs = append(errs, fmt.Errorf("parser.partitions must be between 1 and 4096, got %d", c.Partitions))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("parser.workers must be at least 1, got %d", c.Workers))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("parser.ack-wait must be at least 1s, got %s", c.AckWait))
	}
	if c.MaxAckPending < 1 {
		errs = append(errs, fmt.Errorf("parser.max-ack-pending must be at least 1, got %d", c.MaxAckPending))
	}
	if c.MaxFuture <= 0 {
		errs = append(errs, fmt.Errorf("parser.max-future must be positive, got %s", c.MaxFuture))
	}
	if _, err := parseDimsList(c.Dims); err != nil {
		errs = append(errs, err)
	}
	if c.UAPerBatch < 0 {
		errs = append(errs, fmt.Errorf("parser.dims.ua-per-batch must not be negative, got %d", c.UAPerBatch))
	}
	return errors.Join(errs...)
}

// dimsConfig returns what Validate accepted.
func (c *Config) dimsConfig() *dimsConfig {
	on, _ := parseDimsList(c.Dims)
	n := c.UAPerBatch
	if n == 0 {
		n = 256
	}
	return &dimsConfig{on: on, keepQuery: c.KeepQuery, uaPerBatch: n}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

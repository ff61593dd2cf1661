package query

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/logtally/logtally/internal/geoip"
	"github.com/logtally/logtally/internal/windows"
)

// Config of the query stage.
type Config struct {
	// GRPCAddr is the listen address of the gRPC QueryService.
	GRPCAddr string `yaml:"grpc_addr"`
	// MaxN is the largest n a top query may ask for.
	MaxN int `yaml:"max_n"`
	// MaxRange is the longest range a query may cover.
	MaxRange time.Duration `yaml:"max_range"`
	// MaxPoints is the largest number of points in one series.
	MaxPoints int `yaml:"max_points"`
	// Timeout bounds the work of one query (not of a WatchTop stream).
	Timeout time.Duration `yaml:"timeout"`
	// CacheBytes bounds the (estimated) memory of decoded manifests and
	// chunks kept in the LRU cache.
	CacheBytes int64 `yaml:"cache_bytes"`
	// FetchConcurrency bounds the concurrent KV gets of one query.
	FetchConcurrency int `yaml:"fetch_concurrency"`
	// DefaultLast is the range used when a query gives none.
	DefaultLast time.Duration `yaml:"default_last"`
	// BouncerKeys are the API keys bouncers present in X-Api-Key.
	BouncerKeys []string `yaml:"bouncer_keys"`
	// DecisionsWatchBuffer is how many changes a WatchDecisions stream
	// may fall behind before it is ended (ResourceExhausted).
	DecisionsWatchBuffer int `yaml:"decisions_watch_buffer"`
	// GeoIP names the ASN and country databases (by=asn, by=country and
	// the asn=, country= filters of /api/v1/top).
	GeoIP geoip.Config `yaml:"geoip"`
	// RulesFile is the detector's rules file, read for its allow list and
	// mode (set from the root config's -rules.file).
	RulesFile string `yaml:"-"`
}

// RegisterFlags registers the grpc.addr, query.* and geoip.* flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.GRPCAddr, "grpc.addr", ":9090", "listen address of the gRPC QueryService (with reflection and health)")
	f.IntVar(&c.MaxN, "query.max-n", 1000, "largest n of a top query")
	f.Var(newDaysValue(&c.MaxRange, 400*24*time.Hour), "query.max-range", "longest range of a query (Go duration, or days such as 400d)")
	f.IntVar(&c.MaxPoints, "query.max-points", 10000, "largest number of points of one IP series")
	f.DurationVar(&c.Timeout, "query.timeout", 10*time.Second, "time limit of one query")
	f.Int64Var(&c.CacheBytes, "query.cache-bytes", 256<<20, "memory bound (estimated bytes) of the cache of decoded window manifests and chunks")
	f.IntVar(&c.FetchConcurrency, "query.fetch-concurrency", 16, "concurrent KV gets of one query")
	f.Var(newDaysValue(&c.DefaultLast, 15*time.Minute), "query.default-last", "range of a query that gives neither last nor from/to")
	f.IntVar(&c.DecisionsWatchBuffer, "decisions.watch-buffer", 4096, "changes a gRPC WatchDecisions stream may fall behind before it is ended with RESOURCE_EXHAUSTED")
	f.Func("decisions.bouncer-key", "API key of a bouncer (X-Api-Key of /v1/decisions…; repeatable or a comma list); without one the bouncer API answers 403", func(v string) error {
		for _, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				c.BouncerKeys = append(c.BouncerKeys, k)
			}
		}
		return nil
	})
	c.GeoIP.RegisterFlags(f)
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.GRPCAddr == "" {
		errs = append(errs, errors.New("grpc.addr must not be empty"))
	}
	if c.MaxN < 1 {
		errs = append(errs, fmt.Errorf("query.max-n must be at least 1, got %d", c.MaxN))
	}
	if c.MaxRange < time.Minute {
		errs = append(errs, fmt.Errorf("query.max-range must be at least 1m, got %s", windows.FormatDuration(c.MaxRange)))
	}
	if c.MaxPoints < 1 {
		errs = append(errs, fmt.Errorf("query.max-points must be at least 1, got %d", c.MaxPoints))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("query.timeout must be positive, got %s", c.Timeout))
	}
	if c.DecisionsWatchBuffer < 1 {
		errs = append(errs, fmt.Errorf("decisions.watch-buffer must be at least 1, got %d", c.DecisionsWatchBuffer))
	}
	if c.CacheBytes < 0 {
		errs = append(errs, fmt.Errorf("query.cache-bytes must not be negative, got %d", c.CacheBytes))
	}
	if c.FetchConcurrency < 1 {
		errs = append(errs, fmt.Errorf("query.fetch-concurrency must be at least 1, got %d", c.FetchConcurrency))
	}
	if c.DefaultLast <= 0 || c.DefaultLast%time.Minute != 0 {
		errs = append(errs, fmt.Errorf("query.default-last must be a positive whole number of minutes, got %s", windows.FormatDuration(c.DefaultLast)))
	} else if c.DefaultLast > c.MaxRange {
		errs = append(errs, fmt.Errorf("query.default-last %s is longer than query.max-range %s", windows.FormatDuration(c.DefaultLast), windows.FormatDuration(c.MaxRange)))
	}
	if err := c.GeoIP.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// readerConfig is the configuration of the read model.
func (c *Config) readerConfig() windows.Config {
	return windows.Config{
		Limits:           windows.Limits{MaxN: c.MaxN, MaxRange: c.MaxRange, MaxPoints: c.MaxPoints},
		CacheBytes:       c.CacheBytes,
		FetchConcurrency: c.FetchConcurrency,
		Timeout:          c.Timeout,
	}
}

// DefaultConfig returns the flag defaults.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("query", flag.ContinueOnError))
	return c
}

// daysValue is a flag.Value for durations that also accepts a days suffix.
type daysValue struct{ d *time.Duration }

func newDaysValue(d *time.Duration, def time.Duration) *daysValue {
	*d = def
	return &daysValue{d: d}
}

func (v *daysValue) String() string {
	if v == nil || v.d == nil {
		return ""
	}
	return windows.FormatDuration(*v.d)
}

func (v *daysValue) Set(s string) error {
	d, err := windows.ParseDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

package aggregator

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Config of the aggregator stage.
type Config struct {
	FlushInterval    time.Duration `yaml:"flush_interval"`
	Heartbeat        time.Duration `yaml:"heartbeat"`
	AllowedLateness  time.Duration `yaml:"allowed_lateness"`
	PurgeEvery       int           `yaml:"purge_every"`
	MaxCachedWindows int           `yaml:"max_cached_windows"`
}

// RegisterFlags registers the aggregator.* flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.DurationVar(&c.FlushInterval, "aggregator.flush-interval", 500*time.Millisecond, "how often in-memory counts are written to the KV buckets (and the checkpoint advanced)")
	f.DurationVar(&c.Heartbeat, "aggregator.heartbeat", time.Second, "membership heartbeat and rebalance interval; must be well under the member TTL")
	f.DurationVar(&c.AllowedLateness, "aggregator.allowed-lateness", 48*time.Hour, "records older than the partition's event-time watermark minus this go to the late subject; at most the shortest window retention")
	f.IntVar(&c.PurgeEvery, "aggregator.purge-every", 10, "purge a partition's parsed messages up to its checkpoint every N flushes (0 keeps them until the stream's max age)")
	f.IntVar(&c.MaxCachedWindows, "aggregator.max-cached-windows", 4096, "clean windows kept in memory per partition before the oldest are evicted")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("aggregator.flush-interval must be positive, got %s", c.FlushInterval))
	}
	if c.Heartbeat <= 0 {
		errs = append(errs, fmt.Errorf("aggregator.heartbeat must be positive, got %s", c.Heartbeat))
	}
	if c.AllowedLateness <= 0 {
		errs = append(errs, fmt.Errorf("aggregator.allowed-lateness must be positive, got %s", c.AllowedLateness))
	}
	if c.PurgeEvery < 0 {
		errs = append(errs, fmt.Errorf("aggregator.purge-every must not be negative, got %d", c.PurgeEvery))
	}
	if c.MaxCachedWindows < 1 {
		errs = append(errs, fmt.Errorf("aggregator.max-cached-windows must be at least 1, got %d", c.MaxCachedWindows))
	}
	return errors.Join(errs...)
}

package aggregator

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Config of the aggregator stage.
type Config struct {
	FlushInterval     time.Duration `yaml:"flush_interval"`
	Heartbeat         time.Duration `yaml:"heartbeat"`
	PurgeEvery        int           `yaml:"purge_every"`
	MaxOpenWindows    int           `yaml:"max_open_windows"`
	MaxPendingEntries int           `yaml:"max_pending_entries"`
	ChunkBytes        int           `yaml:"chunk_bytes"`
	GapCheckInterval  time.Duration `yaml:"gap_check_interval"`
	// DimsTopK bounds each field of a closed dims window (0: unbounded).
	DimsTopK  int           `yaml:"dims_top_k"`
	DimsGrace time.Duration `yaml:"dims_grace"`
}

// RegisterFlags registers the aggregator.* flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.DurationVar(&c.FlushInterval, "aggregator.flush-interval", 500*time.Millisecond, "how often in-memory counts are written to the KV buckets (and the checkpoint advanced)")
	f.DurationVar(&c.Heartbeat, "aggregator.heartbeat", time.Second, "membership heartbeat and rebalance interval; must be well under the member TTL")
	f.IntVar(&c.PurgeEvery, "aggregator.purge-every", 10, "purge a partition's parsed messages up to its checkpoint every N flushes (0 keeps them until the stream's max age)")
	f.IntVar(&c.MaxOpenWindows, "aggregator.max-open-windows", 1024, "windows a partition keeps open in memory (their manifests, never their runs); past it the partition flushes and the least recently used clean ones are evicted")
	f.IntVar(&c.MaxPendingEntries, "aggregator.max-pending-entries", 128<<10, "uncommitted (window, IP) entries a partition holds before it flushes early, bounding memory under bursts")
	f.IntVar(&c.ChunkBytes, "aggregator.chunk-bytes", 256<<10, "target size of a window chunk value (at most 256 KiB; capped to half the server's max_payload)")
	f.IntVar(&c.DimsTopK, "aggregator.dims.top-k", 1000, "values kept per field (path, status, ...) and partition in a closed window, the rest summed exactly into the field's \"other\"; 0 keeps every value (docs/fields.md)")
	f.DurationVar(&c.DimsGrace, "aggregator.dims.grace", 10*time.Minute, "how far the partition's event time must be past a field window's end before it is cut to its top values")
	f.DurationVar(&c.GapCheckInterval, "aggregator.gap-check-interval", 5*time.Second, "how often the raw and parsed streams are sampled to find raw batches that were lost before they were counted")
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
	if c.PurgeEvery < 0 {
		errs = append(errs, fmt.Errorf("aggregator.purge-every must not be negative, got %d", c.PurgeEvery))
	}
	if c.MaxOpenWindows < 1 {
		errs = append(errs, fmt.Errorf("aggregator.max-open-windows must be at least 1, got %d", c.MaxOpenWindows))
	}
	if c.MaxPendingEntries < 1 {
		errs = append(errs, fmt.Errorf("aggregator.max-pending-entries must be at least 1, got %d", c.MaxPendingEntries))
	}
	if c.ChunkBytes < 4<<10 || c.ChunkBytes > 256<<10 {
		errs = append(errs, fmt.Errorf("aggregator.chunk-bytes must be between 4 KiB and 256 KiB, got %d", c.ChunkBytes))
	}
	if c.GapCheckInterval <= 0 {
		errs = append(errs, fmt.Errorf("aggregator.gap-check-interval must be positive, got %s", c.GapCheckInterval))
	}
	if c.DimsTopK < 0 {
		errs = append(errs, fmt.Errorf("aggregator.dims.top-k must not be negative, got %d", c.DimsTopK))
	}
	if c.DimsGrace < 0 {
		errs = append(errs, fmt.Errorf("aggregator.dims.grace must not be negative, got %s", c.DimsGrace))
	}
	return errors.Join(errs...)
}

package export

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Config of the export stage. With neither sink set the stage runs and
// exports nothing.
type Config struct {
	PostgresDSN string `yaml:"postgres_dsn"`
	ParquetDir  string `yaml:"parquet_dir"`
	// Interval is how often changed windows are exported: changes within
	// it coalesce into one write per window.
	Interval time.Duration `yaml:"interval"`
	// CloseAfter is how long after its end an hour's Parquet files are
	// first written; later changes rewrite them.
	CloseAfter time.Duration `yaml:"parquet_close_after"`
}

// RegisterFlags registers the export.* flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.PostgresDSN, "export.postgres.dsn", "", "PostgreSQL connection string (postgres://user:pass@host:5432/db or key=value form); the export target upserts every window into logtally_*_counts tables, created when absent (docs/export.md)")
	f.StringVar(&c.ParquetDir, "export.parquet.dir", "", "directory of Parquet files, one per closed hour, resolution and table: <dir>/<table>/<resolution>/<YYYY-MM-DDTHH>.parquet (docs/export.md)")
	f.DurationVar(&c.Interval, "export.interval", time.Second, "how often changed windows are exported; changes within it coalesce into one write per window")
	f.DurationVar(&c.CloseAfter, "export.parquet.close-after", 15*time.Minute, "how long after an hour ends its Parquet files are first written; windows changed later (late lines, the cut of field windows) rewrite them")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.PostgresDSN != "" {
		if _, err := pgxpool.ParseConfig(c.PostgresDSN); err != nil {
			// The parse error may quote the DSN, password included.
			errs = append(errs, errors.New("export.postgres.dsn is not a PostgreSQL connection string (postgres://user:pass@host:5432/db or host=... dbname=...)"))
		}
	}
	if c.Interval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("export.interval must be at least 10ms, got %s", c.Interval))
	}
	if c.CloseAfter < 0 {
		errs = append(errs, fmt.Errorf("export.parquet.close-after must not be negative, got %s", c.CloseAfter))
	}
	return errors.Join(errs...)
}

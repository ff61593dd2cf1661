package detector

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Config of the detector stage.
type Config struct {
	// RulesFile is the rules file (shared with the query target, which
	// reads its allow list); empty means no rules.
	RulesFile    string        `yaml:"rules_file"`
	Interval     time.Duration `yaml:"interval"`
	MaxOffenders int           `yaml:"max_offenders"`
	MaxNewPerRun int           `yaml:"max_new_per_run"`
	NginxFile    string        `yaml:"nginx_file"`
	WebhookURL   string        `yaml:"webhook_url"`
}

// RegisterFlags registers the detector.* flags. -rules.file is the root
// config's (the query target reads it too).
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.DurationVar(&c.Interval, "detector.interval", time.Second, "how often every rule is evaluated")
	f.IntVar(&c.MaxOffenders, "detector.max-offenders", 10000, "keys over a rule's threshold read per evaluation; more are counted in logtally_detector_offenders_truncated_total and decided in later evaluations")
	f.StringVar(&c.NginxFile, "decisions.nginx-file", "", "keep this file an nginx geo include of the active decisions (\"<cidr> 1;\" lines), rewritten atomically on change")
	f.StringVar(&c.WebhookURL, "decisions.webhook-url", "", "POST each new decision as JSON here (retries with backoff; never delays detection)")
	f.IntVar(&c.MaxNewPerRun, "detector.max-new-per-run", 1000, "new decisions per evaluation of all rules (the rest wait for the next one; counted in logtally_detector_rate_limited_total)")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Interval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("detector.interval must be at least 100ms, got %s", c.Interval))
	}
	if c.MaxOffenders < 1 {
		errs = append(errs, fmt.Errorf("detector.max-offenders must be at least 1, got %d", c.MaxOffenders))
	}
	if c.MaxNewPerRun < 1 {
		errs = append(errs, fmt.Errorf("detector.max-new-per-run must be at least 1, got %d", c.MaxNewPerRun))
	}
	return errors.Join(errs...)
}

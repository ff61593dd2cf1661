// Package topology names every JetStream stream, subject and key-value bucket
// that logtally uses and creates them idempotently, so any target can start
// first and nothing is set up by hand.
package topology

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Streams and subjects.
const (
	RawStream    = "LOGTALLY_RAW"
	RawSubjects  = "logs.raw.>"
	RawPrefix    = "logs.raw."
	ParsedStream = "LOGTALLY_PARSED"
	ParsedPrefix = "logs.parsed."
	DeadStream   = "LOGTALLY_DEAD"
	DeadPrefix   = "logs.dead."
	LateStream   = "LOGTALLY_LATE"
	LatePrefix   = "logs.late."

	// ParserConsumer is the shared durable consumer that parser replicas split.
	ParserConsumer = "parser"

	StateBucket   = "logtally_state"
	MembersBucket = "logtally_members"

	// partitionsKey is stream metadata on ParsedStream recording P.
	partitionsKey = "logtally.partitions"
)

// Resolution is one event-time window size with its own bucket and retention.
type Resolution struct {
	Name      string        // "1m"
	Size      time.Duration // window length
	Retention time.Duration // bucket TTL
}

// Bucket is the KV bucket holding this resolution's windows.
func (r Resolution) Bucket() string { return "logtally_counts_" + r.Name }

// DefaultResolutions are 1-minute windows kept 48h and 1-hour windows kept 90d.
func DefaultResolutions() []Resolution {
	return []Resolution{
		{Name: "1m", Size: time.Minute, Retention: 48 * time.Hour},
		{Name: "1h", Size: time.Hour, Retention: 90 * 24 * time.Hour},
	}
}

// Config describes the shape of the JetStream assets.
type Config struct {
	Replicas        int
	Partitions      int
	Resolutions     []Resolution
	DuplicateWindow time.Duration
	ParsedMaxAge    time.Duration
	DeadMaxAge      time.Duration
	DeadMaxBytes    int64
	// RawMaxBytes bounds the backlog of raw batches not yet parsed (<= 0:
	// no bound). When it is full the stream refuses new batches, ingest
	// retries them and pushes back on its senders: a parser outage or a
	// flood of bad lines fills a bounded disk, not an unbounded one.
	RawMaxBytes int64
	MemberTTL   time.Duration
}

// Defaults returns the configuration used when nothing else is set.
func Defaults() Config {
	return Config{
		Replicas:        1,
		Partitions:      32,
		Resolutions:     DefaultResolutions(),
		DuplicateWindow: 2 * time.Minute,
		ParsedMaxAge:    24 * time.Hour,
		DeadMaxAge:      7 * 24 * time.Hour,
		DeadMaxBytes:    1 << 30,
		RawMaxBytes:     1 << 30,
		MemberTTL:       10 * time.Second,
	}
}

func rawMaxBytes(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// ParsedSubject is the subject of partition p.
func ParsedSubject(p int) string { return ParsedPrefix + strconv.Itoa(p) }

// LateSubject is the subject for late records of partition p.
func LateSubject(p int) string { return LatePrefix + strconv.Itoa(p) }

// Ensure creates or updates every stream and bucket. It returns the
// effective number of partitions: P is fixed when the parsed stream is
// created, so an existing stream's value wins over cfg.Partitions.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config) (int, error) {
	if cfg.Partitions < 1 {
		return 0, fmt.Errorf("partitions must be at least 1, got %d", cfg.Partitions)
	}
	partitions := cfg.Partitions
	if s, err := js.Stream(ctx, ParsedStream); err == nil {
		if v, ok := s.CachedInfo().Config.Metadata[partitionsKey]; ok {
			n, perr := strconv.Atoi(v)
			if perr != nil || n < 1 {
				return 0, fmt.Errorf("stream %s has bad %s metadata %q", ParsedStream, partitionsKey, v)
			}
			partitions = n
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, fmt.Errorf("look up stream %s: %w", ParsedStream, err)
	}

	streams := []jetstream.StreamConfig{
		{
			Name:        RawStream,
			Description: "raw log line batches from ingest, consumed by the parser",
			Subjects:    []string{RawSubjects},
			Retention:   jetstream.WorkQueuePolicy,
			MaxBytes:    rawMaxBytes(cfg.RawMaxBytes),
			Discard:     jetstream.DiscardNew,
			Duplicates:  cfg.DuplicateWindow,
			Replicas:    cfg.Replicas,
		},
		{
			Name:        ParsedStream,
			Description: "parsed record batches partitioned by client IP hash",
			Subjects:    []string{ParsedPrefix + "*"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      cfg.ParsedMaxAge,
			Duplicates:  cfg.DuplicateWindow,
			Replicas:    cfg.Replicas,
			Metadata:    map[string]string{partitionsKey: strconv.Itoa(partitions)},
		},
		{
			Name:        DeadStream,
			Description: "rejected lines with the reason",
			Subjects:    []string{DeadPrefix + ">"},
			MaxAge:      cfg.DeadMaxAge,
			MaxBytes:    cfg.DeadMaxBytes,
			Discard:     jetstream.DiscardOld,
			Duplicates:  cfg.DuplicateWindow,
			Replicas:    cfg.Replicas,
		},
		{
			Name:        LateStream,
			Description: "records older than the retained windows",
			Subjects:    []string{LatePrefix + ">"},
			MaxAge:      cfg.DeadMaxAge,
			MaxBytes:    cfg.DeadMaxBytes,
			Discard:     jetstream.DiscardOld,
			Duplicates:  cfg.DuplicateWindow,
			Replicas:    cfg.Replicas,
		},
	}
	for _, sc := range streams {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return 0, fmt.Errorf("create stream %s: %w", sc.Name, err)
		}
	}

	buckets := []jetstream.KeyValueConfig{
		{Bucket: StateBucket, Description: "aggregator checkpoints per partition", History: 1, Replicas: cfg.Replicas},
		{Bucket: MembersBucket, Description: "aggregator membership and partition leases", History: 1, TTL: cfg.MemberTTL, Replicas: cfg.Replicas},
	}
	for _, r := range cfg.Resolutions {
		buckets = append(buckets, jetstream.KeyValueConfig{
			Bucket:      r.Bucket(),
			Description: fmt.Sprintf("exact per-IP counts in %s windows, one key per window and partition", r.Name),
			History:     1,
			TTL:         r.Retention,
			Replicas:    cfg.Replicas,
		})
	}
	for _, bc := range buckets {
		if _, err := js.CreateOrUpdateKeyValue(ctx, bc); err != nil {
			return 0, fmt.Errorf("create bucket %s: %w", bc.Bucket, err)
		}
	}
	return partitions, nil
}

// Package topology names every JetStream stream, subject and key-value bucket
// that logtally uses and creates them idempotently, so any target can start
// first and nothing is set up by hand.
package topology

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
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

	// ParserConsumer is the shared durable consumer that parser replicas split.
	ParserConsumer = "parser"

	StateBucket   = "logtally_state"
	MembersBucket = "logtally_members"

	// DecisionsBucket holds one key per active decision, with its TTL;
	// DecisionsStream is their audit trail.
	DecisionsBucket        = "logtally_decisions"
	DecisionsStream        = "LOGTALLY_DECISIONS"
	DecisionsHistoryPrefix = "decisions.history."

	// partitionsKey is stream metadata on ParsedStream recording P.
	partitionsKey = "logtally.partitions"
)

// Resolution is one event-time window size with its own bucket and retention.
type Resolution struct {
	Name      string        // "1m"
	Size      time.Duration // window length
	Retention time.Duration // bucket TTL
	// Dataset is what the windows count: "" for per-IP counts, DimsDataset
	// for the per-value counts of the other fields (internal/dims).
	Dataset string
}

// DimsDataset names the windows of the fields beyond the client IP
// (status, method, path, ...): same format, keys of internal/dims instead
// of addresses.
const DimsDataset = "dims"

// Bucket is the KV bucket holding this resolution's windows.
func (r Resolution) Bucket() string {
	if r.Dataset != "" {
		return "logtally_" + r.Dataset + "_" + r.Name
	}
	return "logtally_counts_" + r.Name
}

// WithDataset returns rs with each resolution counting dataset d instead.
func WithDataset(rs []Resolution, d string) []Resolution {
	out := make([]Resolution, len(rs))
	for i, r := range rs {
		r.Dataset = d
		out[i] = r
	}
	return out
}

// NamesBucket maps the hashed keys of long field values (paths, virtual
// hosts, user agents) back to their text: key <hex of the 15 key bytes>,
// value the text. Values are rewritten by parsers at least daily while in
// use, and kept NamesMargin longer than the longest window retention.
const NamesBucket = "logtally_names"

// NamesMargin is how much longer a name is kept than the windows that may
// name it.
const NamesMargin = 48 * time.Hour

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
	// ParsedMaxAge and ParsedMaxBytes bound the parsed stream (0: no
	// bound). Messages the aggregators have counted are purged, so these
	// only bite when aggregators stay away; a partition that then finds
	// messages gone reports them (logtally_aggregator_lost_batches_total).
	// A byte bound pushes back instead: a full stream refuses the parsers'
	// publishes, the raw backlog grows and ingest slows its senders.
	ParsedMaxAge   time.Duration
	ParsedMaxBytes int64
	DeadMaxAge     time.Duration
	// DecisionsMaxAge is how long the decisions' audit trail is kept.
	DecisionsMaxAge time.Duration
	DeadMaxBytes    int64
	// RawMaxBytes bounds the backlog of raw batches not yet parsed (<= 0:
	// no bound). When it is full the stream refuses new batches, ingest
	// retries them and pushes back on its senders: a parser outage or a
	// flood of bad lines fills a bounded disk, not an unbounded one.
	RawMaxBytes int64
	// RawMaxAge drops raw batches no parser took in time (0: never).
	RawMaxAge time.Duration
	MemberTTL time.Duration
	// MarkerTTL is how long a counts bucket keeps the marker of a window
	// that expired, so that watchers see it go.
	MarkerTTL time.Duration
}

// Defaults returns the configuration used when nothing else is set.
func Defaults() Config {
	return Config{
		Replicas:        1,
		Partitions:      32,
		Resolutions:     DefaultResolutions(),
		DuplicateWindow: 2 * time.Minute,
		ParsedMaxAge:    24 * time.Hour,
		ParsedMaxBytes:  0,
		DeadMaxAge:      7 * 24 * time.Hour,
		DecisionsMaxAge: 90 * 24 * time.Hour,
		DeadMaxBytes:    1 << 30,
		RawMaxBytes:     1 << 30,
		MemberTTL:       10 * time.Second,
		MarkerTTL:       15 * time.Minute,
	}
}

func limit(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// ParsedSubject is the subject of partition p.
func ParsedSubject(p int) string { return ParsedPrefix + strconv.Itoa(p) }

// Streams returns the configurations of every stream except the KV
// buckets', for partitions P.
func (cfg Config) Streams(partitions int) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name:        RawStream,
			Description: "raw log line batches from ingest, consumed by the parser",
			Subjects:    []string{RawSubjects},
			Retention:   jetstream.WorkQueuePolicy,
			MaxBytes:    limit(cfg.RawMaxBytes),
			MaxAge:      cfg.RawMaxAge,
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
			MaxBytes:    limit(cfg.ParsedMaxBytes),
			Discard:     jetstream.DiscardNew,
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
			Name:        DecisionsStream,
			Description: "audit trail of decisions: decisions.history.<new|deleted|expired>.<rule>",
			Subjects:    []string{DecisionsHistoryPrefix + ">"},
			MaxAge:      cfg.DecisionsMaxAge,
			Discard:     jetstream.DiscardOld,
			Duplicates:  cfg.DuplicateWindow,
			Replicas:    cfg.Replicas,
		},
	}
}

// Buckets returns the stream configurations of every KV bucket. The
// counts buckets allow atomic batches (a window's chunks and manifest are
// written together) and per-message TTLs with expiry markers (watchers see
// a window expire).
func (cfg Config) Buckets() []jetstream.StreamConfig {
	out := []jetstream.StreamConfig{
		kvStream(StateBucket, "aggregator checkpoints per partition", 0, cfg.Replicas),
		kvStream(MembersBucket, "aggregator membership and partition leases", cfg.MemberTTL, cfg.Replicas),
	}
	dec := kvStream(DecisionsBucket, "active decisions d.<rule>.<key> (TTL: the ban) and offences o.<rule>.<key>", 0, cfg.Replicas)
	dec.AllowMsgTTL = true
	dec.SubjectDeleteMarkerTTL = max(cfg.MarkerTTL, time.Second)
	out = append(out, dec)
	var longest time.Duration
	for _, r := range append(slices.Clone(cfg.Resolutions), WithDataset(cfg.Resolutions, DimsDataset)...) {
		what := "exact per-IP counts"
		if r.Dataset == DimsDataset {
			what = "exact per-value counts of status, method, path, vhost, user agent, program and event"
		}
		sc := kvStream(r.Bucket(), fmt.Sprintf("%s in %s windows: manifest <start>.<p>, chunks <start>.<p>.<slot>", what, r.Name), r.Retention, cfg.Replicas)
		sc.AllowAtomicPublish = true
		sc.AllowMsgTTL = true
		sc.SubjectDeleteMarkerTTL = max(cfg.MarkerTTL, time.Second)
		out = append(out, sc)
		longest = max(longest, r.Retention)
	}
	out = append(out, kvStream(NamesBucket, "text of hashed field values: <hex key> -> text", longest+NamesMargin, cfg.Replicas))
	return out
}

// kvStream is the stream nats.go creates for a KV bucket with history 1
// (jetstream.KeyValueConfig), so that js.KeyValue binds to it.
func kvStream(bucket, desc string, ttl time.Duration, replicas int) jetstream.StreamConfig {
	dup := 2 * time.Minute
	if ttl > 0 && ttl < dup {
		dup = ttl
	}
	return jetstream.StreamConfig{
		Name:              "KV_" + bucket,
		Description:       desc,
		Subjects:          []string{"$KV." + bucket + ".>"},
		MaxMsgsPerSubject: 1,
		MaxBytes:          -1,
		MaxAge:            ttl,
		MaxMsgSize:        -1,
		Storage:           jetstream.FileStorage,
		Replicas:          max(replicas, 1),
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        dup,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		AllowDirect:       true,
		Discard:           jetstream.DiscardNew,
	}
}

// Ensure creates every stream and bucket that is missing and updates those
// whose configuration drifted; it leaves the rest alone. Looking first
// keeps a cold start cheap: when every stage of a fresh cluster starts at
// once, one of them creates each asset and the others find it, instead of
// all of them proposing updates that the meta leader serialises. It
// returns the effective number of partitions: P is fixed when the parsed
// stream is created, so an existing stream's value wins over
// cfg.Partitions.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config) (int, error) {
	if cfg.Partitions < 1 {
		return 0, fmt.Errorf("partitions must be at least 1, got %d", cfg.Partitions)
	}
	partitions := cfg.Partitions
	parsed, err := js.Stream(ctx, ParsedStream)
	switch {
	case err == nil:
		if v, ok := parsed.CachedInfo().Config.Metadata[partitionsKey]; ok {
			n, perr := strconv.Atoi(v)
			if perr != nil || n < 1 {
				return 0, fmt.Errorf("stream %s has bad %s metadata %q", ParsedStream, partitionsKey, v)
			}
			partitions = n
		}
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return 0, fmt.Errorf("look up stream %s: %w", ParsedStream, err)
	}
	for _, sc := range append(cfg.Streams(partitions), cfg.Buckets()...) {
		if err := ensureStream(ctx, js, sc); err != nil {
			return 0, err
		}
	}
	return partitions, nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	st, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another process created it between the lookup and now.
			return ensureStream(ctx, js, want)
		}
		if err != nil {
			return fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", want.Name, err)
	}
	have := st.CachedInfo().Config
	if !drifted(have, want) {
		return nil
	}
	if _, err := js.UpdateStream(ctx, want); err != nil {
		return fmt.Errorf("update stream %s: %w", want.Name, err)
	}
	return nil
}

// unlimited maps the two spellings of no limit, 0 (what a config leaves
// unset) and -1 (what the server reports back), to one.
func unlimited(v int64) int64 {
	if v <= 0 {
		return -1
	}
	return v
}

// drifted reports whether an existing stream differs from the wanted
// configuration in a field logtally sets (the server fills in others).
func drifted(have, want jetstream.StreamConfig) bool {
	return have.Description != want.Description ||
		!slices.Equal(have.Subjects, want.Subjects) ||
		have.Retention != want.Retention ||
		unlimited(have.MaxBytes) != unlimited(want.MaxBytes) ||
		have.MaxAge != want.MaxAge ||
		unlimited(have.MaxMsgsPerSubject) != unlimited(want.MaxMsgsPerSubject) ||
		have.Discard != want.Discard ||
		have.Duplicates != want.Duplicates ||
		have.Replicas != want.Replicas ||
		have.AllowAtomicPublish != want.AllowAtomicPublish ||
		have.AllowMsgTTL != want.AllowMsgTTL ||
		have.SubjectDeleteMarkerTTL != want.SubjectDeleteMarkerTTL ||
		have.AllowRollup != want.AllowRollup ||
		have.AllowDirect != want.AllowDirect ||
		!maps.Equal(withoutServerKeys(have.Metadata), want.Metadata)
}

// withoutServerKeys drops the metadata the server adds (_nats.*).
func withoutServerKeys(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if !strings.HasPrefix(k, "_nats.") {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Package windows is the read model of logtally's counts buckets: it knows
// which windows exist (a meta-only watch of the manifests), keeps decoded
// manifests and chunks in a byte-bounded cache, tiles a time range with the
// coarsest windows, and answers top-N, per-IP series and totals over them,
// exactly, reading as little as the answer needs. The query service serves
// it over HTTP and gRPC; anything else that reads windows (a detector, an
// exporter) uses it the same way. docs/design.md ("Queries") explains the
// algorithms.
package windows

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/topology"
)

// Config of a Reader.
type Config struct {
	Limits
	// CacheBytes bounds the (estimated) memory of decoded manifests and
	// chunks kept in the cache.
	CacheBytes int64
	// FetchConcurrency bounds the concurrent KV gets of one query.
	FetchConcurrency int
	// Timeout bounds the work of one query.
	Timeout time.Duration
}

// DefaultConfig returns the query service's defaults.
func DefaultConfig() Config {
	return Config{
		Limits:           Limits{MaxN: 1000, MaxRange: 400 * 24 * time.Hour, MaxPoints: 10000},
		CacheBytes:       256 << 20,
		FetchConcurrency: 16,
		Timeout:          10 * time.Second,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.MaxN < 1 {
		errs = append(errs, fmt.Errorf("max n must be at least 1, got %d", c.MaxN))
	}
	if c.MaxRange < time.Minute {
		errs = append(errs, fmt.Errorf("max range must be at least 1m, got %s", FormatDuration(c.MaxRange)))
	}
	if c.MaxPoints < 1 {
		errs = append(errs, fmt.Errorf("max points must be at least 1, got %d", c.MaxPoints))
	}
	if c.CacheBytes < 0 {
		errs = append(errs, fmt.Errorf("cache bytes must not be negative, got %d", c.CacheBytes))
	}
	if c.FetchConcurrency < 1 {
		errs = append(errs, fmt.Errorf("fetch concurrency must be at least 1, got %d", c.FetchConcurrency))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout must be positive, got %s", c.Timeout))
	}
	return errors.Join(errs...)
}

// Reader reads the windows of every counts bucket.
type Reader struct {
	cfg        Config
	js         jetstream.JetStream
	log        hclog.Logger
	partitions int
	res        []topology.Resolution // ascending window size
	sizes      []int64               // window sizes in seconds, ascending
	finest     time.Duration

	indexes []*index
	lost    *lostBatches
	cache   *lru
	flights flightGroup
	stats   counters

	subsMu sync.RWMutex
	subs   map[*watchSub]struct{}

	ctx     context.Context // ends when Stop begins
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
	stopped atomic.Bool

	// fetchHook, when set (tests), runs before every KV get with the
	// context the get will use.
	fetchHook func(ctx context.Context, key cacheKey)
}

// counters are the Reader's running totals (Stats).
type counters struct {
	hits, misses, gets, chunkGets, fallbacks, retries, expired atomic.Uint64
}

// New checks the configuration and the resolutions; Start opens the buckets.
func New(cfg Config, js jetstream.JetStream, partitions int, resolutions []topology.Resolution, log hclog.Logger) (*Reader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("windows: %w", err)
	}
	if js == nil {
		return nil, errors.New("windows: no JetStream context")
	}
	if partitions < 1 {
		return nil, fmt.Errorf("windows: partitions must be at least 1, got %d", partitions)
	}
	res := slices.Clone(resolutions)
	if len(res) == 0 {
		return nil, errors.New("windows: no resolutions")
	}
	slices.SortFunc(res, func(a, b topology.Resolution) int { return cmp.Compare(a.Size, b.Size) })
	sizes := make([]int64, len(res))
	for i, r := range res {
		if r.Size < time.Second || r.Size%time.Second != 0 {
			return nil, fmt.Errorf("windows: resolution %s: size %s is not a whole number of seconds", r.Name, r.Size)
		}
		if i > 0 && r.Size%res[i-1].Size != 0 {
			return nil, fmt.Errorf("windows: resolution %s (%s) is not a multiple of %s (%s)", r.Name, r.Size, res[i-1].Name, res[i-1].Size)
		}
		sizes[i] = int64(r.Size / time.Second)
	}
	if cfg.MaxRange%res[0].Size != 0 {
		return nil, fmt.Errorf("windows: max range %s is not a multiple of the finest window %s", FormatDuration(cfg.MaxRange), FormatDuration(res[0].Size))
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Reader{
		cfg:        cfg,
		js:         js,
		log:        log,
		partitions: partitions,
		res:        res,
		sizes:      sizes,
		finest:     res[0].Size,
		cache:      newLRU(cfg.CacheBytes),
		flights:    flightGroup{m: map[cacheKey]*flight{}},
		subs:       map[*watchSub]struct{}{},
	}, nil
}

// Start opens every counts bucket and starts its watch. The reader answers
// once every watch finished its initial replay (Ready).
func (r *Reader) Start(ctx context.Context) error {
	if r.started {
		return errors.New("windows: already started")
	}
	r.started = true
	r.ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for i, res := range r.res {
		kv, err := r.js.KeyValue(ctx, res.Bucket())
		if err != nil {
			r.cancel()
			return fmt.Errorf("open bucket %s: %w", res.Bucket(), err)
		}
		x := newIndex(i, res, r.partitions, kv, r.log)
		x.onChange = r.notify
		x.onResync = r.notifyAll
		r.indexes = append(r.indexes, x)
	}
	lost, err := openLostBatches(ctx, r.js, r.log)
	if err != nil {
		r.cancel()
		return fmt.Errorf("open bucket %s: %w", topology.StateBucket, err)
	}
	r.lost = lost
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		lost.run(r.ctx)
	}()
	for _, x := range r.indexes {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			x.run(r.ctx)
		}()
	}
	return nil
}

// LostBatches is the number of raw batches the aggregators found lost
// since the start (gone from the streams before they were counted), over
// all partitions and time: a gap in the counts, reported, never hidden.
func (r *Reader) LostBatches() uint64 {
	if r.lost == nil {
		return 0
	}
	return r.lost.total()
}

// Stop ends the watches and every Watch loop; queries after it are
// unavailable.
func (r *Reader) Stop(ctx context.Context) error {
	if !r.started || r.stopped.Swap(true) {
		return nil
	}
	r.cancel()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop watches: %w", ctx.Err())
	}
}

// Finest is the finest window size: ranges and steps are multiples of it.
func (r *Reader) Finest() time.Duration { return r.finest }

// WaitReady waits until every bucket's index finished its initial replay.
func (r *Reader) WaitReady(ctx context.Context) error {
	if r.stopped.Load() || !r.started {
		return Unavailable("window reader is stopped", nil)
	}
	for _, x := range r.indexes {
		select {
		case <-x.ready:
		case <-ctx.Done():
			return Unavailable("window index is still loading", ctx.Err())
		}
	}
	return nil
}

// Readiness is nil once every index is loaded (an obs.Checker).
func (r *Reader) Readiness() error {
	if r.stopped.Load() {
		return errors.New("stopped")
	}
	for _, x := range r.indexes {
		if !x.isReady() {
			return fmt.Errorf("loading index of %s", x.resolution.Bucket())
		}
	}
	return nil
}

// WaitRevision blocks until the index of bucket has seen revision rev (for
// tests and tools that just wrote a window).
func (r *Reader) WaitRevision(ctx context.Context, bucket string, rev uint64) error {
	for _, x := range r.indexes {
		if x.resolution.Bucket() == bucket {
			return x.waitRevision(ctx, rev)
		}
	}
	return fmt.Errorf("windows: no bucket %s", bucket)
}

// CheckRange validates an absolute range: aligned to the finest window,
// not empty, not longer than the limit.
func (r *Reader) CheckRange(rg Range) error { return checkRange(rg, r.finest, r.cfg.MaxRange) }

// CheckStep validates a series step over rg.
func (r *Reader) CheckStep(rg Range, step time.Duration) error {
	_, err := checkStep(rg, step, r.finest, r.cfg.MaxPoints)
	return err
}

// Stats are the reader's counters since it started.
type Stats struct {
	CacheHits   uint64 // manifest and chunk reads served by the cache
	CacheMisses uint64 // reads that missed it
	KVGets      uint64 // KV gets of manifests and chunks
	ChunkGets   uint64 // of which chunks and heads
	CacheItems  int
	CacheBytes  int64
	IndexKeys   int // manifests the indexes know, all buckets
	Subscribers int // open Watch loops
	// Fallbacks counts partitions of top-N queries whose runs were read in
	// full because the heads could not decide the answer.
	Fallbacks uint64
	// Retries counts queries repeated because a window changed while it
	// was read.
	Retries uint64
	// Expired counts windows left out of an answer because their chunks
	// had expired before their manifest.
	Expired uint64
}

// Stats returns the current counters.
func (r *Reader) Stats() Stats {
	n, b := r.cache.stats()
	keys := 0
	for _, x := range r.indexes {
		keys += x.numKeys()
	}
	r.subsMu.RLock()
	subs := len(r.subs)
	r.subsMu.RUnlock()
	return Stats{
		CacheHits:   r.stats.hits.Load(),
		CacheMisses: r.stats.misses.Load(),
		KVGets:      r.stats.gets.Load(),
		ChunkGets:   r.stats.chunkGets.Load(),
		CacheItems:  n,
		CacheBytes:  b,
		IndexKeys:   keys,
		Subscribers: subs,
		Fallbacks:   r.stats.fallbacks.Load(),
		Retries:     r.stats.retries.Load(),
		Expired:     r.stats.expired.Load(),
	}
}

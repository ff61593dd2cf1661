// Package export writes the windowed counts out of NATS: every window of
// every counts bucket (the per-IP windows and the field windows, 1m and
// 1h) is upserted into PostgreSQL as it changes, and each closed hour is
// written as Parquet files. Both follow the manifests with a meta-only KV
// watch and write absolute counts, so a window written again (after a
// restart, a redelivery, a late line) converges to the same rows. See
// docs/export.md.
package export

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/service"
	"github.com/logtally/logtally/internal/topology"
	"github.com/logtally/logtally/internal/windows"
)

// sink is one destination of the windows.
type sink interface {
	name() string
	queue() *queue
	// run writes what the queue collects until ctx ends.
	run(ctx context.Context)
	ready() error
	close()
	// oldest is the time of the oldest change taken and not written yet.
	oldest() (time.Time, bool)
	// forget drops what the sink remembers of a window that expired.
	forget(r ref)
}

// Service is the export stage.
type Service struct {
	cfg  Config
	deps service.Deps
	log  hclog.Logger
	m    *metrics

	buckets []*bucket
	names   *windows.Names
	follow  *follower
	sinks   []sink

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds the export stage.
func New(cfg Config, deps service.Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, deps: deps, log: deps.Log.Named("export"), m: newMetrics(deps.Registerer)}, nil
}

// Name implements service.Service.
func (s *Service) Name() string { return "export" }

// Start opens the buckets, starts the watch and the sinks.
func (s *Service) Start(ctx context.Context) error {
	if s.cfg.PostgresDSN != "" {
		s.sinks = append(s.sinks, newPostgres(s, s.cfg.PostgresDSN))
	}
	if s.cfg.ParquetDir != "" {
		s.sinks = append(s.sinks, newParquet(s, s.cfg.ParquetDir))
	}
	if len(s.sinks) == 0 {
		s.log.Info("no sink configured (-export.postgres.dsn, -export.parquet.dir): nothing is exported")
		return nil
	}
	js := s.deps.NATS.JS
	maxPayload := s.deps.NATS.NC.MaxPayload()
	res := append(append([]topology.Resolution(nil), s.deps.Topology.Resolutions...), topology.WithDataset(s.deps.Topology.Resolutions, topology.DimsDataset)...)
	for i, r := range res {
		st, err := counts.NewStore(ctx, js, r.Bucket(), counts.DefaultLayout(maxPayload, r.Retention))
		if err != nil {
			return err
		}
		kv, err := js.KeyValue(ctx, r.Bucket())
		if err != nil {
			return fmt.Errorf("open bucket %s: %w", r.Bucket(), err)
		}
		s.buckets = append(s.buckets, &bucket{idx: i, res: r, store: st, kv: kv})
	}
	var err error
	if s.names, err = windows.OpenNames(ctx, js, s.log); err != nil {
		return err
	}
	queues := make([]*queue, len(s.sinks))
	for i, sk := range s.sinks {
		queues[i] = sk.queue()
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.follow = newFollower(s.buckets, s.log, queues, func(r ref) {
		for _, sk := range s.sinks {
			sk.forget(r)
		}
	})
	s.follow.start(runCtx)
	for _, sk := range s.sinks {
		s.wg.Go(func() { sk.run(runCtx) })
	}
	s.wg.Go(func() { s.gauges(runCtx) })
	if s.deps.Health != nil {
		s.deps.Health.Add("export", s.readiness)
	}
	return nil
}

// readiness: the watch has read every window once and each sink is
// connected and writing.
func (s *Service) readiness() error {
	select {
	case <-s.follow.ready:
	default:
		return errors.New("export: reading the windows")
	}
	var errs []error
	for _, sk := range s.sinks {
		if err := sk.ready(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stop ends the sinks after the write in progress.
func (s *Service) Stop(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.follow.stop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("export: stop: %w", ctx.Err())
	}
	for _, sk := range s.sinks {
		sk.close()
	}
	return nil
}

// gauges keeps the lag and pending gauges current.
func (s *Service) gauges(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		for _, sk := range s.sinks {
			lag := 0.0
			if at, ok := sk.oldest(); ok {
				lag = max(time.Since(at).Seconds(), 0)
			}
			s.m.lag.WithLabelValues(sk.name()).Set(lag)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// writeTimeout bounds one write, which Stop lets finish.
const writeTimeout = time.Minute

// rounds is the loop of a sink that writes windows one by one: each
// interval it takes the changed windows, writes those pending with
// workers at once, and queues the failed ones again with backoff.
func (s *Service) rounds(ctx context.Context, sk sink, workers int, pending func(ref) bool, write func(ctx context.Context, r ref) error, inflight *oldestAt) {
	q := sk.queue()
	var last time.Time
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.signal:
		}
		if wait := s.cfg.Interval - time.Since(last); wait > 0 && !sleep(ctx, wait) {
			return
		}
		last = time.Now()
		var items []queued
		for _, it := range q.take() {
			if pending(it.ref) {
				items = append(items, it)
			}
		}
		s.m.pending.WithLabelValues(sk.name()).Set(float64(len(items)))
		if len(items) == 0 {
			continue
		}
		inflight.set(items[0].at)
		var mu sync.Mutex
		var failed []queued
		var firstErr error
		jobs := make(chan queued)
		var wg sync.WaitGroup
		for range min(workers, len(items)) {
			wg.Go(func() {
				for it := range jobs {
					wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
					err := write(wctx, it.ref)
					cancel()
					if err != nil {
						mu.Lock()
						failed = append(failed, it)
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
					}
				}
			})
		}
	feed:
		for _, it := range items {
			select {
			case jobs <- it:
			case <-ctx.Done():
				break feed
			}
		}
		close(jobs)
		wg.Wait()
		inflight.clear()
		for _, it := range failed {
			q.add(it.ref, it.at)
		}
		if ctx.Err() != nil {
			return
		}
		if len(failed) > 0 {
			s.m.failures.WithLabelValues(sk.name()).Add(float64(len(failed)))
			s.log.Warn("export failed; retrying", "sink", sk.name(), "windows", len(failed), "error", firstErr, "backoff", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, 30*time.Second)
		} else {
			backoff = time.Second
		}
	}
}

// oldestAt is the time of the oldest change being written.
type oldestAt struct {
	mu sync.Mutex
	at time.Time
	ok bool
}

func (o *oldestAt) set(t time.Time) { o.mu.Lock(); o.at, o.ok = t, true; o.mu.Unlock() }
func (o *oldestAt) clear()          { o.mu.Lock(); o.ok = false; o.mu.Unlock() }

// get returns the oldest of o and the queue's oldest.
func (o *oldestAt) get(q *queue) (time.Time, bool) {
	o.mu.Lock()
	at, ok := o.at, o.ok
	o.mu.Unlock()
	if qa, qok := q.oldest(); qok && (!ok || qa.Before(at)) {
		return qa, true
	}
	return at, ok
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// parseRef parses a window key of bucket b.
func parseRef(b int, key string) (ref, bool) {
	start, part, err := counts.ParseKey(key)
	if err != nil {
		return ref{}, false
	}
	return ref{b: b, start: start.Unix(), part: part}, true
}

// Package query is the query stage: it answers top-N, per-IP series and
// totals over the counts buckets, exactly, on an HTTP JSON API and the gRPC
// QueryService.
//
// Reading: a meta-only watch per counts bucket keeps an index of the latest
// revision of every window key, so a query fetches only keys that exist;
// decoded windows are kept in a byte-bounded LRU cache keyed by key and
// revision (a revision never changes, so the cache needs no invalidation).
// A range [from, to) is tiled by the coarsest windows: finest windows up to
// the first boundary of the next resolution, coarser ones in the middle,
// finest again after the last boundary (recursively for more resolutions).
// A series point is tiled the same way, so it is never read from finer
// windows than the rule "coarsest resolution dividing step and from" gives.
//
// Consistency: queries see a window once the watch has delivered its new
// revision (milliseconds after the write); a key that the bucket's TTL
// removed reads as zero and leaves the index. Windows older than the finest
// resolution's retention (1m: 48h) are gone, so ranges that far back should
// be aligned to the coarser windows (1h) to stay complete.
//
// HTTP (on the process mux): GET /api/v1/top, /api/v1/ips/{ip},
// /api/v1/totals with last=<dur> (whole minutes, "d" for days; the range
// ends at now rounded up to the next minute) or from/to (RFC 3339, aligned
// to 1m); no range means the last query.default-last (15m). gRPC: the same
// on logtally.v1.QueryService, where n=0 means 10 and a missing step 1m.
package query

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/service"
	"github.com/logtally/logtally/internal/topology"
)

// Service is the query stage.
type Service struct {
	cfg        Config
	deps       service.Deps
	log        hclog.Logger
	partitions int
	res        []topology.Resolution // ascending window size
	sizes      []int64               // window sizes in seconds, ascending
	finest     time.Duration
	now        func() time.Time

	indexes []*resIndex
	cache   *lru
	metrics *metrics

	flightMu sync.Mutex
	flights  map[cacheKey]*flight

	subsMu sync.RWMutex
	subs   map[*watchSub]struct{}

	ctx      context.Context // ends when Stop begins
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopped  atomic.Bool
	started  bool
	lis      net.Listener
	grpc     *grpc.Server
	health   *health.Server
	grpcDone chan error
}

// New checks the configuration and the resolutions; Start does the work.
func New(cfg Config, deps service.Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.NATS == nil || deps.NATS.JS == nil {
		return nil, errors.New("query: no NATS connection")
	}
	if deps.Topology.Partitions < 1 {
		return nil, fmt.Errorf("query: partitions must be at least 1, got %d", deps.Topology.Partitions)
	}
	res := slices.Clone(deps.Topology.Resolutions)
	if len(res) == 0 {
		return nil, errors.New("query: no resolutions")
	}
	slices.SortFunc(res, func(a, b topology.Resolution) int { return cmp.Compare(a.Size, b.Size) })
	sizes := make([]int64, len(res))
	for i, r := range res {
		if r.Size < time.Second || r.Size%time.Second != 0 {
			return nil, fmt.Errorf("query: resolution %s: size %s is not a whole number of seconds", r.Name, r.Size)
		}
		if i > 0 && r.Size%res[i-1].Size != 0 {
			return nil, fmt.Errorf("query: resolution %s (%s) is not a multiple of %s (%s)", r.Name, r.Size, res[i-1].Name, res[i-1].Size)
		}
		sizes[i] = int64(r.Size / time.Second)
	}
	if cfg.MaxRange%res[0].Size != 0 {
		return nil, fmt.Errorf("query: query.max-range %s is not a multiple of the finest window %s", formatDuration(cfg.MaxRange), formatDuration(res[0].Size))
	}
	if cfg.DefaultLast%res[0].Size != 0 {
		return nil, fmt.Errorf("query: query.default-last %s is not a multiple of the finest window %s", formatDuration(cfg.DefaultLast), formatDuration(res[0].Size))
	}
	log := deps.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Service{
		cfg:        cfg,
		deps:       deps,
		log:        log.Named("query"),
		partitions: deps.Topology.Partitions,
		res:        res,
		sizes:      sizes,
		finest:     res[0].Size,
		now:        time.Now,
		cache:      newLRU(cfg.CacheBytes),
		flights:    map[cacheKey]*flight{},
		subs:       map[*watchSub]struct{}{},
	}
	s.metrics = newMetrics(deps.Registerer, s)
	return s, nil
}

// Name identifies the service.
func (s *Service) Name() string { return "query" }

// Start opens the counts buckets, starts their watches, adds the HTTP
// routes and starts the gRPC server.
func (s *Service) Start(ctx context.Context) error {
	if s.started {
		return errors.New("query: already started")
	}
	s.started = true
	js := s.deps.NATS.JS
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for i, r := range s.res {
		kv, err := js.KeyValue(ctx, r.Bucket())
		if err != nil {
			s.cancel()
			return fmt.Errorf("open bucket %s: %w", r.Bucket(), err)
		}
		x := newResIndex(i, r, s.partitions, kv, s.log)
		x.onChange = s.notify
		x.onResync = s.notifyAll
		s.indexes = append(s.indexes, x)
	}

	lis, err := net.Listen("tcp", s.cfg.GRPCAddr)
	if err != nil {
		s.cancel()
		return fmt.Errorf("grpc listen %s: %w", s.cfg.GRPCAddr, err)
	}
	s.lis = lis
	for _, x := range s.indexes {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			x.run(s.ctx)
		}()
	}

	s.grpc = grpc.NewServer(s.deps.GRPCOptions...)
	logtallyv1.RegisterQueryServiceServer(s.grpc, &grpcServer{s: s})
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(logtallyv1.QueryService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.grpcDone = make(chan error, 1)
	go func() { s.grpcDone <- s.grpc.Serve(lis) }()

	// Serving once every index has loaded.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if s.waitReady(s.ctx) == nil {
			s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			s.health.SetServingStatus(logtallyv1.QueryService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
			s.log.Info("query index loaded", "buckets", len(s.indexes))
		}
	}()
	if s.deps.Health != nil {
		s.deps.Health.Add(s.Name(), s.readiness)
	}
	if s.deps.Mux != nil {
		s.registerHTTP(s.deps.Mux)
	}
	s.log.Info("query serving", "grpc", lis.Addr().String(), "partitions", s.partitions)
	return nil
}

// readiness is the obs.Checker: ready once every bucket's initial replay ended.
func (s *Service) readiness() error {
	if s.stopped.Load() {
		return errors.New("stopped")
	}
	for _, x := range s.indexes {
		if !x.isReady() {
			return fmt.Errorf("loading index of %s", x.res.Bucket())
		}
	}
	return nil
}

// GRPCAddr is the address the gRPC server listens on (nil before Start).
func (s *Service) GRPCAddr() net.Addr {
	if s.lis == nil {
		return nil
	}
	return s.lis.Addr()
}

// Stop ends WatchTop streams, stops the gRPC server gracefully (forcibly
// when ctx ends first) and stops the watches.
func (s *Service) Stop(ctx context.Context) error {
	if !s.started || s.stopped.Swap(true) {
		return nil
	}
	if s.deps.Health != nil {
		s.deps.Health.Remove(s.Name())
	}
	s.health.Shutdown()
	s.cancel() // ends WatchTop streams and the watches
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	var err error
	select {
	case <-stopped:
	case <-ctx.Done():
		s.grpc.Stop()
		<-stopped
		err = fmt.Errorf("grpc graceful stop: %w", ctx.Err())
	}
	if serr := <-s.grpcDone; serr != nil && !errors.Is(serr, grpc.ErrServerStopped) {
		err = errors.Join(err, serr)
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("stop watches: %w", ctx.Err()))
	}
	return err
}

type metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	cacheHits   prometheus.Counter
	cacheMisses prometheus.Counter
	fetches     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Service) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "logtally_query_requests_total", Help: "Queries by operation, transport and outcome.",
		}, []string{"op", "transport", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "logtally_query_duration_seconds", Help: "Query latency by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"op"}),
		cacheHits:   prometheus.NewCounter(prometheus.CounterOpts{Name: "logtally_query_cache_hits_total", Help: "Window reads served by the cache."}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{Name: "logtally_query_cache_misses_total", Help: "Window reads that missed the cache."}),
		fetches:     prometheus.NewCounter(prometheus.CounterOpts{Name: "logtally_query_kv_gets_total", Help: "KV gets of window keys."}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.requests, m.duration, m.cacheHits, m.cacheMisses, m.fetches,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "logtally_query_cache_bytes", Help: "Estimated bytes of cached decoded windows."}, func() float64 {
			_, b := s.cache.stats()
			return float64(b)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "logtally_query_index_keys", Help: "Window keys known to the index, all buckets."}, func() float64 {
			n := 0
			for _, x := range s.indexes {
				x.mu.RLock()
				n += x.keys
				x.mu.RUnlock()
			}
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "logtally_query_watch_subscribers", Help: "Open WatchTop streams."}, func() float64 {
			s.subsMu.RLock()
			defer s.subsMu.RUnlock()
			return float64(len(s.subs))
		}),
	)
	return m
}

// observe records one query.
func (s *Service) observe(op, transport string, start time.Time, err error) {
	outcome := "ok"
	switch {
	case err == nil:
	// gRPC handlers pass the status error they return (toStatus).
	case errors.Is(err, ErrInvalidArgument), status.Code(err) == codes.InvalidArgument:
		outcome = "invalid"
	case errors.Is(err, ErrUnavailable), status.Code(err) == codes.Unavailable:
		outcome = "unavailable"
	default:
		outcome = "error"
	}
	s.metrics.requests.WithLabelValues(op, transport, outcome).Inc()
	s.metrics.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// Package query is the query stage: it serves the window read model
// (internal/windows: top-N, per-IP series and totals over the counts
// buckets, exactly) on an HTTP JSON API, the gRPC QueryService, Server-Sent
// Events and the dashboard. Everything here is transport: parameters,
// answers, errors and metrics; how windows are read is internal/windows.
//
// HTTP (on the process mux): GET /api/v1/top, /api/v1/ips/{ip},
// /api/v1/totals with last=<dur> (whole minutes, "d" for days; the range
// ends at now rounded up to the next minute) or from/to (RFC 3339, aligned
// to 1m); no range means the last query.default-last (15m). gRPC: the same
// on logtally.v1.QueryService, where n=0 means 10 and a missing step 1m.
package query

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	"github.com/logtally/logtally/internal/decisions"
	"github.com/logtally/logtally/internal/geoip"
	"github.com/logtally/logtally/internal/service"
	"github.com/logtally/logtally/internal/windows"
	"github.com/logtally/logtally/services/detector"
)

// Service is the query stage.
type Service struct {
	cfg    Config
	deps   service.Deps
	log    hclog.Logger
	finest time.Duration
	now    func() time.Time

	reader  *windows.Reader
	values  *windows.Values // the fields beyond the IP (by=status, path, ...)
	metrics *metrics
	geo     atomic.Pointer[geoip.DB] // set by Start; databases may be absent

	decisions  *decisions.Store // set by Start before any handler runs
	decStore   atomic.Pointer[decisions.Store]
	cursors    *cursors
	decChanged *broadcast          // the decisions or the rules file changed
	rules      *detector.RulesFile // the allow list and mode; nil without -rules.file

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
	log := deps.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("query")
	r, err := windows.New(cfg.readerConfig(), deps.NATS.JS, deps.Topology.Partitions, deps.Topology.Resolutions, log)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	if cfg.DefaultLast%r.Finest() != 0 {
		return nil, fmt.Errorf("query: query.default-last %s is not a multiple of the finest window %s", windows.FormatDuration(cfg.DefaultLast), windows.FormatDuration(r.Finest()))
	}
	// The dims windows are far fewer and smaller than the per-IP ones.
	vc := cfg.readerConfig()
	vc.CacheBytes = max(vc.CacheBytes/4, 1<<20)
	v, err := windows.NewValues(vc, deps.NATS.JS, deps.Topology.Partitions, deps.Topology.Resolutions, log)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	s := &Service{
		cfg:    cfg,
		deps:   deps,
		log:    log,
		finest: r.Finest(),
		now:    time.Now,
		reader: r,
		values: v,
	}
	s.metrics = newMetrics(deps.Registerer, s)
	return s, nil
}

// Name identifies the service.
func (s *Service) Name() string { return "query" }

// Reader is the window read model the service serves.
func (s *Service) Reader() *windows.Reader { return s.reader }

// Start opens the counts buckets and starts their watches (the reader),
// adds the HTTP routes and starts the gRPC server.
func (s *Service) Start(ctx context.Context) error {
	if s.started {
		return errors.New("query: already started")
	}
	s.started = true
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	// The GeoIP files first: a missing or damaged one is a configuration
	// error, reported before anything else starts.
	geo, err := s.openGeoIP()
	if err != nil {
		s.cancel()
		return fmt.Errorf("query: %w", err)
	}
	s.geo.Store(geo)
	if err := s.reader.Start(ctx); err != nil {
		s.cancel()
		_ = geo.Close()
		return fmt.Errorf("query: %w", err)
	}
	if err := s.values.Start(ctx); err != nil {
		s.cancel()
		_ = s.reader.Stop(ctx)
		_ = geo.Close()
		return fmt.Errorf("query: %w", err)
	}
	fail := func(err error) error {
		s.cancel()
		_ = geo.Close()
		if s.rules != nil {
			_ = s.rules.Close()
		}
		_ = s.reader.Stop(ctx)
		_ = s.values.Stop(ctx)
		return err
	}
	// The decisions index and the allow list come before the gRPC server:
	// DecisionService serves them from its first call.
	if err := s.startDecisions(ctx); err != nil {
		return fail(fmt.Errorf("query: %w", err))
	}
	if s.cfg.RulesFile != "" {
		// A reload may change the mode the dashboard shows.
		rules, err := detector.OpenRules(s.cfg.RulesFile, s.log, func(*detector.Rules) { s.decChanged.notify() })
		if err != nil {
			return fail(fmt.Errorf("query: %w", err))
		}
		s.rules = rules
	}
	lis, err := net.Listen("tcp", s.cfg.GRPCAddr)
	if err != nil {
		return fail(fmt.Errorf("grpc listen %s: %w", s.cfg.GRPCAddr, err))
	}
	s.lis = lis

	s.grpc = grpc.NewServer(s.deps.GRPCOptions...)
	logtallyv1.RegisterQueryServiceServer(s.grpc, &grpcServer{s: s})
	logtallyv1.RegisterDecisionServiceServer(s.grpc, &decisionServer{s: s})
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(logtallyv1.QueryService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(logtallyv1.DecisionService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.grpcDone = make(chan error, 1)
	go func() { s.grpcDone <- s.grpc.Serve(lis) }()

	// Serving once every index has loaded.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if s.reader.WaitReady(s.ctx) == nil {
			s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			s.health.SetServingStatus(logtallyv1.QueryService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
			s.log.Info("query index loaded")
		}
	}()
	if s.deps.Health != nil {
		s.deps.Health.Add(s.Name(), s.readiness)
	}
	if s.deps.Mux != nil {
		s.registerHTTP(s.deps.Mux)
		s.registerDecisions(s.deps.Mux)
	}
	s.log.Info("query serving", "grpc", lis.Addr().String(), "partitions", s.deps.Topology.Partitions)
	return nil
}

// readiness is the obs.Checker: ready once every bucket's initial replay ended.
func (s *Service) readiness() error {
	if s.stopped.Load() {
		return errors.New("stopped")
	}
	return s.reader.Readiness()
}

// waitReady waits until the reader's indexes are loaded.
func (s *Service) waitReady(ctx context.Context) error {
	if s.stopped.Load() {
		return windows.Unavailable("query service is stopped", nil)
	}
	return s.reader.WaitReady(ctx)
}

// GRPCAddr is the address the gRPC server listens on (nil before Start).
func (s *Service) GRPCAddr() net.Addr {
	if s.lis == nil {
		return nil
	}
	return s.lis.Addr()
}

// Stop ends watch streams, stops the gRPC server gracefully (forcibly when
// ctx ends first) and stops the reader.
func (s *Service) Stop(ctx context.Context) error {
	if !s.started || s.stopped.Swap(true) {
		return nil
	}
	if s.deps.Health != nil {
		s.deps.Health.Remove(s.Name())
	}
	s.health.Shutdown()
	s.cancel()
	if s.rules != nil {
		_ = s.rules.Close()
	}
	// Stopping the reader ends every watch stream (WatchTop, SSE). A
	// lookup after Close answers "unknown"; queries are refused by then.
	rerr := errors.Join(s.reader.Stop(ctx), s.values.Stop(ctx), s.geo.Load().Close())
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
		err = errors.Join(err, fmt.Errorf("stop: %w", ctx.Err()))
	}
	return errors.Join(rerr, err)
}

type metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	bouncerDenied prometheus.Counter
	geoBuild      *prometheus.GaugeVec
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
		bouncerDenied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "logtally_query_bouncer_denied_total", Help: "Bouncer API requests refused for a missing or unknown X-Api-Key (403).",
		}),
		geoBuild: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "logtally_query_geoip_build_timestamp_seconds", Help: "Build time of each GeoIP database in use (db: asn, country), from its metadata.",
		}, []string{"db"}),
	}
	if reg == nil {
		return m
	}
	stat := func(f func(windows.Stats) float64) func() float64 {
		return func() float64 { return f(s.reader.Stats()) }
	}
	reg.MustRegister(m.requests, m.duration, m.bouncerDenied, m.geoBuild,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "logtally_query_geoip_lookup_errors_total", Help: "GeoIP lookups that failed (damaged record, IPv6 address in an IPv4-only file); such IPs count as unknown."},
			func() float64 { return float64(s.geo.Load().LookupErrors()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "logtally_query_cache_hits_total", Help: "Manifest and chunk reads served by the cache."},
			stat(func(st windows.Stats) float64 { return float64(st.CacheHits) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "logtally_query_cache_misses_total", Help: "Manifest and chunk reads that missed the cache."},
			stat(func(st windows.Stats) float64 { return float64(st.CacheMisses) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "logtally_query_kv_gets_total", Help: "KV gets of window manifests and chunks."},
			stat(func(st windows.Stats) float64 { return float64(st.KVGets) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "logtally_query_chunk_gets_total", Help: "KV gets of window chunks and heads."},
			stat(func(st windows.Stats) float64 { return float64(st.ChunkGets) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "logtally_query_top_fallbacks_total", Help: "Partitions of top queries read in full because the run heads could not decide."},
			stat(func(st windows.Stats) float64 { return float64(st.Fallbacks) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "logtally_query_retries_total", Help: "Queries started over because a window changed while it was read."},
			stat(func(st windows.Stats) float64 { return float64(st.Retries) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "logtally_query_expired_windows_total", Help: "Windows left out of an answer because their chunks expired before their manifest."},
			stat(func(st windows.Stats) float64 { return float64(st.Expired) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "logtally_query_cache_bytes", Help: "Estimated bytes of cached decoded manifests and chunks."},
			stat(func(st windows.Stats) float64 { return float64(st.CacheBytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "logtally_query_index_keys", Help: "Window manifests known to the index, all buckets."},
			stat(func(st windows.Stats) float64 { return float64(st.IndexKeys) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "logtally_query_watch_subscribers", Help: "Open watch streams (gRPC WatchTop and SSE)."},
			stat(func(st windows.Stats) float64 { return float64(st.Subscribers) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "logtally_query_decisions_watchers", Help: "Open gRPC WatchDecisions streams."},
			decisionStat(s, func(st *decisions.Store) float64 { return float64(st.Subscribers()) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "logtally_query_decisions_watch_dropped_total", Help: "WatchDecisions streams ended (RESOURCE_EXHAUSTED) because the client fell more than -decisions.watch-buffer changes behind."},
			decisionStat(s, func(st *decisions.Store) float64 { return float64(st.SlowDropped()) })),
	)
	return m
}

// decisionStat reads the decisions store for a metric (0 before Start
// opened it).
func decisionStat(s *Service, f func(*decisions.Store) float64) func() float64 {
	return func() float64 {
		if st := s.decisionStore(); st != nil {
			return f(st)
		}
		return 0
	}
}

// observe records one query.
func (s *Service) observe(op, transport string, start time.Time, err error) {
	outcome := "ok"
	switch {
	case err == nil:
	// gRPC handlers pass the status error they return (toStatus).
	case errors.Is(err, windows.ErrInvalidArgument), status.Code(err) == codes.InvalidArgument:
		outcome = "invalid"
	case errors.Is(err, windows.ErrUnavailable), status.Code(err) == codes.Unavailable:
		outcome = "unavailable"
	case status.Code(err) == codes.PermissionDenied, status.Code(err) == codes.AlreadyExists, status.Code(err) == codes.NotFound:
		outcome = "refused" // decisions: allow-listed, banned already, no such decision
	default:
		outcome = "error"
	}
	s.metrics.requests.WithLabelValues(op, transport, outcome).Inc()
	s.metrics.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

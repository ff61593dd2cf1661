package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/logtally/logtally/internal/natsconn"
	"github.com/logtally/logtally/internal/obs"
	"github.com/logtally/logtally/internal/service"
	"github.com/logtally/logtally/internal/topology"
	"github.com/logtally/logtally/services/aggregator"
	"github.com/logtally/logtally/services/detector"
	"github.com/logtally/logtally/services/export"
	"github.com/logtally/logtally/services/ingest"
	"github.com/logtally/logtally/services/parser"
	"github.com/logtally/logtally/services/query"
)

// App is one logtally process: an optional embedded NATS server, the
// configured targets and the HTTP server they share.
type App struct {
	cfg    Config
	log    hclog.Logger
	reg    *prometheus.Registry
	health *obs.Health
	mux    *http.ServeMux

	srv      *server.Server
	conn     *natsconn.Conn
	listener net.Listener
	httpSrv  *http.Server
	group    *service.Group
	started  atomic.Bool

	Ingest     *ingest.Service
	Parser     *parser.Service
	Aggregator *aggregator.Service
	Query      *query.Service
	Detector   *detector.Service
	Export     *export.Service
}

// New validates cfg and prepares the process.
func New(cfg Config, log hclog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &App{cfg: cfg, log: log, reg: obs.NewRegistry(), health: obs.NewHealth(), mux: http.NewServeMux()}, nil
}

// HTTPAddr is the bound HTTP address.
func (a *App) HTTPAddr() net.Addr { return a.listener.Addr() }

// EmbeddedNATSURL is the client URL of the embedded NATS server when it
// listens (-nats.embedded-listen), else "".
func (a *App) EmbeddedNATSURL() string {
	if a.srv == nil || a.cfg.NATS.EmbeddedListen == "" {
		return ""
	}
	return a.srv.ClientURL()
}

// Registry is the process's metrics registry.
func (a *App) Registry() *prometheus.Registry { return a.reg }

// Start brings the process up: NATS, topology, components, HTTP.
func (a *App) Start(ctx context.Context) error {
	var err error
	a.listener, err = net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on http.addr %s: %w", a.cfg.HTTPAddr, err)
	}
	tlsCfg, err := a.cfg.API.TLS()
	if err != nil {
		return err
	}
	if tlsCfg != nil {
		a.listener = tls.NewListener(a.listener, tlsCfg)
	}
	grpcOpts := a.cfg.API.GRPCServerOptions()
	if tlsCfg != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	// Not ready until every component has started: before that, routes such
	// as POST /api/v1/ingest are not registered yet.
	a.health.Add("startup", func() error {
		if !a.started.Load() {
			return errors.New("starting")
		}
		return nil
	})
	obs.Register(a.mux, a.health, a.reg)
	a.httpSrv = &http.Server{Handler: a.cfg.API.HTTP(a.startingHandler()), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := a.httpSrv.Serve(a.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server", "error", err)
		}
	}()

	if a.cfg.NATS.URL == "" {
		if err := os.MkdirAll(a.cfg.DataDir, 0o755); err != nil {
			return fmt.Errorf("create data.dir %s: %w", a.cfg.DataDir, err)
		}
		if a.srv, err = natsconn.RunEmbedded(a.cfg.NATS.EmbeddedOptions(a.cfg.DataDir), a.log); err != nil {
			return err
		}
		a.log.Info("embedded nats started", "data_dir", a.cfg.DataDir)
	}
	id, err := instanceID()
	if err != nil {
		return err
	}
	natsCfg := a.cfg.NATS
	natsCfg.Name = "logtally " + a.cfg.Target + " " + id
	if a.conn, err = natsconn.Connect(natsCfg, a.srv, a.log); err != nil {
		return err
	}
	a.health.Add("nats", func() error {
		if !a.conn.NC.IsConnected() {
			return errors.New("not connected to nats")
		}
		return nil
	})

	topo := a.cfg.Topology()
	if topo.Partitions, err = ensureTopology(ctx, a.conn, topo, a.log); err != nil {
		return err
	}
	deps := service.Deps{
		Log: a.log, NATS: a.conn, Registerer: a.reg, Mux: a.mux,
		Health: a.health, Topology: topo, InstanceID: id, GRPCOptions: grpcOpts,
	}
	var services []service.Service
	// Consumers of the pipeline start before its producers, and stop after them.
	if a.cfg.Runs(TargetAggregator) {
		if a.Aggregator, err = aggregator.New(a.cfg.Aggregator, deps); err != nil {
			return err
		}
		services = append(services, a.Aggregator)
	}
	if a.cfg.Runs(TargetParser) {
		if a.Parser, err = parser.New(a.cfg.Parser, deps); err != nil {
			return err
		}
		services = append(services, a.Parser)
	}
	if a.cfg.Runs(TargetDetector) {
		dc := a.cfg.Detector
		dc.RulesFile = a.cfg.RulesFile
		if a.Detector, err = detector.New(dc, deps); err != nil {
			return err
		}
		services = append(services, a.Detector)
	}
	if a.cfg.Runs(TargetExport) {
		if a.Export, err = export.New(a.cfg.Export, deps); err != nil {
			return err
		}
		services = append(services, a.Export)
	}
	if a.cfg.Runs(TargetQuery) {
		qc := a.cfg.Query
		qc.RulesFile = a.cfg.RulesFile
		if a.Query, err = query.New(qc, deps); err != nil {
			return err
		}
		services = append(services, a.Query)
	}
	if a.cfg.Runs(TargetIngest) {
		if a.Ingest, err = ingest.New(a.cfg.Ingest, deps); err != nil {
			return err
		}
		services = append(services, a.Ingest)
	}
	a.group = service.NewGroup(a.log, services...)
	if err := a.group.Start(ctx); err != nil {
		return err
	}
	a.started.Store(true)
	a.log.Info("logtally started", "target", a.cfg.Target, "http", a.listener.Addr().String(), "instance", id)
	return nil
}

// startingHandler serves the mux, but while the components are starting a
// path that is not registered yet (POST /api/v1/ingest before ingest has
// started) answers 503 with Retry-After instead of 404: a client that
// retries on 503, as load balancers and log shippers do, must not see the
// route as missing. /healthz, /readyz and /metrics are served throughout.
func (a *App) startingHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.started.Load() {
			if _, pattern := a.mux.Handler(r); pattern == "" {
				w.Header().Set("Retry-After", "1")
				obs.WriteError(w, http.StatusServiceUnavailable, "logtally is starting")
				return
			}
		}
		a.mux.ServeHTTP(w, r)
	})
}

// instanceID names this process uniquely among all replicas and restarts:
// ingest message IDs and aggregator leases depend on it.
func instanceID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	host, _ := os.Hostname()
	return host + "-" + hex.EncodeToString(b[:]), nil
}

// ensureTopology creates streams and buckets, waiting for NATS to come up.
// Retries wait a jittered, growing time: when every stage of a fresh
// cluster starts at once, they must not keep proposing at the same moment.
// An attempt's time grows too, from 3 s: on a fresh cluster a request about
// a stream whose leader is still being elected goes unanswered, and the
// stream is there once the next attempt asks (each step is idempotent), so
// a long first timeout only waits.
func ensureTopology(ctx context.Context, conn *natsconn.Conn, topo topology.Config, log hclog.Logger) (int, error) {
	wait, limit := 100*time.Millisecond, 3*time.Second
	for attempt := 0; ; attempt++ {
		tctx, cancel := context.WithTimeout(ctx, limit)
		limit = min(2*limit, 10*time.Second)
		p, err := topology.Ensure(tctx, conn.JS, topo)
		cancel()
		if err == nil {
			return p, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("set up streams and buckets: %w", err)
		}
		log.Warn("streams and buckets not ready; retrying", "attempt", attempt+1, "error", err)
		jittered := wait/2 + time.Duration(mrand.Int64N(int64(wait)))
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("set up streams and buckets: %w", err)
		case <-time.After(jittered):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// Stop shuts down gracefully: components in reverse order, then HTTP, the
// NATS connection (drained) and the embedded server.
func (a *App) Stop(ctx context.Context) error {
	var errs []error
	if a.group != nil {
		errs = append(errs, a.group.Stop(ctx))
	}
	if a.httpSrv != nil {
		errs = append(errs, a.httpSrv.Shutdown(ctx))
	}
	if a.conn != nil {
		a.conn.Close()
	}
	if a.srv != nil {
		a.srv.Shutdown()
		a.srv.WaitForShutdown()
	}
	a.log.Info("logtally stopped")
	return errors.Join(errs...)
}

// NATS is the process's connection (tests read streams through it).
func (a *App) NATS() *natsconn.Conn { return a.conn }

// Kill stops the process as a crash would: no flush, no ack, no release;
// the NATS connection is dropped. Tests use it to prove recovery.
func (a *App) Kill() {
	if a.Parser != nil {
		a.Parser.Kill()
	}
	if a.Aggregator != nil {
		a.Aggregator.Kill()
	}
	if a.conn != nil {
		a.conn.NC.Close()
	}
	if a.group != nil {
		// Listeners and servers still have to let go of their ports.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.group.Stop(ctx)
	}
	if a.httpSrv != nil {
		_ = a.httpSrv.Close()
	}
	if a.srv != nil {
		a.srv.Shutdown()
		a.srv.WaitForShutdown()
	}
}

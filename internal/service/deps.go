package service

import (
	"net/http"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/logtally/logtally/internal/natsconn"
	"github.com/logtally/logtally/internal/obs"
	"github.com/logtally/logtally/internal/topology"
)

// Deps is what the process hands each component.
type Deps struct {
	Log hclog.Logger
	// NATS is the process's connection; components must not close it.
	NATS *natsconn.Conn
	// Registerer takes the component's Prometheus metrics.
	Registerer prometheus.Registerer
	// Mux is the process's HTTP server (-http.addr); components add routes.
	Mux *http.ServeMux
	// Health takes the component's readiness check.
	Health *obs.Health
	// Topology has the effective partition count after topology.Ensure.
	Topology topology.Config
	// InstanceID is unique per process (and per test instance).
	InstanceID string
	// GRPCOptions carry the API's authentication and TLS for gRPC servers.
	GRPCOptions []grpc.ServerOption
}

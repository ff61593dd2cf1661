// Package apiauth protects the HTTP and gRPC APIs: optional bearer tokens
// (one for ingest, one for queries) and TLS with optional client
// certificates. /healthz and /readyz always stay open so that probes work;
// /metrics is open unless -auth.protect-metrics is set.
package apiauth

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Config of API authentication and TLS.
type Config struct {
	IngestToken    string `yaml:"ingest_token"`
	QueryToken     string `yaml:"query_token"`
	ProtectMetrics bool   `yaml:"protect_metrics"`
	TLSCertFile    string `yaml:"tls_cert_file"`
	TLSKeyFile     string `yaml:"tls_key_file"`
	ClientCAFile   string `yaml:"client_ca_file"`
}

// RegisterFlags registers the auth.* and api.tls.* flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.IngestToken, "auth.ingest-token", "", "bearer token required by POST /api/v1/ingest and POST /v1/logs (empty: open); set it through LOGTALLY_AUTH_INGEST_TOKEN")
	f.StringVar(&c.QueryToken, "auth.query-token", "", "bearer token required by the query API, the dashboard and gRPC (empty: open); set it through LOGTALLY_AUTH_QUERY_TOKEN")
	f.BoolVar(&c.ProtectMetrics, "auth.protect-metrics", false, "require the query token for /metrics too")
	f.StringVar(&c.TLSCertFile, "api.tls.cert-file", "", "certificate for HTTPS and gRPC over TLS (empty: plain text)")
	f.StringVar(&c.TLSKeyFile, "api.tls.key-file", "", "key of -api.tls.cert-file")
	f.StringVar(&c.ClientCAFile, "api.tls.client-ca-file", "", "CA of client certificates; when set, clients must present one (mutual TLS)")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("api.tls.cert-file and api.tls.key-file go together")
	}
	if c.ClientCAFile != "" && c.TLSCertFile == "" {
		return errors.New("api.tls.client-ca-file needs api.tls.cert-file")
	}
	if c.ProtectMetrics && c.QueryToken == "" {
		return errors.New("auth.protect-metrics needs auth.query-token")
	}
	return nil
}

// TLS returns the server TLS configuration, or nil for plain text.
func (c *Config) TLS() (*tls.Config, error) {
	if c.TLSCertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load api certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read api client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("api client CA %s: no certificate found", c.ClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// tokenFor is the token a request path needs ("" = open).
func (c *Config) tokenFor(path string) string {
	switch {
	case path == "/healthz" || path == "/readyz":
		return ""
	case path == "/metrics":
		if c.ProtectMetrics {
			return c.QueryToken
		}
		return ""
	case path == "/api/v1/ingest" || path == "/v1/logs": // OTLP/HTTP logs are ingest
		return c.IngestToken
	case path == "/v1/decisions" || path == "/v1/decisions/stream":
		// The CrowdSec LAPI for bouncers, which send their X-Api-Key
		// (checked against -decisions.bouncer-key) and no bearer token.
		return ""
	default:
		return c.QueryToken
	}
}

func bearerOK(header, want string) bool {
	got, ok := strings.CutPrefix(header, "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// HTTP wraps h with the token checks.
func (c *Config) HTTP(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if want := c.tokenFor(r.URL.Path); want != "" && !bearerOK(r.Header.Get("Authorization"), want) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="logtally"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"missing or wrong bearer token"}` + "\n"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// healthService stays open for probes.
const healthService = "/grpc.health.v1.Health/"

func (c *Config) checkGRPC(ctx context.Context, method string) error {
	if c.QueryToken == "" || strings.HasPrefix(method, healthService) {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if bearerOK(v, c.QueryToken) {
			return nil
		}
	}
	return status.Error(codes.Unauthenticated, "missing or wrong bearer token")
}

// GRPCServerOptions returns interceptors checking the query token (and the
// TLS credentials when configured).
func (c *Config) GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := c.checkGRPC(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := c.checkGRPC(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

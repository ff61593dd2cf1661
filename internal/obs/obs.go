// Package obs holds what every target shares for operation: the structured
// logger and the admin HTTP endpoints /healthz, /readyz and /metrics.
package obs

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// LogConfig selects log format and level.
type LogConfig struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`
}

// RegisterFlags registers -log.format and -log.level.
func (c *LogConfig) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.Format, "log.format", "logfmt", "log format: logfmt or json")
	f.StringVar(&c.Level, "log.level", "info", "log level: trace, debug, info, warn, error")
}

// Validate checks the configuration.
func (c *LogConfig) Validate() error {
	if c.Format != "logfmt" && c.Format != "json" {
		return fmt.Errorf("log.format must be logfmt or json, got %q", c.Format)
	}
	if hclog.LevelFromString(c.Level) == hclog.NoLevel {
		return fmt.Errorf("log.level %q is not a level", c.Level)
	}
	return nil
}

// NewLogger builds the process logger.
func NewLogger(c LogConfig, w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "logtally",
		Level:      hclog.LevelFromString(c.Level),
		JSONFormat: c.Format == "json",
		Output:     w,
	})
}

// NewRegistry returns a registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Checker reports whether a component is ready; nil means ready.
type Checker func() error

// Health collects readiness checks of the components in a process.
type Health struct {
	mu     sync.Mutex
	checks map[string]Checker
}

// NewHealth returns an empty set of checks.
func NewHealth() *Health { return &Health{checks: map[string]Checker{}} }

// Add registers a named readiness check.
func (h *Health) Add(name string, c Checker) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = c
}

// Remove drops a check, e.g. when a component stops.
func (h *Health) Remove(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.checks, name)
}

// Ready runs every check and returns the failures by component.
func (h *Health) Ready() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	failed := map[string]string{}
	for name, c := range h.checks {
		if err := c(); err != nil {
			failed[name] = err.Error()
		}
	}
	return failed
}

// Register adds /healthz, /readyz and /metrics to mux.
func Register(mux *http.ServeMux, h *Health, g prometheus.Gatherer) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if failed := h.Ready(); len(failed) > 0 {
			WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "failed": failed})
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
}

// WriteJSON writes v as a JSON response.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError writes {"error": msg} with the status code.
func WriteError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, map[string]string{"error": msg})
}

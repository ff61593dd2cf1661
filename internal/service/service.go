// Package service gives components a common lifecycle: start in order, run
// until asked to stop, stop in reverse order with a grace period.
package service

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
)

// Service is one component of a logtally process.
type Service interface {
	// Name identifies the service in logs and readiness answers.
	Name() string
	// Start sets the service up and returns once it serves; work continues
	// in goroutines owned by the service.
	Start(ctx context.Context) error
	// Stop shuts down gracefully: stop taking work, drain, flush, ack.
	Stop(ctx context.Context) error
}

// Group runs services as one unit.
type Group struct {
	log      hclog.Logger
	services []Service
	started  []Service
}

// NewGroup returns a group of services, started in the given order.
func NewGroup(log hclog.Logger, s ...Service) *Group { return &Group{log: log, services: s} }

// Start starts every service; on failure the ones started are stopped again.
func (g *Group) Start(ctx context.Context) error {
	for _, s := range g.services {
		g.log.Info("starting", "service", s.Name())
		if err := s.Start(ctx); err != nil {
			stopErr := g.Stop(context.WithoutCancel(ctx))
			return errors.Join(fmt.Errorf("start %s: %w", s.Name(), err), stopErr)
		}
		g.started = append(g.started, s)
	}
	return nil
}

// Stop stops the started services in reverse order.
func (g *Group) Stop(ctx context.Context) error {
	var errs []error
	for i := len(g.started) - 1; i >= 0; i-- {
		s := g.started[i]
		g.log.Info("stopping", "service", s.Name())
		if err := s.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", s.Name(), err))
		}
	}
	g.started = nil
	return errors.Join(errs...)
}

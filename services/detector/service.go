// Package detector turns counts into decisions: every interval it
// evaluates each rule of the rules file over the windows read model (the
// keys whose count over the rule's sliding range is above its threshold)
// and writes a decision for each key that has none active. Decisions are
// KV entries created with compare-and-set (internal/decisions), so several
// detector replicas make one decision per (rule, key, episode) between
// them, and a restart or a replayed evaluation never makes a second one.
package detector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/logtally/logtally/internal/decisions"
	"github.com/logtally/logtally/internal/service"
	"github.com/logtally/logtally/internal/windows"
)

// Service is the detector stage.
type Service struct {
	cfg    Config
	deps   service.Deps
	log    hclog.Logger
	m      *metrics
	reader *windows.Reader
	store  *decisions.Store
	rules  *RulesFile
	now    func() time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup
	warned map[string]bool // prefix rules already reported as not evaluated
	hooks  chan decisions.Decision
}

// New builds the detector.
func New(cfg Config, deps service.Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := deps.Log.Named("detector")
	rc := windows.DefaultConfig()
	rc.MaxN = cfg.MaxOffenders
	r, err := windows.New(rc, deps.NATS.JS, deps.Topology.Partitions, deps.Topology.Resolutions, log)
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, deps: deps, log: log, m: newMetrics(deps.Registerer), reader: r, now: time.Now, warned: map[string]bool{}, hooks: make(chan decisions.Decision, webhookQueue)}, nil
}

// Name implements service.Service.
func (s *Service) Name() string { return "detector" }

// Start reads the rules, follows the windows and the decisions, and starts
// the evaluation loop.
func (s *Service) Start(ctx context.Context) error {
	var err error
	if s.cfg.RulesFile != "" {
		if s.rules, err = OpenRules(s.cfg.RulesFile, s.log, nil, WithRegisterer(s.deps.Registerer)); err != nil {
			return err
		}
	}
	if err := s.reader.Start(ctx); err != nil {
		return err
	}
	if s.store, err = decisions.Open(ctx, s.deps.NATS.JS); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	if err := s.store.Watch(runCtx, func(del decisions.Deletion) {
		if err := s.store.RecordExpiry(runCtx, del); err != nil {
			s.log.Warn("record expiry", "decision", del.Decision.ID, "error", err)
		}
	}); err != nil {
		cancel()
		return err
	}
	select {
	case <-s.store.Ready():
	case <-ctx.Done():
		cancel()
		return ctx.Err()
	}
	if s.deps.Health != nil {
		s.deps.Health.Add("detector", s.reader.Readiness)
	}
	s.wg.Go(func() { s.loop(runCtx) })
	s.wg.Go(func() { s.outputs(runCtx) })
	if s.cfg.WebhookURL != "" {
		s.wg.Go(func() { s.webhook(runCtx) })
	}
	return nil
}

// Stop ends the loop after the evaluation in progress.
func (s *Service) Stop(ctx context.Context) error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	var errs []error
	if s.rules != nil {
		errs = append(errs, s.rules.Close())
	}
	errs = append(errs, s.reader.Stop(ctx))
	return errors.Join(errs...)
}

func (s *Service) loop(ctx context.Context) {
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	last := s.now()
	for {
		start := s.now()
		if err := s.evaluate(ctx); err != nil && ctx.Err() == nil {
			s.m.failures.Inc()
			s.log.Warn("evaluate rules", "error", err)
		} else if err == nil {
			last = start
			s.m.evalSeconds.Observe(s.now().Sub(start).Seconds())
			s.m.lastEval.Set(float64(s.now().UnixNano()) / 1e9)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.m.lag.Set(s.now().Sub(last).Seconds())
		}
	}
}

func (s *Service) currentRules() *Rules {
	if s.rules == nil {
		return &Rules{Mode: ModeEnforce}
	}
	return s.rules.Current()
}

// evaluate runs every rule once.
func (s *Service) evaluate(ctx context.Context) error {
	rules := s.currentRules()
	budget := s.cfg.MaxNewPerRun
	var errs []error
	for i := range rules.Rules {
		rule := &rules.Rules[i]
		if rule.Key != KeyIP {
			if !s.warned[rule.Name] {
				s.warned[rule.Name] = true
				s.log.Error("rule not evaluated: key prefix is not supported by this release yet", "rule", rule.Name)
			}
			s.m.decisions.WithLabelValues(rule.Name, "unsupported").Inc()
			continue
		}
		n, err := s.evaluateRule(ctx, rules, rule, budget)
		budget -= n
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %s: %w", rule.Name, err))
		}
	}
	return errors.Join(errs...)
}

// evaluateRule decides the keys over rule's threshold that have no active
// decision, at most budget of them, and returns how many it decided.
func (s *Service) evaluateRule(ctx context.Context, rules *Rules, rule *Rule, budget int) (int, error) {
	now := s.now().UTC()
	// The sliding range ends with the current minute, included.
	to := now.Truncate(time.Minute).Add(time.Minute)
	rg := windows.Range{From: to.Add(-rule.Range), To: to}
	res, err := s.reader.Top(ctx, rg, windows.TopQuery{N: s.cfg.MaxOffenders, Class: rule.Class})
	if err != nil {
		return 0, err
	}
	if len(res.Items) == s.cfg.MaxOffenders && res.Items[len(res.Items)-1].Count > rule.Threshold {
		s.m.truncated.WithLabelValues(rule.Name).Inc()
	}
	made := 0
	for _, it := range res.Items {
		if it.Count <= rule.Threshold {
			break // ranked by count
		}
		key := rule.KeyOf(it.IP)
		if rules.Allowed(key) {
			s.m.decisions.WithLabelValues(rule.Name, "allowed").Inc()
			continue
		}
		if s.store.HasActive(rule.Name, key) {
			s.m.decisions.WithLabelValues(rule.Name, "active").Inc()
			continue
		}
		if made >= budget {
			s.m.rateLimited.Inc()
			continue
		}
		offences, err := s.store.Offences(ctx, rule.Name, key, now, rule.Escalation.Lookback)
		if err != nil {
			return made, err
		}
		ban := rule.BanFor(offences)
		d := decisions.Decision{
			Rule: rule.Name, Key: key.String(), Count: it.Count, Threshold: rule.Threshold,
			Class: rule.Class.String(), Range: windows.FormatDuration(rule.Range), Window: rg.String(),
			Origin: "logtally", By: s.deps.InstanceID, Created: now, Until: now.Add(ban),
			Offence: offences, Simulated: rules.Mode == ModeSimulate,
		}
		created, err := s.store.Create(ctx, d, ban)
		if errors.Is(err, decisions.ErrActive) {
			s.m.decisions.WithLabelValues(rule.Name, "active").Inc()
			continue // another replica, or this one before a restart
		}
		if err != nil {
			return made, err
		}
		made++
		outcome := "new"
		if d.Simulated {
			outcome = "simulated"
		}
		s.m.decisions.WithLabelValues(rule.Name, outcome).Inc()
		if !d.Simulated {
			s.notify(created)
		}
		s.log.Info("decision", "id", created.ID, "rule", rule.Name, "key", d.Key, "count", it.Count, "threshold", rule.Threshold, "ban", ban, "offence", offences, "simulated", d.Simulated)
		if err := s.store.RecordOffence(ctx, rule.Name, key, now, rule.Escalation.Lookback); err != nil {
			return made, err
		}
	}
	return made, nil
}

// Store is the decisions store the detector writes (for tests and the
// all-in-one process).
func (s *Service) Store() *decisions.Store { return s.store }

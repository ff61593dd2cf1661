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
	"net/netip"
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
	hooks  chan decisions.Decision
	audit  *auditQueue
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
	return &Service{cfg: cfg, deps: deps, log: log, m: newMetrics(deps.Registerer), reader: r, now: time.Now, hooks: make(chan decisions.Decision, webhookQueue)}, nil
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
	s.audit = newAuditQueue()
	onExpired := func(del decisions.Deletion) {
		s.audit.add(func(ctx context.Context) error { return s.store.RecordExpiry(ctx, del) })
	}
	onNew := func(d decisions.Decision) {
		s.audit.add(func(ctx context.Context) error { return s.store.RecordNew(ctx, d) })
	}
	if err := s.store.Watch(runCtx, onExpired, onNew); err != nil {
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
	s.wg.Go(func() { s.audit.run(runCtx, s.log, s.m.auditFailures) })
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
		n, err := s.evaluateRule(ctx, rules, rule, budget)
		budget -= n
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %s: %w", rule.Name, err))
		}
	}
	return errors.Join(errs...)
}

// evaluateRule decides the keys over rule's threshold that have no active
// decision, at most budget of them, and returns how many it decided. The
// heaviest MaxOffenders keys come first (Top); when there are more, the
// budget left goes to the others in address order (Above), so that a
// million offenders are all decided, budget by budget, while the heaviest
// are decided first.
func (s *Service) evaluateRule(ctx context.Context, rules *Rules, rule *Rule, budget int) (int, error) {
	now := s.now().UTC()
	// The sliding range ends with the current minute, included.
	to := now.Truncate(time.Minute).Add(time.Minute)
	rg := windows.Range{From: to.Add(-rule.Range), To: to}
	top, err := s.offenders(ctx, rule, rg)
	if err != nil {
		return 0, err
	}
	made, waiting := 0, 0
	decide := func(key netip.Prefix, count uint64) error {
		switch {
		case rules.Allowed(key):
			s.m.decisions.WithLabelValues(rule.Name, "allowed").Inc()
			return nil
		case s.decided(rules, rule, key):
			return nil
		case made >= budget:
			waiting++
			return nil
		}
		ok, err := s.decide(ctx, rules, rule, rg, now, key, count)
		if ok {
			made++
		}
		return err
	}
	for _, it := range top {
		if it.count <= rule.Threshold {
			break // ranked by count
		}
		if err := decide(it.key, it.count); err != nil {
			return made, err
		}
	}
	if len(top) == s.cfg.MaxOffenders && top[len(top)-1].count > rule.Threshold {
		s.m.truncated.WithLabelValues(rule.Name).Inc()
		if made < budget {
			bits4, bits6 := 32, 128
			if rule.Key == KeyPrefix {
				bits4, bits6 = rule.PrefixV4, rule.PrefixV6
			}
			keep := func(pc windows.PrefixCount) bool {
				return !rules.Allowed(pc.Prefix) && !s.decided(rules, rule, pc.Prefix)
			}
			rest, more, err := s.reader.Above(ctx, rg, windows.AboveQuery{Class: rule.Class, Min: rule.Threshold, V4Bits: bits4, V6Bits: bits6, Limit: budget - made}, keep)
			if err != nil {
				return made, err
			}
			for _, pc := range rest {
				if err := decide(pc.Prefix, pc.Count); err != nil {
					return made, err
				}
			}
			if more {
				waiting++
			}
		}
	}
	if waiting > 0 {
		s.m.rateLimited.WithLabelValues(rule.Name).Inc()
	}
	return made, nil
}

// decided reports whether key has an active decision of rule that the
// rules' mode keeps: in enforce mode a simulated one (made before the
// switch from simulate) does not count, so the key is decided for real.
func (s *Service) decided(rules *Rules, rule *Rule, key netip.Prefix) bool {
	d, ok := s.store.ActiveFor(rule.Name, key)
	return ok && (!d.Simulated || rules.Mode == ModeSimulate)
}

// decide makes the decision of key under rule, escalated by the key's
// earlier offences; false when another replica (or this one before a
// restart) had made it.
func (s *Service) decide(ctx context.Context, rules *Rules, rule *Rule, rg windows.Range, now time.Time, key netip.Prefix, count uint64) (bool, error) {
	offences, err := s.store.Offences(ctx, rule.Name, key, now, rule.Escalation.Lookback)
	if err != nil {
		return false, err
	}
	ban := rule.BanFor(offences)
	d := decisions.Decision{
		Rule: rule.Name, Key: key.String(), Count: count, Threshold: rule.Threshold,
		Class: rule.Class.String(), Range: windows.FormatDuration(rule.Range), Window: rg.String(),
		Origin: "logtally", By: s.deps.InstanceID, Created: now, Until: now.Add(ban),
		Offence: offences, Simulated: rules.Mode == ModeSimulate,
	}
	if old, ok := s.store.ActiveFor(rule.Name, key); ok && old.Simulated && !d.Simulated {
		// Switched to enforce: the simulated decision makes way.
		if _, err := s.store.Delete(ctx, old.ID, "mode enforce"); err != nil && !errors.Is(err, decisions.ErrNotFound) {
			return false, err
		}
	}
	created, err := s.store.Create(ctx, d, ban)
	if errors.Is(err, decisions.ErrActive) {
		s.m.decisions.WithLabelValues(rule.Name, "active").Inc()
		return false, nil
	}
	if err != nil {
		return false, err
	}
	outcome := "new"
	if d.Simulated {
		outcome = "simulated"
	}
	s.m.decisions.WithLabelValues(rule.Name, outcome).Inc()
	if !d.Simulated {
		s.notify(created)
	}
	s.log.Info("decision", "id", created.ID, "rule", rule.Name, "key", d.Key, "count", count, "threshold", rule.Threshold, "ban", ban, "offence", offences, "simulated", d.Simulated)
	if d.Simulated {
		return true, nil // a rehearsal: no offence to escalate later bans
	}
	return true, s.store.RecordOffence(ctx, rule.Name, key, now, rule.Escalation.Lookback)
}

// offender is a key and its count over a rule's range.
type offender struct {
	key   netip.Prefix
	count uint64
}

// offenders reads the keys of rule with the highest counts over rg, at
// most MaxOffenders of them, ranked by count: addresses from Top, networks
// from TopPrefixes.
func (s *Service) offenders(ctx context.Context, rule *Rule, rg windows.Range) ([]offender, error) {
	var out []offender
	if rule.Key == KeyPrefix {
		res, err := s.reader.TopPrefixes(ctx, rg, windows.PrefixQuery{N: s.cfg.MaxOffenders, Class: rule.Class, V4Bits: rule.PrefixV4, V6Bits: rule.PrefixV6})
		if err != nil {
			return nil, err
		}
		for _, it := range res.Items {
			out = append(out, offender{key: it.Prefix, count: it.Count})
		}
		return out, nil
	}
	res, err := s.reader.Top(ctx, rg, windows.TopQuery{N: s.cfg.MaxOffenders, Class: rule.Class})
	if err != nil {
		return nil, err
	}
	for _, it := range res.Items {
		out = append(out, offender{key: rule.KeyOf(it.IP), count: it.Count})
	}
	return out, nil
}

// Store is the decisions store the detector writes (for tests and the
// all-in-one process).
func (s *Service) Store() *decisions.Store { return s.store }

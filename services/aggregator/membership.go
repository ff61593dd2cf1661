package aggregator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Membership lives in the members bucket, whose TTL is the session timeout:
//
//	m.<instance>   heartbeat of a live aggregator
//	p.<partition>  lease: the instance that owns the partition
//
// Every heartbeat an instance computes the same assignment from the sorted
// list of live members (round-robin, so each owns ⌊P/R⌋ or ⌈P/R⌉), releases
// what is no longer its own, renews its leases with compare-and-swap and
// claims free or orphaned partitions. A lease only moves when its holder
// freed it or its heartbeat expired; state writes are fenced by CAS anyway.

func memberKey(id string) string { return "m." + id }
func leaseKey(p int) string      { return "p." + strconv.Itoa(p) }

type lease struct {
	holder string
	rev    uint64
}

func (s *Service) loop() {
	defer close(s.loopDone)
	t := time.NewTicker(s.cfg.Heartbeat)
	defer t.Stop()
	for {
		if err := s.tick(); err != nil && s.ctx.Err() == nil {
			s.log.Warn("membership round failed", "error", err)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-s.stopCh:
			return
		case <-t.C:
		}
	}
}

func (s *Service) tick() error {
	ctx, cancel := context.WithTimeout(s.ctx, 5*s.cfg.Heartbeat+2*time.Second)
	defer cancel()
	if _, err := s.members.PutString(ctx, memberKey(s.id), s.id); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	if s.knobs.ownAll {
		for p := 0; p < s.deps.Topology.Partitions; p++ {
			s.mu.Lock()
			_, have := s.owned[p]
			s.mu.Unlock()
			if !have {
				s.claim(p, 0)
			}
		}
		s.ready.Store(true)
		return nil
	}
	live, leases, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(live, s.id) {
		live = append(live, s.id)
		slices.Sort(live)
	}
	s.m.members.Set(float64(len(live)))
	n := s.deps.Topology.Partitions
	mine := func(p int) bool { return live[p%len(live)] == s.id }

	s.mu.Lock()
	var drop, renew []int
	for p := range s.owned {
		if mine(p) {
			renew = append(renew, p)
		} else {
			drop = append(drop, p)
		}
	}
	s.mu.Unlock()

	for _, p := range drop {
		// The final flush of a partition can take long (merging big
		// windows): done in the background, so that heartbeats and
		// lease renewals go on meanwhile.
		s.releaseAsync(p)
	}
	for _, p := range renew {
		s.mu.Lock()
		r := s.owned[p]
		s.mu.Unlock()
		rev, err := s.members.Update(ctx, leaseKey(p), []byte(s.id), r.rev)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) || isWrongLastSeq(err) {
				s.abort(p)
				continue
			}
			return fmt.Errorf("renew lease of partition %d: %w", p, err)
		}
		s.mu.Lock()
		r.rev = rev
		s.mu.Unlock()
	}
	for p := 0; p < n; p++ {
		if !mine(p) {
			continue
		}
		s.mu.Lock()
		_, have := s.owned[p]
		_, leaving := s.releasing[p]
		s.mu.Unlock()
		if have || leaving {
			continue
		}
		l, held := leases[p]
		var rev uint64
		switch {
		case !held:
			rev, err = s.members.Create(ctx, leaseKey(p), []byte(s.id))
		case l.holder == s.id || !slices.Contains(live, l.holder):
			rev, err = s.members.Update(ctx, leaseKey(p), []byte(s.id), l.rev)
		default:
			continue // the holder is alive and will free it on its next round
		}
		if err != nil {
			s.log.Debug("partition claim lost a race", "partition", p, "error", err)
			continue
		}
		s.claim(p, rev)
	}
	if owned := len(s.Owned()); owned != s.lastOwned {
		s.log.Info("partition ownership changed", "owned", owned, "partitions", n, "members", len(live))
		s.lastOwned = owned
	}
	s.ready.Store(true)
	return nil
}

// snapshot reads the live members and the leases.
func (s *Service) snapshot(ctx context.Context) ([]string, map[int]lease, error) {
	w, err := s.members.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, nil, fmt.Errorf("read membership: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var live []string
	leases := map[int]lease{}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, nil, errors.New("read membership: watcher closed")
			}
			if e == nil {
				slices.Sort(live)
				return live, leases, nil
			}
			key := e.Key()
			switch {
			case strings.HasPrefix(key, "m."):
				live = append(live, strings.TrimPrefix(key, "m."))
			case strings.HasPrefix(key, "p."):
				p, err := strconv.Atoi(strings.TrimPrefix(key, "p."))
				if err == nil {
					leases[p] = lease{holder: string(e.Value()), rev: e.Revision()}
				}
			}
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("read membership: %w", ctx.Err())
		}
	}
}

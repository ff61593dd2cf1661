// Package aggregator keeps exact per-IP counts in event-time windows. Each
// partition of logs.parsed has one active owner among the aggregator
// replicas; the owner counts in memory and writes one KV value per
// (resolution, window, partition) with compare-and-swap. See docs/design.md
// for the exactly-once argument.
package aggregator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/service"
	"github.com/logtally/logtally/internal/topology"
)

// Service is the aggregator stage.
type Service struct {
	cfg  Config
	deps service.Deps
	log  hclog.Logger
	js   jetstream.JetStream
	id   string
	m    *metrics

	res    []topology.Resolution
	stores []*counts.Store
	// res are the per-IP resolutions, then the same for the dims windows:
	// a windowKey's res indexes both res and stores, and res below nIP are
	// the per-IP ones.
	nIP     int
	state   jetstream.KeyValue
	members jetstream.KeyValue
	parsed  jetstream.Stream
	raw     jetstream.Stream

	// rawSample is the newest sample of the raw and parsed streams, for
	// finding lost batches (partition.checkRaw).
	rawSample atomic.Pointer[rawSample]

	ctx      context.Context
	cancel   context.CancelFunc
	loopDone chan struct{}
	stopCh   chan struct{}
	stopLoop sync.Once
	ready    atomic.Bool

	// knobs are fault injection for tests; zero in production.
	knobs struct {
		// ownAll makes the instance run every partition without leases, so
		// that instances with distinct ids truly run side by side.
		ownAll bool
		// beforeCheckpoint runs after a flush committed its windows and
		// before it writes the checkpoint; an error (errInjectedCrash)
		// drops the partition's memory as a crash would.
		beforeCheckpoint func(p int) error
	}

	crashes atomic.Int64 // CrashBeforeCheckpoint

	mu        sync.Mutex
	owned     map[int]*runner
	releasing map[int]struct{} // final flush under way (releaseAsync)
	releases  sync.WaitGroup
	lastOwned int // for logging changes only; used by the membership loop
}

// rawSample is one reading of the streams, in this order: the raw stream's
// first sequence (every raw batch below it was acknowledged by a parser,
// after its outputs were stored, or dropped), then the parsed stream's last
// sequence (every output of those raw batches is at or below it).
type rawSample struct {
	rawFirst   uint64
	parsedLast uint64
}

type runner struct {
	cancel  context.CancelFunc
	release chan struct{}
	done    chan struct{}
	rev     uint64 // revision of the lease key
}

// New builds the aggregator.
func New(cfg Config, deps service.Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.InstanceID == "" {
		return nil, errors.New("aggregator: instance id is empty")
	}
	return &Service{
		cfg:       cfg,
		deps:      deps,
		log:       deps.Log.Named("aggregator"),
		js:        deps.NATS.JS,
		id:        deps.InstanceID,
		m:         newMetrics(deps.Registerer),
		res:       append(slices.Clone(deps.Topology.Resolutions), topology.WithDataset(deps.Topology.Resolutions, topology.DimsDataset)...),
		nIP:       len(deps.Topology.Resolutions),
		owned:     map[int]*runner{},
		releasing: map[int]struct{}{},
	}, nil
}

// Name implements service.Service.
func (s *Service) Name() string { return "aggregator" }

// Start opens the buckets and joins the membership.
func (s *Service) Start(ctx context.Context) error {
	maxPayload := s.deps.NATS.NC.MaxPayload()
	for _, r := range s.res {
		layout := counts.DefaultLayout(maxPayload, r.Retention)
		layout.ChunkBytes = min(layout.ChunkBytes, s.cfg.ChunkBytes)
		layout.InlineBytes = min(layout.InlineBytes, layout.ChunkBytes/4)
		st, err := counts.NewStore(ctx, s.js, r.Bucket(), layout)
		if err != nil {
			return err
		}
		s.stores = append(s.stores, st)
	}
	var err error
	if s.state, err = s.js.KeyValue(ctx, topology.StateBucket); err != nil {
		return fmt.Errorf("open bucket %s: %w", topology.StateBucket, err)
	}
	if s.members, err = s.js.KeyValue(ctx, topology.MembersBucket); err != nil {
		return fmt.Errorf("open bucket %s: %w", topology.MembersBucket, err)
	}
	if s.parsed, err = s.js.Stream(ctx, topology.ParsedStream); err != nil {
		return fmt.Errorf("open stream %s: %w", topology.ParsedStream, err)
	}
	if s.raw, err = s.js.Stream(ctx, topology.RawStream); err != nil {
		return fmt.Errorf("open stream %s: %w", topology.RawStream, err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.loopDone = make(chan struct{})
	s.stopCh = make(chan struct{})
	if s.deps.Health != nil {
		s.deps.Health.Add("aggregator", func() error {
			if !s.ready.Load() {
				return errors.New("membership not joined yet")
			}
			return nil
		})
	}
	go s.loop()
	go s.sampleStreams()
	s.log.Info("aggregator started", "instance", s.id, "partitions", s.deps.Topology.Partitions)
	return nil
}

// sampleStreams reads the raw stream's first sequence and then the parsed
// stream's last one every GapCheckInterval until the service stops.
func (s *Service) sampleStreams() {
	t := time.NewTicker(s.cfg.GapCheckInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		if sm, err := s.sample(ctx); err == nil {
			s.rawSample.Store(sm)
		} else if s.ctx.Err() == nil {
			s.log.Debug("sample streams for lost batches", "error", err)
		}
		cancel()
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) sample(ctx context.Context) (*rawSample, error) {
	ri, err := s.raw.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("info of stream %s: %w", topology.RawStream, err)
	}
	pi, err := s.parsed.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("info of stream %s: %w", topology.ParsedStream, err)
	}
	first := ri.State.FirstSeq
	if ri.State.Msgs == 0 {
		// An empty work queue: everything up to its last sequence is done.
		first = ri.State.LastSeq + 1
	}
	return &rawSample{rawFirst: first, parsedLast: pi.State.LastSeq}, nil
}

// Stop releases every partition after a final flush and leaves the membership.
func (s *Service) Stop(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.loopStop()
	s.mu.Lock()
	ps := make([]int, 0, len(s.owned))
	for p := range s.owned {
		ps = append(ps, p)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.release(ctx, p)
		}()
	}
	wg.Wait()
	released := make(chan struct{})
	go func() { s.releases.Wait(); close(released) }()
	select {
	case <-released:
	case <-ctx.Done():
	}
	if err := s.members.Delete(ctx, memberKey(s.id)); err != nil {
		s.log.Warn("leave membership", "error", err)
	}
	s.cancel()
	if s.deps.Health != nil {
		s.deps.Health.Remove("aggregator")
	}
	s.log.Info("aggregator stopped", "instance", s.id)
	return nil
}

// Kill stops at once without flushing or releasing anything, as a crash
// would; tests use it to prove recovery from the checkpoint.
func (s *Service) Kill() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.loopDone
	s.releases.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, r := range s.owned {
		<-r.done
		delete(s.owned, p)
	}
}

// CrashBeforeCheckpoint is fault injection for end-to-end tests: the next
// n flushes that commit windows end as a crash would, after the windows
// and before the checkpoint, so that the next session replays records the
// windows already hold (logtally_aggregator_replayed_records_skipped_total).
func (s *Service) CrashBeforeCheckpoint(n int) { s.crashes.Store(int64(n)) }

// Owned returns the partitions this instance owns now.
func (s *Service) Owned() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int, 0, len(s.owned))
	for p := range s.owned {
		out = append(out, p)
	}
	return out
}

func (s *Service) loopStop() {
	select {
	case <-s.loopDone:
		return
	default:
	}
	s.stopLoop.Do(func() { close(s.stopCh) })
	<-s.loopDone
}

func (s *Service) claim(p int, rev uint64) {
	ctx, cancel := context.WithCancel(s.ctx)
	r := &runner{cancel: cancel, release: make(chan struct{}), done: make(chan struct{}), rev: rev}
	s.mu.Lock()
	s.owned[p] = r
	s.mu.Unlock()
	s.m.owned.WithLabelValues(fmt.Sprint(p), s.id).Set(1)
	s.m.rebalances.Inc()
	pt := &partition{s: s, p: p}
	go func() {
		defer close(r.done)
		pt.run(ctx, r.release)
	}()
	s.log.Debug("partition claimed", "partition", p)
}

// releaseAsync releases p in the background; p is not claimed again
// until it is done.
func (s *Service) releaseAsync(p int) {
	s.mu.Lock()
	if _, ok := s.owned[p]; !ok {
		s.mu.Unlock()
		return
	}
	s.releasing[p] = struct{}{}
	s.mu.Unlock()
	s.releases.Add(1)
	go func() {
		defer s.releases.Done()
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		defer cancel()
		s.release(ctx, p)
		s.mu.Lock()
		delete(s.releasing, p)
		s.mu.Unlock()
	}()
}

// release flushes partition p, then frees its lease for the next owner.
func (s *Service) release(ctx context.Context, p int) {
	s.mu.Lock()
	r, ok := s.owned[p]
	delete(s.owned, p)
	s.mu.Unlock()
	if !ok {
		return
	}
	close(r.release)
	select {
	case <-r.done:
	case <-ctx.Done():
		r.cancel()
		<-r.done
	}
	r.cancel()
	s.m.owned.DeleteLabelValues(fmt.Sprint(p), s.id)
	s.m.rebalances.Inc()
	if err := s.members.Delete(context.WithoutCancel(ctx), leaseKey(p), jetstream.LastRevision(r.rev)); err != nil {
		s.log.Warn("free partition lease", "partition", p, "error", err)
	}
	s.log.Debug("partition released", "partition", p)
}

// abort drops partition p without flushing: its lease was lost, so another
// owner may already be writing.
func (s *Service) abort(p int) {
	s.mu.Lock()
	r, ok := s.owned[p]
	delete(s.owned, p)
	s.mu.Unlock()
	if !ok {
		return
	}
	r.cancel()
	<-r.done
	s.m.owned.DeleteLabelValues(fmt.Sprint(p), s.id)
	s.log.Warn("partition lease lost", "partition", p)
}

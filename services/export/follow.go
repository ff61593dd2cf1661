package export

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/topology"
	"github.com/logtally/logtally/internal/windows"
)

// bucket is one counts bucket the stage exports: a resolution of a dataset.
type bucket struct {
	idx   int
	res   topology.Resolution
	store *counts.Store
	kv    jetstream.KeyValue
}

// dims reports whether the bucket counts field values rather than IPs.
func (b *bucket) dims() bool { return b.res.Dataset == topology.DimsDataset }

func (b *bucket) dataset() string {
	if b.dims() {
		return "dims"
	}
	return "ip"
}

// ref names one window of one partition of one bucket.
type ref struct {
	b     int
	start int64
	part  int
}

func (r ref) key() string { return counts.Key(time.Unix(r.start, 0), r.part) }

// change is the newest revision of a window and when it was written.
type change struct {
	rev uint64
	at  time.Time
}

// queue collects the windows that changed since a sink last took them,
// keeping the time of the first change not yet taken.
type queue struct {
	mu     sync.Mutex
	refs   map[ref]time.Time
	signal chan struct{}
}

func newQueue() *queue { return &queue{refs: map[ref]time.Time{}, signal: make(chan struct{}, 1)} }

func (q *queue) add(r ref, at time.Time) {
	q.mu.Lock()
	if old, ok := q.refs[r]; !ok || at.Before(old) {
		q.refs[r] = at
	}
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// take returns the queued windows, oldest change first, and empties the
// queue.
func (q *queue) take() []queued {
	q.mu.Lock()
	out := make([]queued, 0, len(q.refs))
	for r, at := range q.refs {
		out = append(out, queued{r, at})
	}
	clear(q.refs)
	q.mu.Unlock()
	slices.SortFunc(out, func(a, b queued) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.b, b.b), cmp.Compare(a.start, b.start), cmp.Compare(a.part, b.part))
	})
	return out
}

// oldest is the time of the oldest change queued.
func (q *queue) oldest() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var at time.Time
	for _, t := range q.refs {
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	return at, !at.IsZero()
}

type queued struct {
	ref
	at time.Time
}

// follower follows the manifests of every exported bucket with a meta-only
// KV watch (as the windows read model's index does) and hands each change
// to every sink's queue. It also remembers the newest revision of every
// window, which the Parquet sink needs to know an hour's windows.
type follower struct {
	buckets []*bucket
	log     hclog.Logger
	queues  []*queue
	// gone is called when a window expired or was deleted.
	gone func(ref)

	mu     sync.RWMutex
	latest map[ref]change

	wg     sync.WaitGroup
	ready  chan struct{}
	caught sync.WaitGroup
}

func newFollower(buckets []*bucket, log hclog.Logger, queues []*queue, gone func(ref)) *follower {
	f := &follower{buckets: buckets, log: log, queues: queues, gone: gone, latest: map[ref]change{}, ready: make(chan struct{})}
	f.caught.Add(len(buckets))
	go func() { f.caught.Wait(); close(f.ready) }()
	return f
}

func (f *follower) start(ctx context.Context) {
	for _, b := range f.buckets {
		f.wg.Go(func() { f.run(ctx, b) })
	}
}

func (f *follower) run(ctx context.Context, b *bucket) {
	var once sync.Once
	caught := func() { once.Do(f.caught.Done) }
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if err := f.watch(ctx, b, caught); err != nil && ctx.Err() == nil {
			f.log.Warn("window watch failed; restarting", "bucket", b.res.Bucket(), "error", err, "backoff", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (f *follower) watch(ctx context.Context, b *bucket, caught func()) error {
	return windows.WatchManifests(ctx, b.kv, func(e jetstream.KeyValueEntry) {
		start, part, err := counts.ParseKey(e.Key())
		if err != nil {
			return
		}
		r := ref{b: b.idx, start: start.Unix(), part: part}
		if e.Operation() != jetstream.KeyValuePut {
			// An expired or deleted window: what was exported stays, the
			// memory of it goes.
			f.mu.Lock()
			delete(f.latest, r)
			f.mu.Unlock()
			if f.gone != nil {
				f.gone(r)
			}
			return
		}
		ch := change{rev: e.Revision(), at: e.Created()}
		f.mu.Lock()
		old, seen := f.latest[r]
		if !seen || ch.rev > old.rev {
			f.latest[r] = ch
		}
		f.mu.Unlock()
		if seen && ch.rev <= old.rev {
			return
		}
		for _, q := range f.queues {
			q.add(r, ch.at)
		}
	}, caught)
}

// revision is the newest revision seen of r (0: none).
func (f *follower) revision(r ref) uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.latest[r].rev
}

// within returns the windows of bucket b that start in [from, to), in
// start and partition order.
func (f *follower) within(b int, from, to int64) []ref {
	f.mu.RLock()
	var out []ref
	for r := range f.latest {
		if r.b == b && r.start >= from && r.start < to {
			out = append(out, r)
		}
	}
	f.mu.RUnlock()
	slices.SortFunc(out, func(x, y ref) int { return cmp.Or(cmp.Compare(x.start, y.start), cmp.Compare(x.part, y.part)) })
	return out
}

func (f *follower) stop() { f.wg.Wait() }

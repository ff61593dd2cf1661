package windows

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/counts"
)

// entryBytes is the memory of one decoded entry, plus its share of the
// class orders built on demand.
const entryBytes = int64(unsafe.Sizeof(counts.Entry{})) + 8

// manifest is a decoded manifest as queries read it. Manifest is nil when
// the window turned out to be gone.
type manifest struct {
	*counts.Manifest
	rev    uint64
	sz     int64
	orders classOrders // of Inline
}

func (m *manifest) size() int64 { return m.sz }

func newManifest(m *counts.Manifest, rev uint64) *manifest {
	sz := 256 + int64(len(m.Inline))*entryBytes
	for _, r := range m.Runs {
		sz += 128 + int64(len(r.Slots))*(4+counts.AddrLen)
	}
	return &manifest{Manifest: m, rev: rev, sz: sz}
}

// chunk is a decoded chunk or head.
type chunk struct {
	*counts.Chunk
	sz     int64
	orders classOrders
}

func (c *chunk) size() int64 { return c.sz }

func newChunk(c *counts.Chunk) *chunk {
	return &chunk{Chunk: c, sz: 128 + int64(len(c.Entries))*entryBytes}
}

// classOrders are the orders of a sorted entry list by each class, built
// the first time a query asks for one.
type classOrders struct {
	mu   sync.Mutex
	done [counts.NumClasses]bool
	idx  [counts.NumClasses][]int32
}

// byClass returns the indices of the entries of es whose counter of class
// c is above floor, by that counter descending, then IP ascending.
func (o *classOrders) byClass(es []counts.Entry, c counts.Class, floor uint64) []int32 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done[c] {
		return o.idx[c]
	}
	var idx []int32
	for i := range es {
		if es[i].Get(c) > floor {
			idx = append(idx, int32(i))
		}
	}
	slices.SortFunc(idx, func(a, b int32) int {
		if c := cmp.Compare(es[b].Get(c), es[a].Get(c)); c != 0 {
			return c
		}
		return cmpAddr(&es[a].Addr, &es[b].Addr)
	})
	o.done[c], o.idx[c] = true, idx
	return idx
}

// win is one window of one partition as a query reads it.
type win struct {
	winKey
	m *manifest
}

func (w *win) key() string { return counts.Key(time.Unix(w.start, 0), w.part) }

// staleError: a chunk no longer belonged to the manifest of the window it
// was read for. The query reads that manifest again and starts over.
type staleError struct {
	w   winKey
	rev uint64
	err error
}

func (e *staleError) Error() string { return e.err.Error() }
func (e *staleError) Unwrap() error { return e.err }

// query is one query's view of the windows: the manifests it has read and
// a bound on its concurrent KV gets.
type query struct {
	r   *Reader
	ctx context.Context
	sem chan struct{}
	// fresh holds manifests re-read after a chunk changed, skip the
	// windows that turned out to be gone or expiring; both are only
	// changed between attempts.
	fresh map[winKey]*manifest
	skip  map[winKey]bool
}

// maxAttempts bounds how often a query starts over because a window changed
// while it was read.
const maxAttempts = 5

// run runs fn as one query: within the timeout, after the indexes are
// loaded, again (up to maxAttempts) when a window changed under it.
func (r *Reader) run(ctx context.Context, fn func(q *query) error) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	if err := r.WaitReady(ctx); err != nil {
		return err
	}
	q := &query{r: r, ctx: ctx, sem: make(chan struct{}, r.cfg.FetchConcurrency), fresh: map[winKey]*manifest{}, skip: map[winKey]bool{}}
	missing := map[revKey]int{}
	for attempt := 1; ; attempt++ {
		err := fn(q)
		var se *staleError
		if !errors.As(err, &se) {
			if err != nil && ctx.Err() != nil && !errors.Is(err, ErrUnavailable) {
				return Unavailable("query timed out", ctx.Err())
			}
			return err
		}
		if attempt >= maxAttempts {
			return Unavailable("windows kept changing while they were read", err)
		}
		r.stats.retries.Add(1)
		m, err := q.latest(se.w)
		if err != nil {
			return err
		}
		switch {
		case m.Manifest == nil:
			q.skip[se.w] = true
		case m.rev == se.rev:
			// The manifest is unchanged, its chunk is not there: a read
			// from a replica that lags, or chunks that expired before the
			// manifest (a window at the end of its retention). Wait once;
			// then leave the window out as expired.
			missing[revKey{se.w, m.rev}]++
			if missing[revKey{se.w, m.rev}] > 1 {
				r.stats.expired.Add(1)
				r.log.Debug("window left out: its chunks expired", "window", counts.Key(time.Unix(se.w.start, 0), se.w.part), "error", se.err)
				q.skip[se.w] = true
				continue
			}
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return Unavailable("query timed out", ctx.Err())
			}
			q.fresh[se.w] = m
		default:
			q.fresh[se.w] = m
		}
	}
}

// get runs fetch for key through the cache and the flight group; the
// fetch's value is cached by store (nil: under key).
func (q *query) get(key cacheKey, cold bool, fetch func(ctx context.Context) (sized, error), store func(sized)) (sized, error) {
	if v, ok := q.r.cache.get(key); ok {
		q.r.stats.hits.Add(1)
		return v, nil
	}
	q.r.stats.misses.Add(1)
	select {
	case q.sem <- struct{}{}:
	case <-q.ctx.Done():
		return nil, Unavailable("query timed out", q.ctx.Err())
	}
	defer func() { <-q.sem }()
	return q.r.flights.do(q.ctx, q.r.ctx, key, func(ctx context.Context) (sized, error) {
		ctx, cancel := context.WithTimeout(ctx, q.r.cfg.Timeout)
		defer cancel()
		if q.r.fetchHook != nil {
			q.r.fetchHook(ctx, key)
		}
		v, err := fetch(ctx)
		switch {
		case err != nil:
		case store != nil:
			store(v)
		default:
			q.r.cache.add(key, v, cold)
		}
		return v, err
	})
}

// manifest returns the manifest of k at its revision (nil Manifest: gone).
func (q *query) manifest(k revKey) (*manifest, error) {
	if m, ok := q.fresh[k.winKey]; ok {
		return m, nil
	}
	key := cacheKey{kind: kindManifest, winKey: k.winKey, ver: k.rev}
	v, err := q.get(key, false, func(ctx context.Context) (sized, error) {
		m, err := q.r.fetchManifest(ctx, k.winKey)
		// A get served by a replica that lags may return an older
		// revision than the index saw: ask again a few times.
		for try := 0; err == nil && m.Manifest != nil && m.rev < k.rev && try < 3; try++ {
			select {
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
				return nil, Unavailable("query timed out", ctx.Err())
			}
			m, err = q.r.fetchManifest(ctx, k.winKey)
		}
		if err == nil && m.Manifest == nil {
			q.r.indexes[k.res].forget(k.start, k.part, k.rev)
		}
		return m, err
	}, func(v sized) {
		// Cached under its own revision, and under the index's when it
		// is at least that new (the index only moves forward).
		m := v.(*manifest)
		if m.Manifest == nil {
			return
		}
		if m.rev >= k.rev {
			q.r.cache.add(key, m, false)
		}
		if m.rev != k.rev {
			q.r.cache.add(cacheKey{kind: kindManifest, winKey: k.winKey, ver: m.rev}, m, false)
		}
	})
	if err != nil {
		return nil, err
	}
	return v.(*manifest), nil
}

// latest reads the manifest of k as it is now, past the cache.
func (q *query) latest(k winKey) (*manifest, error) {
	v, err := q.get(cacheKey{kind: kindManifest, winKey: k}, false, func(ctx context.Context) (sized, error) {
		m, err := q.r.fetchManifest(ctx, k)
		return &latestManifest{m}, err
	}, func(v sized) {
		if m := v.(*latestManifest).m; m.Manifest != nil {
			q.r.cache.add(cacheKey{kind: kindManifest, winKey: k, ver: m.rev}, m, false)
		}
	})
	if err != nil {
		return nil, err
	}
	return v.(*latestManifest).m, nil
}

// latestManifest is a manifest read past the cache.
type latestManifest struct{ m *manifest }

func (l *latestManifest) size() int64 { return l.m.size() }

func (r *Reader) fetchManifest(ctx context.Context, k winKey) (*manifest, error) {
	x := r.indexes[k.res]
	key := counts.Key(time.Unix(k.start, 0), k.part)
	r.stats.gets.Add(1)
	e, err := x.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// Deleted or expired after the index saw it.
		return &manifest{}, nil
	}
	if err != nil {
		return nil, Unavailable(fmt.Sprintf("read %s/%s", x.resolution.Bucket(), key), err)
	}
	m, err := counts.UnmarshalManifest(e.Value())
	if err != nil {
		return nil, fmt.Errorf("%s/%s revision %d: %w", x.resolution.Bucket(), key, e.Revision(), err)
	}
	return newManifest(m, e.Revision()), nil
}

// chunk reads one chunk (or head) of a run of w. A chunk that no longer
// belongs to the run is a staleError.
func (q *query) chunk(w *win, slot uint32, gen uint64, cold bool) (*chunk, error) {
	key := cacheKey{kind: kindChunk, winKey: w.winKey, slot: slot, ver: gen}
	v, err := q.get(key, cold, func(ctx context.Context) (sized, error) {
		x := q.r.indexes[w.res]
		q.r.stats.gets.Add(1)
		q.r.stats.chunkGets.Add(1)
		c, err := counts.GetChunk(ctx, x.kv, w.key(), slot, gen)
		if err != nil {
			if errors.Is(err, counts.ErrChanged) || errors.Is(err, counts.ErrCorrupt) {
				return nil, err
			}
			return nil, Unavailable("read chunk", err)
		}
		return newChunk(c), nil
	}, nil)
	if err != nil {
		if errors.Is(err, counts.ErrChanged) {
			return nil, &staleError{w: w.winKey, rev: w.m.rev, err: err}
		}
		return nil, err
	}
	return v.(*chunk), nil
}

// each runs f(0..n-1) on up to FetchConcurrency goroutines and returns the
// first error; after an error no further f starts.
func (q *query) each(n int, f func(i int) error) error {
	return eachN(min(cap(q.sem), n), n, f)
}

// eachN runs f(0..n-1) on up to workers goroutines.
func eachN(workers, n int, f func(i int) error) error {
	workers = min(workers, n)
	if workers <= 1 {
		for i := range n {
			if err := f(i); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		failed  atomic.Bool
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errOnce.Do(func() { first = err; failed.Store(true) })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// windows returns the existing windows of segs, of partition part or of
// every partition (part < 0), in the order of the index.
func (q *query) windows(segs []segment, part int) ([]*win, error) {
	var keys []revKey
	for _, seg := range segs {
		keys = q.r.indexes[seg.res].collect(seg, part, keys)
	}
	ws, err := q.load(keys)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(ws, func(w *win) bool { return w == nil }), nil
}

// load reads the manifests of keys: out[i] is keys[i]'s window, nil when it
// turned out to be gone.
func (q *query) load(keys []revKey) ([]*win, error) {
	out := make([]*win, len(keys))
	var miss []int
	hits := 0
	for i, k := range keys {
		if q.skip[k.winKey] {
			continue
		}
		m, ok := q.fresh[k.winKey]
		if !ok {
			var v sized
			if v, ok = q.r.cache.get(cacheKey{kind: kindManifest, winKey: k.winKey, ver: k.rev}); ok {
				m = v.(*manifest)
				hits++
			}
		}
		switch {
		case !ok:
			miss = append(miss, i)
		case m.Manifest != nil:
			out[i] = &win{winKey: k.winKey, m: m}
		}
	}
	q.r.stats.hits.Add(uint64(hits))
	err := q.each(len(miss), func(j int) error {
		i := miss[j]
		m, err := q.manifest(keys[i])
		if err != nil {
			return err
		}
		if m.Manifest != nil {
			out[i] = &win{winKey: keys[i].winKey, m: m}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// byPartition groups windows by partition.
func (q *query) byPartition(ws []*win) [][]*win {
	out := make([][]*win, q.r.partitions)
	for _, w := range ws {
		out[w.part] = append(out[w.part], w)
	}
	return out
}

package query

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/topology"
)

// resIndex knows, for one resolution's bucket, the latest revision of every
// window key that exists. A meta-only KV watch keeps it current, so a query
// fetches only keys that exist and recognises unchanged windows in the cache.
type resIndex struct {
	idx        int
	res        topology.Resolution
	size       int64 // window length in seconds
	partitions int
	kv         jetstream.KeyValue
	log        hclog.Logger

	// onChange is called after a live update of window start (not during
	// the initial replay); onResync after a replay replaced the index.
	onChange func(res int, start int64)
	onResync func()

	mu      sync.RWMutex
	windows map[int64][]uint64 // window start (unix s) → revision per partition (0: missing)
	keys    int
	lastRev uint64        // highest revision processed
	changed chan struct{} // closed and replaced whenever lastRev moves
	ready   chan struct{} // closed after the first initial replay
	once    sync.Once
}

func newResIndex(idx int, res topology.Resolution, partitions int, kv jetstream.KeyValue, log hclog.Logger) *resIndex {
	return &resIndex{
		idx:        idx,
		res:        res,
		size:       int64(res.Size / time.Second),
		partitions: partitions,
		kv:         kv,
		log:        log,
		windows:    map[int64][]uint64{},
		changed:    make(chan struct{}),
		ready:      make(chan struct{}),
	}
}

// revisions copies the per-partition revisions of the window at start into
// dst (len partitions); it reports false when no partition has the window.
func (x *resIndex) revisions(start int64, dst []uint64) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	revs, ok := x.windows[start]
	if !ok {
		return false
	}
	copy(dst, revs)
	return true
}

// revision returns the revision of one key, 0 when it does not exist.
func (x *resIndex) revision(start int64, part int) uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if revs, ok := x.windows[start]; ok {
		return revs[part]
	}
	return 0
}

// forget drops a key that turned out to be gone (expired by the bucket's
// TTL, which leaves no marker in the watch) if it still has revision rev.
func (x *resIndex) forget(start int64, part int, rev uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if revs, ok := x.windows[start]; ok && revs[part] == rev {
		x.keys += x.set(x.windows, start, part, 0)
	}
}

// set records a revision (0 deletes) in m and returns the change in the
// number of keys; callers hold mu when m is live.
func (x *resIndex) set(m map[int64][]uint64, start int64, part int, rev uint64) int {
	revs, ok := m[start]
	if !ok {
		if rev == 0 {
			return 0
		}
		revs = make([]uint64, x.partitions)
		m[start] = revs
	}
	delta := 0
	if revs[part] == 0 && rev != 0 {
		delta = 1
	} else if revs[part] != 0 && rev == 0 {
		delta = -1
	}
	revs[part] = rev
	if rev == 0 {
		for _, r := range revs {
			if r != 0 {
				return delta
			}
		}
		delete(m, start)
	}
	return delta
}

func (x *resIndex) isReady() bool {
	select {
	case <-x.ready:
		return true
	default:
		return false
	}
}

// waitRevision blocks until the watch has processed revision rev.
func (x *resIndex) waitRevision(ctx context.Context, rev uint64) error {
	for {
		x.mu.RLock()
		done, ch := x.lastRev >= rev, x.changed
		x.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (x *resIndex) advance(rev uint64) {
	if rev > x.lastRev {
		x.lastRev = rev
		close(x.changed)
		x.changed = make(chan struct{})
	}
}

// parse splits a key; keys that are not window keys of a known partition
// are ignored.
func (x *resIndex) parse(key string) (int64, int, bool) {
	t, p, err := counts.ParseKey(key)
	if err != nil || p < 0 || p >= x.partitions || mod(t.Unix(), x.size) != 0 {
		return 0, 0, false
	}
	return t.Unix(), p, true
}

// run keeps the index current until ctx ends. When the watch ends for any
// other reason it starts a new one; the new replay builds a fresh index that
// replaces the old one at its end-of-replay marker.
func (x *resIndex) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if err := x.watchOnce(ctx); err != nil && ctx.Err() == nil {
			x.log.Warn("counts watch failed; restarting", "bucket", x.res.Bucket(), "error", err, "backoff", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (x *resIndex) watchOnce(ctx context.Context) error {
	w, err := x.kv.WatchAll(ctx, jetstream.MetaOnly())
	if err != nil {
		return err
	}
	defer func() {
		// Unsubscribing can wait for a request timeout while NATS is
		// down; do it in the background. Draining lets a callback blocked
		// on the full channel finish, so the watcher's close handler runs.
		go func() {
			_ = w.Stop()
			timeout := time.After(30 * time.Second)
			for {
				select {
				case _, ok := <-w.Updates():
					if !ok {
						return
					}
				case <-timeout:
					return
				}
			}
		}()
	}()
	fresh := map[int64][]uint64{}
	freshKeys := 0
	replaying := true
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case e, ok = <-w.Updates():
		}
		if !ok {
			return errWatchClosed
		}
		if e == nil {
			if replaying {
				x.mu.Lock()
				x.windows, x.keys = fresh, freshKeys
				x.mu.Unlock()
				replaying = false
				x.once.Do(func() { close(x.ready) })
				x.log.Debug("counts index loaded", "bucket", x.res.Bucket(), "keys", freshKeys)
				if x.onResync != nil {
					x.onResync()
				}
			}
			continue
		}
		start, part, valid := x.parse(e.Key())
		rev := e.Revision()
		if e.Operation() != jetstream.KeyValuePut {
			rev = 0
		}
		if replaying {
			// Not yet visible to queries: only keys is shared.
			x.mu.Lock()
			if valid {
				freshKeys += x.set(fresh, start, part, rev)
			}
			x.advance(e.Revision())
			x.mu.Unlock()
			continue
		}
		x.mu.Lock()
		if valid {
			x.keys += x.set(x.windows, start, part, rev)
		}
		x.advance(e.Revision())
		x.mu.Unlock()
		if valid && x.onChange != nil {
			x.onChange(x.idx, start)
		}
	}
}

type watchError string

func (e watchError) Error() string { return string(e) }

const errWatchClosed = watchError("watch channel closed")

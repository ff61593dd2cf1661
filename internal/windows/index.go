package windows

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/topology"
)

// manifestKeys is the watch filter of the index: window manifests are the
// keys with exactly two tokens (<start>.<p>); chunks (<start>.<p>.<slot>)
// are written far more often and never needed by the index.
const manifestKeys = "*.*"

// index knows, for one resolution's bucket, the latest revision of every
// window manifest that exists. A meta-only KV watch keeps it current, so a
// query fetches only manifests that exist and recognises unchanged windows
// in the cache. Deletes, purges and the markers the server leaves when a
// manifest expires (the counts buckets keep subject delete markers) remove
// a key.
type index struct {
	res        int
	resolution topology.Resolution
	size       int64 // window length in seconds
	partitions int
	kv         jetstream.KeyValue
	log        hclog.Logger

	// onChange is called after a live update of window start (not during
	// the initial replay); onResync after a replay replaced the index.
	onChange func(res int, start int64)
	onResync func()

	// updates counts the entries the watch delivered.
	updates atomic.Uint64

	mu      sync.RWMutex
	windows map[int64][]uint64 // window start (unix s) → revision per partition (0: missing)
	keys    int
	lastRev uint64        // highest revision processed
	changed chan struct{} // closed and replaced whenever lastRev moves
	ready   chan struct{} // closed after the first initial replay
	once    sync.Once
}

func newIndex(res int, r topology.Resolution, partitions int, kv jetstream.KeyValue, log hclog.Logger) *index {
	return &index{
		res:        res,
		resolution: r,
		size:       int64(r.Size / time.Second),
		partitions: partitions,
		kv:         kv,
		log:        log,
		windows:    map[int64][]uint64{},
		changed:    make(chan struct{}),
		ready:      make(chan struct{}),
	}
}

// winKey names one window of one partition.
type winKey struct {
	res   int
	start int64
	part  int
}

// revKey is a window key at one revision.
type revKey struct {
	winKey
	rev uint64
}

// revision returns the revision of one key, 0 when it does not exist.
func (x *index) revision(start int64, part int) uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if revs, ok := x.windows[start]; ok {
		return revs[part]
	}
	return 0
}

// numKeys is the number of manifests the index knows.
func (x *index) numKeys() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.keys
}

// forget drops a key that turned out to be gone (a get found nothing) if
// it still has revision rev.
func (x *index) forget(start int64, part int, rev uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if revs, ok := x.windows[start]; ok && revs[part] == rev {
		x.keys += x.set(x.windows, start, part, 0)
	}
}

// set records a revision (0 deletes) in m and returns the change in the
// number of keys; callers hold mu when m is live.
func (x *index) set(m map[int64][]uint64, start int64, part int, rev uint64) int {
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

func (x *index) isReady() bool {
	select {
	case <-x.ready:
		return true
	default:
		return false
	}
}

// waitRevision blocks until the watch has processed revision rev.
func (x *index) waitRevision(ctx context.Context, rev uint64) error {
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

func (x *index) advance(rev uint64) {
	if rev > x.lastRev {
		x.lastRev = rev
		close(x.changed)
		x.changed = make(chan struct{})
	}
}

// parse splits a key; keys that are not window keys of a known partition
// are ignored.
func (x *index) parse(key string) (int64, int, bool) {
	t, p, err := counts.ParseKey(key)
	if err != nil || p < 0 || p >= x.partitions || mod(t.Unix(), x.size) != 0 {
		return 0, 0, false
	}
	return t.Unix(), p, true
}

// collect appends the keys (with their current revisions) of the existing
// windows in seg, of partition part or of all partitions when part < 0.
func (x *index) collect(seg segment, part int, out []revKey) []revKey {
	x.mu.RLock()
	defer x.mu.RUnlock()
	add := func(start int64, revs []uint64) {
		if part >= 0 {
			if revs[part] != 0 {
				out = append(out, revKey{winKey{res: x.res, start: start, part: part}, revs[part]})
			}
			return
		}
		for p, rev := range revs {
			if rev != 0 {
				out = append(out, revKey{winKey{res: x.res, start: start, part: p}, rev})
			}
		}
	}
	if n := (seg.to - seg.from) / x.size; n > int64(len(x.windows)) {
		// Fewer stored windows than windows in the range: scan the index.
		starts := make([]int64, 0, len(x.windows))
		for start := range x.windows {
			if start >= seg.from && start < seg.to {
				starts = append(starts, start)
			}
		}
		slices.Sort(starts)
		for _, start := range starts {
			add(start, x.windows[start])
		}
		return out
	}
	for t := seg.from; t < seg.to; t += x.size {
		if revs, ok := x.windows[t]; ok {
			add(t, revs)
		}
	}
	return out
}

// run keeps the index current until ctx ends. When the watch ends for any
// other reason it starts a new one; the new replay builds a fresh index that
// replaces the old one at its end-of-replay marker.
func (x *index) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if err := x.watchOnce(ctx); err != nil && ctx.Err() == nil {
			x.log.Warn("counts watch failed; restarting", "bucket", x.resolution.Bucket(), "error", err, "backoff", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// StopWatch ends a KV watch in the background: unsubscribing can wait for a
// request timeout while NATS is down, and must not hold up Stop. Draining
// lets a callback blocked on the full channel finish, so the watcher's
// close handler runs.
func StopWatch(w jetstream.KeyWatcher) {
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
}

// WatchManifests runs one meta-only KV watch of the window manifests of
// kv: every entry goes to onEntry, in order, and the end of the initial
// replay to onCaughtUp. It returns nil when ctx ends and an error when the
// watch cannot start or closes (callers restart it with backoff).
func WatchManifests(ctx context.Context, kv jetstream.KeyValue, onEntry func(jetstream.KeyValueEntry), onCaughtUp func()) error {
	w, err := kv.Watch(ctx, manifestKeys, jetstream.MetaOnly())
	if err != nil {
		return err
	}
	defer StopWatch(w)
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
			onCaughtUp()
			continue
		}
		onEntry(e)
	}
}

func (x *index) watchOnce(ctx context.Context) error {
	fresh := map[int64][]uint64{}
	freshKeys := 0
	replaying := true
	caughtUp := func() {
		if !replaying {
			return
		}
		x.mu.Lock()
		x.windows, x.keys = fresh, freshKeys
		x.mu.Unlock()
		replaying = false
		x.once.Do(func() { close(x.ready) })
		x.log.Debug("counts index loaded", "bucket", x.resolution.Bucket(), "keys", freshKeys)
		if x.onResync != nil {
			x.onResync()
		}
	}
	return WatchManifests(ctx, x.kv, func(e jetstream.KeyValueEntry) {
		x.updates.Add(1)
		start, part, valid := x.parse(e.Key())
		rev := e.Revision()
		if e.Operation() != jetstream.KeyValuePut {
			// KV delete or purge, or the server's marker of an expired
			// manifest (Nats-Marker-Reason: MaxAge), which the KV watch
			// reports as a purge.
			rev = 0
		}
		if replaying {
			// Not yet visible to queries.
			x.mu.Lock()
			if valid {
				freshKeys += x.set(fresh, start, part, rev)
			}
			x.advance(e.Revision())
			x.mu.Unlock()
			return
		}
		x.mu.Lock()
		if valid {
			x.keys += x.set(x.windows, start, part, rev)
		}
		x.advance(e.Revision())
		x.mu.Unlock()
		if valid && x.onChange != nil {
			x.onChange(x.res, start)
		}
	}, caughtUp)
}

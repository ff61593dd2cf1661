package windows

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/counts"
)

// hook blocks the first KV get of a manifest until released, and reports
// when it started and when its context ended.
type hook struct {
	mu       sync.Mutex
	calls    int
	started  chan struct{}
	release  chan struct{}
	ctxEnded chan struct{}
}

func newHook() *hook {
	return &hook{started: make(chan struct{}), release: make(chan struct{}), ctxEnded: make(chan struct{})}
}

func (h *hook) fn(ctx context.Context, key cacheKey) {
	if key.kind != kindManifest {
		return
	}
	h.mu.Lock()
	h.calls++
	first := h.calls == 1
	h.mu.Unlock()
	if !first {
		return
	}
	close(h.started)
	select {
	case <-ctx.Done():
		close(h.ctxEnded)
		<-h.release
	case <-h.release:
	}
}

func (r *Reader) waiters(k cacheKey) int {
	r.flights.mu.Lock()
	defer r.flights.mu.Unlock()
	if f, ok := r.flights.m[k]; ok {
		return f.waiters
	}
	return 0
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func oneWindow(t *testing.T) (*env, Range, cacheKey, data) {
	e := newEnv(t, envOpts{partitions: 1, resolutions: oneMinute(0)})
	var d data
	for i := range 20 {
		d.evs = append(d.evs, ev{ip: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), t: base, c: counts.Counters{Requests: uint64(i + 1)}})
	}
	e.write(d, 1)
	k := cacheKey{kind: kindManifest, winKey: winKey{res: 0, start: base.Unix(), part: 0}, ver: e.r.indexes[0].revision(base.Unix(), 0)}
	return e, Range{base, base.Add(time.Minute)}, k, d
}

// A caller whose own context ends while it waits for a fetch that another
// caller shares must not hand its cancellation to the other one: before,
// the fetch ran on the first caller's context and every waiter got its
// "query timed out" as a 503.
func TestSharedFetchSurvivesOneCallerLeaving(t *testing.T) {
	e, rg, key, d := oneWindow(t)
	h := newHook()
	e.r.fetchHook = h.fn
	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() {
		_, err := e.r.Top(ctxA, rg, TopQuery{N: 3})
		errA <- err
	}()
	<-h.started
	type answer struct {
		res TopResult
		err error
	}
	resB := make(chan answer, 1)
	go func() {
		res, err := e.r.Top(context.Background(), rg, TopQuery{N: 3})
		resB <- answer{res, err}
	}()
	waitFor(t, "the second caller to join the fetch", func() bool { return e.r.waiters(key) == 2 })
	cancelA()
	if err := <-errA; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("cancelled caller: %v", err)
	}
	select {
	case <-h.ctxEnded:
		t.Fatal("the shared fetch was cancelled with the first caller")
	case <-time.After(50 * time.Millisecond):
	}
	close(h.release)
	b := <-resB
	if b.err != nil {
		t.Fatalf("the caller whose context is fine got %v", b.err)
	}
	if want := refTop(d, rg.From, rg.To, counts.Requests, 3, netip.Prefix{}); !sameItems(b.res.Items, want) {
		t.Fatalf("got %s want %s", fmtItems(b.res.Items), fmtItems(want))
	}
}

// When every caller left, the fetch is cancelled; one that joins before it
// ended gets no cancellation of someone else but fetches again itself.
func TestAbandonedFetchIsRetried(t *testing.T) {
	e, rg, key, d := oneWindow(t)
	h := newHook()
	e.r.fetchHook = h.fn
	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() {
		_, err := e.r.Top(ctxA, rg, TopQuery{N: 3})
		errA <- err
	}()
	<-h.started
	cancelA()
	<-errA
	<-h.ctxEnded // the fetch saw that nobody waits any more
	type answer struct {
		res TopResult
		err error
	}
	resB := make(chan answer, 1)
	go func() {
		res, err := e.r.Top(context.Background(), rg, TopQuery{N: 3})
		resB <- answer{res, err}
	}()
	waitFor(t, "the second caller to join the cancelled fetch", func() bool { return e.r.waiters(key) == 1 })
	close(h.release)
	b := <-resB
	if b.err != nil {
		t.Fatalf("late caller: %v", b.err)
	}
	if want := refTop(d, rg.From, rg.To, counts.Requests, 3, netip.Prefix{}); !sameItems(b.res.Items, want) {
		t.Fatalf("got %s want %s", fmtItems(b.res.Items), fmtItems(want))
	}
}

// A window rewritten between the read of its manifest and of its chunks,
// so that its chunks now belong to a newer generation: the query reads the
// manifest again and answers from the new version.
func TestWindowChangedWhileRead(t *testing.T) {
	e := newEnv(t, envOpts{partitions: 1, maxPayload: 64 << 10, layout: smallLayout, resolutions: oneMinute(0)})
	var d data
	for i := range 600 {
		d.evs = append(d.evs, ev{ip: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), t: base, c: counts.Counters{Requests: 1 + uint64(i%5)}})
	}
	e.write(d, 1)
	rg := Range{base, base.Add(time.Minute)}
	ctx := context.Background()
	// Cache the manifest, not the chunks.
	if _, err := e.r.Totals(ctx, rg); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	writes := 0
	more := data{}
	for i := range 600 {
		more.evs = append(more.evs, ev{ip: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), t: base, c: counts.Counters{Requests: 1 + uint64(i%3)}})
	}
	e.r.fetchHook = func(_ context.Context, k cacheKey) {
		if k.kind == kindChunk {
			// Merges write new slots first (a reader of the old manifest
			// still finds its chunks); write until slot 1 is reused with
			// a new generation.
			once.Do(func() {
				for writes == 0 || !slotReused(e) {
					e.write(more, 1)
					writes++
				}
			})
		}
	}
	got, err := e.r.Top(ctx, rg, TopQuery{N: 20})
	if err != nil {
		t.Fatal(err)
	}
	all := data{evs: d.evs}
	for range writes {
		all.evs = append(all.evs, more.evs...)
	}
	t.Logf("%d rewrites", writes)
	if want := refTop(all, rg.From, rg.To, counts.Requests, 20, netip.Prefix{}); !sameItems(got.Items, want) {
		t.Fatalf("got %s\nwant %s", fmtItems(got.Items), fmtItems(want))
	}
	if st := e.r.Stats(); st.Retries == 0 {
		t.Fatalf("no retry: %+v", st)
	}
}

// slotReused reports whether a run of the stored window uses slot 1 at a
// generation after the first.
func slotReused(e *env) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range e.cur {
		for _, r := range m.Runs {
			if r.Generation > 1 && (r.HeadSlot == 1 || slices.Contains(r.Slots, 1)) {
				return true
			}
		}
	}
	return false
}

// A chunk that is gone while its manifest did not change (chunks can
// expire before the manifest at the end of a window's retention): after a
// retry the window is left out, like an expired one, and counted.
func TestWindowWithExpiredChunksIsLeftOut(t *testing.T) {
	e := newEnv(t, envOpts{partitions: 1, maxPayload: 64 << 10, layout: smallLayout, resolutions: oneMinute(0)})
	var d data
	for i := range 600 {
		for m := range 2 {
			d.evs = append(d.evs, ev{ip: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), t: base.Add(time.Duration(m) * time.Minute), c: counts.Counters{Requests: 1 + uint64(i%7)}})
		}
	}
	e.write(d, 1)
	ctx := context.Background()
	kv, err := e.js.KeyValue(ctx, "logtally_counts_1m")
	if err != nil {
		t.Fatal(err)
	}
	m := e.cur["logtally_counts_1m/"+counts.Key(base, 0)]
	if len(m.Runs) == 0 {
		t.Fatal("no run")
	}
	if err := kv.Delete(ctx, counts.ChunkKey(counts.Key(base, 0), m.Runs[0].Slots[0])); err != nil {
		t.Fatal(err)
	}
	rg := Range{base, base.Add(2 * time.Minute)}
	got, err := e.r.Totals(ctx, rg)
	if err != nil {
		t.Fatal(err)
	}
	// The whole window is left out, its totals too, as if it had expired.
	second := refTotals(d, base.Add(time.Minute), base.Add(2*time.Minute))
	if got.DistinctIPs != second.DistinctIPs || got.Counters != second.Counters {
		t.Fatalf("totals %+v, want those of the second window %+v", got, second)
	}
	top, err := e.r.Top(ctx, rg, TopQuery{N: 5, Class: counts.Requests})
	if err != nil {
		t.Fatal(err)
	}
	if want := refTop(d, base.Add(time.Minute), base.Add(2*time.Minute), counts.Requests, 5, netip.Prefix{}); !sameItems(top.Items, want) {
		t.Fatalf("got %s want %s", fmtItems(top.Items), fmtItems(want))
	}
	if st := e.r.Stats(); st.Expired == 0 || st.Retries == 0 {
		t.Fatalf("stats %+v", st)
	}
}

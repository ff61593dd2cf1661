package aggregator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/topology"
)

// windowKey names one window of one resolution (index into the resolutions).
type windowKey struct {
	res   int
	start int64 // unix seconds
}

// window is what a partition holds of one window: its manifest as last
// read or written (small: the inline entries and the list of runs, never
// the runs themselves) and the changes not yet committed.
type window struct {
	key string
	m   *counts.Manifest // nil: the window does not exist yet
	rev uint64           // revision of the manifest key; 0 = absent
	// pending are the changes since the last commit, in arrival order; an
	// address may repeat. Appending costs a fraction of a map update on
	// the hot path; the flush sorts and folds them.
	pending []counts.Entry
	dead    uint64
	dirty   bool
	used    int // flush generation when last touched: eviction is oldest first
	// kept is set for a dims window that was cut to its top values.
	kept *keptSet
}

func (w *window) lastSeq() uint64 {
	if w.m == nil {
		return 0
	}
	return w.m.LastSeq
}

// partition applies the record batches of one partition to its windows. It
// is driven by a single goroutine; nothing in it is shared.
type partition struct {
	s *Service
	p int

	pos     uint64 // stream sequence of the last applied message
	cpSeq   uint64 // sequence of the last checkpoint written or read
	wm      int64  // largest event time applied, unix ms (progress, not a cut-off)
	cpRev   uint64 // revision of the checkpoint key
	raw     rawSet // raw batches applied
	lost    uint64 // raw batches declared lost
	legacy  uint64 // highest raw sequence of a format 1 batch
	untrack bool   // checkpoint predates raw tracking: legacy is set by the first batch
	sample  *rawSample

	windows  map[windowKey]*window
	toCut    map[windowKey]struct{} // evicted dims windows to cut once closed
	last     []*window              // per resolution: the window of the previous group
	lastKey  []windowKey
	pendingN int // entries pending in all windows
	flushes  int
	failures int // consecutive failed flushes
	scratch  batch
}

func checkpointKey(p int) string { return "cp." + strconv.Itoa(p) }

// run owns the partition until ctx is cancelled (abort, no flush) or release
// is closed (flush, then return). Failures restart from the checkpoint.
func (pt *partition) run(ctx context.Context, release <-chan struct{}) {
	log := pt.s.log.With("partition", pt.p)
	defer pt.forgetGauges()
	for {
		err := pt.session(ctx, release)
		if err == nil || ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrFenced) {
			pt.s.m.fenced.Inc()
			log.Warn("partition state was written by another owner; restarting from checkpoint", "error", err)
		} else {
			pt.s.m.restarts.Inc()
			log.Error("partition failed; restarting from checkpoint", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-release:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// forgetGauges drops the partition's labelled gauges when it leaves this
// instance, so that a moved partition is not reported twice.
func (pt *partition) forgetGauges() {
	l := strconv.Itoa(pt.p)
	pt.s.m.pending.DeleteLabelValues(l)
	pt.s.m.watermark.DeleteLabelValues(l)
	pt.s.m.openWindows.Sub(float64(len(pt.windows)))
	pt.s.m.pendingEntries.Sub(float64(pt.pendingN))
	pt.windows, pt.pendingN = nil, 0
}

// session loads the checkpoint and applies messages after it. Every session
// starts from what is durable in KV, so a restart never double counts.
func (pt *partition) session(ctx context.Context, release <-chan struct{}) error {
	pt.s.m.openWindows.Sub(float64(len(pt.windows)))
	pt.s.m.pendingEntries.Sub(float64(pt.pendingN))
	pt.windows, pt.pendingN = map[windowKey]*window{}, 0
	pt.toCut = map[windowKey]struct{}{}
	pt.last = make([]*window, len(pt.s.res))
	pt.lastKey = make([]windowKey, len(pt.s.res))
	pt.sample = nil
	if err := pt.loadCheckpoint(ctx); err != nil {
		return err
	}
	occ := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{topology.ParsedSubject(pt.p)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    pt.pos + 1,
	}
	cons, err := pt.s.js.OrderedConsumer(ctx, topology.ParsedStream, occ)
	if err != nil {
		return fmt.Errorf("ordered consumer for partition %d: %w", pt.p, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return fmt.Errorf("consume partition %d: %w", pt.p, err)
	}
	defer it.Stop()

	sessCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := make(chan jetstream.Msg, 1024)
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := it.Next()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-sessCtx.Done():
				return
			}
		}
	}()

	tick := time.NewTicker(pt.s.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-release:
			return pt.finalFlush(ctx)
		case err := <-errc:
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return pt.finalFlush(ctx)
			}
			return fmt.Errorf("consume partition %d: %w", pt.p, err)
		case m := <-msgs:
			if err := pt.apply(ctx, m); err != nil {
				return err
			}
			if pt.pendingN > pt.s.cfg.MaxPendingEntries || len(pt.windows) > pt.s.cfg.MaxOpenWindows {
				// A burst over many IPs or many windows (a sparse historical
				// log, adversarial timestamps): write it out now rather than
				// hold it until the tick; the flush then evicts what is clean.
				pt.s.m.earlyFlushes.Inc()
				if err := pt.flushOrRetry(ctx); err != nil {
					return err
				}
			}
		case <-tick.C:
			if err := pt.flushOrRetry(ctx); err != nil {
				return err
			}
		}
	}
}

// maxFlushFailures is how long (in consecutive failed flushes) a partition
// keeps its in-memory state before it starts over from the checkpoint.
const maxFlushFailures = 150

// flushOrRetry flushes and keeps the session on a transient failure (a
// timeout or a lost connection while a stream elects a leader): the dirty
// windows stay in memory and the next tick writes them again with the same
// expected revisions. That is safe because a write that did land after all
// makes the retry fail its compare-and-swap, which restarts the session from
// the checkpoint. Restarting on every hiccup instead would re-read every
// window of the partition and replay from the checkpoint, which is what made
// recovery after a NATS node loss slow.
func (pt *partition) flushOrRetry(ctx context.Context) error {
	err := pt.flush(ctx)
	if err == nil {
		if pt.failures > 0 {
			pt.s.log.Info("partition flush recovered", "partition", pt.p, "failed_flushes", pt.failures)
		}
		pt.failures = 0
		return nil
	}
	if !retryable(err) || ctx.Err() != nil || pt.failures+1 >= maxFlushFailures {
		return err
	}
	pt.failures++
	pt.s.m.flushRetries.Inc()
	if pt.failures == 1 || pt.failures%25 == 0 {
		pt.s.log.Warn("partition flush failed; keeping state and retrying", "partition", pt.p, "failed_flushes", pt.failures, "error", err)
	}
	return nil
}

// finalFlush flushes before the partition is handed over, retrying
// transient failures until it works or ctx (the shutdown grace) ends; what
// is not flushed then is replayed by the next owner from the checkpoint.
func (pt *partition) finalFlush(ctx context.Context) error {
	for {
		err := pt.flush(ctx)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
		pt.s.m.flushRetries.Inc()
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pt.s.cfg.FlushInterval):
		}
	}
}

// retryable tells whether a failed flush may be tried again with the same
// in-memory state: not after losing a compare-and-swap and not for a window
// that cannot be written at all.
func retryable(err error) bool {
	return !errors.Is(err, ErrFenced) && !errors.Is(err, errInjectedCrash) &&
		!errors.Is(err, counts.ErrTooLarge) && !errors.Is(err, context.Canceled)
}

func (pt *partition) loadCheckpoint(ctx context.Context) error {
	pt.pos, pt.wm, pt.cpRev, pt.cpSeq = 0, 0, 0, 0
	pt.raw, pt.lost, pt.legacy, pt.untrack = rawSet{}, 0, 0, false
	e, err := pt.s.state.Get(ctx, checkpointKey(pt.p))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read checkpoint of partition %d: %w", pt.p, err)
	}
	var cp logtallyv1.Checkpoint
	if err := proto.Unmarshal(e.Value(), &cp); err != nil {
		return fmt.Errorf("decode checkpoint of partition %d: %w", pt.p, err)
	}
	if !pt.raw.setRanges(cp.RawLow, cp.RawRanges) {
		return fmt.Errorf("checkpoint of partition %d: %w: bad raw ranges", pt.p, ErrBadCheckpoint)
	}
	pt.pos, pt.wm, pt.cpRev, pt.cpSeq = cp.Seq, cp.WatermarkUnixMs, e.Revision(), cp.Seq
	pt.lost, pt.legacy = cp.LostBatches, cp.LegacyRawMax
	// A checkpoint of a release before raw tracking: what came before was
	// counted without it, so only raw batches from the first one seen on
	// can be recognised as missing.
	pt.untrack = cp.Seq > 0 && cp.RawLow == 0 && len(cp.RawRanges) == 0 && cp.LegacyRawMax == 0
	return nil
}

// apply counts one message. A record batch is applied at most once per raw
// batch (the raw set), and a group of message seq goes into window w only
// if seq > w.LastSeq: w already holds every record of seqs up to LastSeq.
func (pt *partition) apply(ctx context.Context, m jetstream.Msg) error {
	meta, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("message metadata: %w", err)
	}
	seq := meta.Sequence.Stream
	if seq <= pt.pos {
		pt.s.m.duplicates.Inc()
		return nil
	}
	pt.s.m.pending.WithLabelValues(strconv.Itoa(pt.p)).Set(float64(meta.NumPending))
	b := &pt.scratch
	if err := decodeBatch(m.Data(), b); err != nil {
		// A batch we cannot read is corrupt, not late data: count it and
		// log it loudly, and move on so the partition does not stall.
		pt.s.m.badBatches.Inc()
		pt.s.log.Error("skipping undecodable record batch", "partition", pt.p, "seq", seq, "error", err)
		pt.pos = seq
		return nil
	}
	if b.rawSeq != 0 {
		if pt.untrack {
			pt.legacy = max(pt.legacy, b.rawSeq-1)
			pt.untrack = false
		}
		if pt.raw.has(b.rawSeq) {
			// Republished after JetStream's duplicate window (a parser that
			// crashed half way through the batch and came back later).
			pt.s.m.dupBatches.Inc()
			pt.pos = seq
			pt.checkRaw()
			return nil
		}
	}
	if err := pt.applyGroups(ctx, seq, b); err != nil {
		return err
	}
	if b.rawSeq != 0 {
		pt.raw.add(b.rawSeq)
		if b.format == 0 {
			pt.legacy = max(pt.legacy, b.rawSeq)
		}
	}
	pt.pos = seq
	pt.checkRaw()
	return nil
}

// applyGroups adds the groups of message seq to their windows. No record
// is refused for its age: each window keeps the sequence of the last
// message it holds, which makes a replay exact in any order, so a
// historical log or a backlog counts in its own windows whatever else the
// partition has seen (docs/design.md, event time).
func (pt *partition) applyGroups(ctx context.Context, seq uint64, b *batch) error {
	if err := pt.prefetch(ctx, b); err != nil {
		return err
	}
	var applied, skipped, requests uint64
	for i := range b.groups() {
		t := b.minutes[i] * 60_000
		if t > pt.wm {
			pt.wm = t
		}
		n, sk, rq, err := pt.applyGroup(ctx, seq, 0, pt.s.nIP, t, b.addr(i), b.counters[i])
		if err != nil {
			return err
		}
		applied, skipped, requests = applied+n, skipped+sk, requests+rq
	}
	// The field values of the same lines go to the dims windows; their
	// requests are already counted above.
	for i := range b.dims.groups() {
		t := b.dims.minutes[i] * 60_000
		if t > pt.wm {
			pt.wm = t
		}
		n, _, _, err := pt.applyGroup(ctx, seq, pt.s.nIP, len(pt.s.res), t, b.dims.key(i), b.dims.counters[i])
		if err != nil {
			return err
		}
		applied += n
	}
	if b.deadLetters > 0 {
		for r := range pt.s.nIP {
			w, err := pt.windowFor(ctx, r, b.receivedMS)
			if err != nil {
				return err
			}
			if seq > w.lastSeq() {
				w.dead += b.deadLetters
				w.dirty = true
			}
		}
	}
	pt.s.m.pendingEntries.Add(float64(applied))
	pt.s.m.increments.Add(float64(applied))
	pt.s.m.records.Add(float64(requests))
	pt.s.m.skipped.Add(float64(skipped))
	return nil
}

// applyGroup adds one group to its window of each resolution in [from,
// to) that does not hold seq yet (R2), and returns how many windows took
// it, and the requests skipped and applied in resolution from.
func (pt *partition) applyGroup(ctx context.Context, seq uint64, from, to int, t int64, key [counts.AddrLen]byte, c counts.Counters) (applied, skipped, requests uint64, err error) {
	for r := from; r < to; r++ {
		w, err := pt.windowFor(ctx, r, t)
		if err != nil {
			return applied, skipped, requests, err
		}
		if seq <= w.lastSeq() {
			if r == from {
				skipped += c.Requests
			}
			continue
		}
		k := key
		if w.kept != nil {
			k = w.kept.route(key, pt.s.cfg.DimsTopK)
		}
		w.pending = append(w.pending, counts.Entry{Addr: k, Counters: c})
		pt.pendingN++
		w.dirty = true
		applied++
		if r == from {
			requests += c.Requests
		}
	}
	return applied, skipped, requests, nil
}

// prefetchParallel is how many manifests prefetch reads at once.
const prefetchParallel = 32

// prefetch opens the windows of b that are not open yet, reading their
// manifests concurrently. A batch of a sparse historical log, or of
// timestamps spread over years, touches many windows; reading them one at
// a time would bound the partition by the KV round trip.
func (pt *partition) prefetch(ctx context.Context, b *batch) error {
	var need []windowKey
	need = pt.missing(need, b.minutes, 0, pt.s.nIP)
	need = pt.missing(need, b.dims.minutes, pt.s.nIP, len(pt.s.res))
	if len(need) < 2 {
		return nil // windowFor reads it
	}
	opened := make([]*window, len(need))
	errs := make([]error, len(need))
	sem := make(chan struct{}, prefetchParallel)
	var wg sync.WaitGroup
	for i, k := range need {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			key := counts.Key(time.Unix(k.start, 0), pt.p)
			m, rev, err := pt.s.stores[k.res].Load(ctx, key)
			opened[i], errs[i] = &window{key: key, m: m, rev: rev}, err
			if err == nil {
				errs[i] = pt.loadKept(ctx, k.res, opened[i])
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	for i, k := range need {
		opened[i].used = pt.flushes
		pt.windows[k] = opened[i]
	}
	pt.s.m.openWindows.Add(float64(len(need)))
	return nil
}

// missing appends the windows of resolutions [from, to) that minutes
// (sorted) need and that are not open.
func (pt *partition) missing(need []windowKey, minutes []int64, from, to int) []windowKey {
	lastMinute := int64(math.MinInt64)
	prev := make([]windowKey, to)
	for r := range prev {
		prev[r].start = math.MinInt64
	}
	for _, m := range minutes {
		if m == lastMinute {
			continue
		}
		lastMinute = m
		for r := from; r < to; r++ {
			// Groups are sorted by minute, so each resolution's keys come
			// in order and a repeat is the previous one.
			k := pt.keyOf(r, lastMinute*60_000)
			if k == prev[r] {
				continue
			}
			prev[r] = k
			if _, ok := pt.windows[k]; !ok {
				need = append(need, k)
			}
		}
	}
	return need
}

// checkRaw applies the newest sample of the raw stream once this partition
// has read everything that was in the parsed stream when it was taken: raw
// batches below the sample's first sequence are then either applied or
// lost for good (gone from the raw stream, and their outputs, which were
// published before the raw batch was acknowledged, are not in the parsed
// stream any more).
func (pt *partition) checkRaw() {
	if pt.sample == nil {
		pt.sample = pt.s.rawSample.Load()
	}
	sm := pt.sample
	if sm == nil || pt.pos < sm.parsedLast || sm.rawFirst == 0 {
		return
	}
	pt.sample = nil
	if pt.untrack {
		return // nothing seen yet since the upgrade
	}
	missing, first := pt.raw.advance(sm.rawFirst-1, pt.legacy)
	if missing == 0 {
		return
	}
	pt.lost += missing
	pt.s.m.lostBatches.Add(float64(missing))
	pt.s.log.Error("raw batches lost before this partition counted them: they left the raw or parsed stream (retention or limits) before an aggregator read them",
		"partition", pt.p, "lost_batches", missing, "first_raw_seq", first, "raw_first_seq", sm.rawFirst)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func (pt *partition) keyOf(r int, tms int64) windowKey {
	size := pt.s.res[r].Size.Milliseconds()
	return windowKey{res: r, start: floorDiv(tms, size) * size / 1000}
}

// windowFor returns the window of resolution r holding event time tms,
// reading its manifest from KV the first time it is needed.
func (pt *partition) windowFor(ctx context.Context, r int, tms int64) (*window, error) {
	k := pt.keyOf(r, tms)
	if w := pt.last[r]; w != nil && pt.lastKey[r] == k {
		return w, nil
	}
	w, ok := pt.windows[k]
	if !ok {
		key := counts.Key(time.Unix(k.start, 0), pt.p)
		m, rev, err := pt.s.stores[r].Load(ctx, key)
		if err != nil {
			return nil, err
		}
		w = &window{key: key, m: m, rev: rev}
		if err := pt.loadKept(ctx, r, w); err != nil {
			return nil, err
		}
		pt.windows[k] = w
		pt.s.m.openWindows.Inc()
	}
	w.used = pt.flushes
	pt.last[r], pt.lastKey[r] = w, k
	return w, nil
}

// flush commits every dirty window, then the checkpoint. The checkpoint is
// written last: whatever a crash interrupts, the windows written carry
// their own LastSeq and the rest is replayed.
func (pt *partition) flush(ctx context.Context) error {
	start := time.Now()
	keys := make([]windowKey, 0, 8)
	for k, w := range pt.windows {
		if w.dirty {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 && pt.cpSeq == pt.pos {
		return pt.cutClosed(ctx)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].res != keys[j].res {
			return keys[i].res < keys[j].res
		}
		return keys[i].start < keys[j].start
	})
	type write struct {
		w *window
		p *counts.Pending
	}
	writes := make([]write, 0, len(keys))
	for _, k := range keys {
		w := pt.windows[k]
		// The change must not alias pending, which is reused.
		ch := counts.Change{Entries: fold(w.pending), DeadLetters: w.dead, LastSeq: pt.pos}
		writes = append(writes, write{w: w, p: pt.s.stores[k.res].Commit(ctx, w.key, w.m, w.rev, ch)})
	}
	var errs []error
	for _, wr := range writes {
		next, rev, st, err := wr.p.Wait(ctx)
		pt.s.m.readBytes.Add(float64(st.ReadBytes))
		if err != nil {
			if errors.Is(err, counts.ErrConflict) {
				err = fmt.Errorf("%w: %w", ErrFenced, err)
			}
			errs = append(errs, err)
			continue
		}
		pt.s.m.kvBytes.WithLabelValues("manifest").Add(float64(st.ManifestBytes))
		pt.s.m.kvBytes.WithLabelValues("chunk").Add(float64(st.ChunkBytes))
		pt.s.m.windowWrites.WithLabelValues(st.Kind.String()).Inc()
		w := wr.w
		w.m, w.rev = next, rev
		pt.pendingN -= len(w.pending)
		pt.s.m.pendingEntries.Sub(float64(len(w.pending)))
		w.pending = w.pending[:0]
		w.dead, w.dirty = 0, false
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if h := pt.s.knobs.beforeCheckpoint; h != nil {
		if err := h(pt.p); err != nil {
			return err
		}
	}
	if len(writes) > 0 && pt.s.crashes.Load() > 0 && pt.s.crashes.Add(-1) >= 0 {
		return fmt.Errorf("partition %d: %w before the checkpoint", pt.p, errInjectedCrash)
	}

	cp, err := proto.Marshal(&logtallyv1.Checkpoint{
		Seq: pt.pos, WatermarkUnixMs: pt.wm, Owner: pt.s.id,
		RawLow: pt.raw.low, RawRanges: pt.raw.ranges(), LostBatches: pt.lost, LegacyRawMax: pt.legacy,
	})
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	var rev uint64
	if pt.cpRev == 0 {
		rev, err = pt.s.state.Create(ctx, checkpointKey(pt.p), cp)
	} else {
		rev, err = pt.s.state.Update(ctx, checkpointKey(pt.p), cp, pt.cpRev)
	}
	if err != nil {
		if isWrongLastSeq(err) || errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%w: checkpoint of partition %d: %w", ErrFenced, pt.p, err)
		}
		return fmt.Errorf("write checkpoint of partition %d: %w", pt.p, err)
	}
	pt.s.m.kvBytes.WithLabelValues("checkpoint").Add(float64(len(cp)))
	pt.cpRev, pt.cpSeq = rev, pt.pos
	pt.s.m.flushes.Inc()
	pt.s.m.flushSeconds.Observe(time.Since(start).Seconds())
	pt.s.m.watermark.WithLabelValues(strconv.Itoa(pt.p)).Set(float64(pt.wm) / 1000)
	pt.flushes++
	if pt.s.cfg.PurgeEvery > 0 && pt.flushes%pt.s.cfg.PurgeEvery == 0 {
		pt.purge(ctx)
	}
	if err := pt.cutClosed(ctx); err != nil {
		return err
	}
	pt.evict()
	return nil
}

// purge drops the partition's parsed messages that the checkpoint covers, so
// the stream holds only what is not yet counted.
func (pt *partition) purge(ctx context.Context) {
	if err := pt.s.parsed.Purge(ctx, jetstream.WithPurgeSubject(topology.ParsedSubject(pt.p)), jetstream.WithPurgeSequence(pt.cpSeq+1)); err != nil {
		pt.s.log.Warn("purge counted messages", "partition", pt.p, "error", err)
	}
}

// evict forgets the clean windows that no record touched in the last
// idleFlushes flush intervals, and then the least recently used clean ones
// while more than the configured number are open; a later record for one
// reads its manifest again. Event time plays no part: a partition that
// replays last year's log next to live traffic keeps both sets of windows
// while they are in use.
func (pt *partition) evict() {
	var clean []windowKey
	for k, w := range pt.windows {
		if w.dirty {
			continue
		}
		if w.used+idleFlushes <= pt.flushes {
			pt.drop(k)
			continue
		}
		clean = append(clean, k)
	}
	if extra := len(pt.windows) - pt.s.cfg.MaxOpenWindows; extra > 0 {
		slices.SortFunc(clean, func(a, b windowKey) int {
			return cmp.Compare(pt.windows[a].used, pt.windows[b].used)
		})
		for _, k := range clean[:min(extra, len(clean))] {
			pt.drop(k)
		}
	}
	for r := range pt.last {
		pt.last[r] = nil
	}
}

// idleFlushes is how many flushes a clean window stays open untouched.
const idleFlushes = 4

func (pt *partition) drop(k windowKey) {
	pt.remember(k, pt.windows[k])
	delete(pt.windows, k)
	pt.s.m.openWindows.Dec()
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

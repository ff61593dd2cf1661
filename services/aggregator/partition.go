package aggregator

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
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

type window struct {
	*counts.Window
	rev   uint64 // KV revision the value was read at or written as; 0 = absent
	dirty bool
	used  uint64 // position when last touched, for eviction
}

// partition applies the records of one partition to its windows. It is
// driven by a single goroutine; nothing in it is shared.
type partition struct {
	s *Service
	p int

	pos   uint64 // stream sequence of the last applied message
	cpSeq uint64 // sequence of the last checkpoint written or read
	wm    int64  // event-time watermark, unix ms
	cpRev uint64 // revision of the checkpoint key

	windows  map[windowKey]*window
	last     []*window // per resolution: the window of the previous record
	lastKey  []windowKey
	late     []jetstream.PubAckFuture
	flushes  int
	failures int // consecutive failed flushes
	scratch  batch
}

func checkpointKey(p int) string { return "cp." + strconv.Itoa(p) }

// run owns the partition until ctx is cancelled (abort, no flush) or release
// is closed (flush, then return). Failures restart from the checkpoint.
func (pt *partition) run(ctx context.Context, release <-chan struct{}) {
	log := pt.s.log.With("partition", pt.p)
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

// session loads the checkpoint and applies messages after it. Every session
// starts from what is durable in KV, so a restart never double counts.
func (pt *partition) session(ctx context.Context, release <-chan struct{}) error {
	pt.windows = map[windowKey]*window{}
	pt.last = make([]*window, len(pt.s.res))
	pt.lastKey = make([]windowKey, len(pt.s.res))
	pt.late = nil
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
// in-memory state: not after losing a compare-and-swap, and not after late
// records could not be published (their futures are spent; a restart
// publishes them again under the same message IDs).
func retryable(err error) bool {
	return !errors.Is(err, ErrFenced) && !errors.Is(err, errLateRecords) &&
		!errors.Is(err, context.Canceled)
}

func (pt *partition) loadCheckpoint(ctx context.Context) error {
	pt.pos, pt.wm, pt.cpRev, pt.cpSeq = 0, 0, 0, 0
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
	pt.pos, pt.wm, pt.cpRev, pt.cpSeq = cp.Seq, cp.WatermarkUnixMs, e.Revision(), cp.Seq
	return nil
}

// apply counts one message. A record of message seq goes into window w only
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
	lateness := pt.s.cfg.AllowedLateness.Milliseconds()
	var lateAddrs []byte
	var lateTimes []int64
	var applied, skipped int
	for i, t := range b.times {
		addr := [counts.AddrLen]byte(b.addrs[i*counts.AddrLen : (i+1)*counts.AddrLen])
		if pt.wm != 0 && t < pt.wm-lateness {
			lateAddrs = append(lateAddrs, addr[:]...)
			lateTimes = append(lateTimes, t)
			continue
		}
		if t > pt.wm {
			pt.wm = t
		}
		for r := range pt.s.res {
			w, err := pt.windowFor(ctx, r, t, seq)
			if err != nil {
				return err
			}
			if seq > w.LastSeq {
				w.Counts[addr]++
				w.dirty = true
				if r == 0 {
					applied++
				}
			} else if r == 0 {
				skipped++
			}
		}
	}
	if len(lateTimes) > 0 {
		for r := range pt.s.res {
			w, err := pt.windowFor(ctx, r, pt.wm, seq)
			if err != nil {
				return err
			}
			if seq > w.LastSeq {
				w.Late += uint64(len(lateTimes))
				w.dirty = true
			}
		}
		if err := pt.publishLate(seq, lateAddrs, lateTimes); err != nil {
			return err
		}
	}
	if b.deadLetters > 0 {
		for r := range pt.s.res {
			w, err := pt.windowFor(ctx, r, b.receivedMS, seq)
			if err != nil {
				return err
			}
			if seq > w.LastSeq {
				w.DeadLetters += b.deadLetters
				w.dirty = true
			}
		}
	}
	pt.s.m.records.Add(float64(applied))
	pt.s.m.skipped.Add(float64(skipped))
	pt.s.m.late.Add(float64(len(lateTimes)))
	pt.pos = seq
	return nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// windowFor returns the window of resolution r holding event time tms,
// reading it from KV the first time it is needed.
func (pt *partition) windowFor(ctx context.Context, r int, tms int64, seq uint64) (*window, error) {
	size := pt.s.res[r].Size.Milliseconds()
	k := windowKey{res: r, start: floorDiv(tms, size) * size / 1000}
	if w := pt.last[r]; w != nil && pt.lastKey[r] == k {
		w.used = seq
		return w, nil
	}
	w, ok := pt.windows[k]
	if !ok {
		var err error
		if w, err = pt.load(ctx, k); err != nil {
			return nil, err
		}
		pt.windows[k] = w
	}
	w.used = seq
	pt.last[r], pt.lastKey[r] = w, k
	return w, nil
}

func (pt *partition) load(ctx context.Context, k windowKey) (*window, error) {
	key := counts.Key(time.Unix(k.start, 0), pt.p)
	kv := pt.s.buckets[k.res]
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return &window{Window: counts.NewWindow()}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read window %s/%s: %w", kv.Bucket(), key, err)
	}
	cw, err := counts.Unmarshal(e.Value())
	if err != nil {
		return nil, fmt.Errorf("window %s/%s: %w", kv.Bucket(), key, err)
	}
	return &window{Window: cw, rev: e.Revision()}, nil
}

func (pt *partition) publishLate(seq uint64, addrs []byte, times []int64) error {
	data, err := proto.Marshal(&logtallyv1.RecordBatch{Addrs: addrs, TimesMs: times, RawSeq: seq})
	if err != nil {
		return fmt.Errorf("encode late batch: %w", err)
	}
	id := "late-" + strconv.Itoa(pt.p) + "-" + strconv.FormatUint(seq, 10)
	f, err := pt.s.js.PublishAsync(topology.LateSubject(pt.p), data, jetstream.WithMsgID(id))
	if err != nil {
		return fmt.Errorf("publish late records of partition %d: %w", pt.p, err)
	}
	pt.late = append(pt.late, f)
	return nil
}

// flush writes every dirty window with compare-and-swap, then the checkpoint.
// The checkpoint is written last: whatever a crash interrupts, the windows
// written carry their own LastSeq and the rest is replayed.
func (pt *partition) flush(ctx context.Context) error {
	start := time.Now()
	if err := waitAll(ctx, pt.late); err != nil {
		return fmt.Errorf("%w of partition %d: %w", errLateRecords, pt.p, err)
	}
	pt.late = pt.late[:0]

	type write struct {
		w *window
		f jetstream.PubAckFuture
	}
	var writes []write
	keys := make([]windowKey, 0, 8)
	for k, w := range pt.windows {
		if w.dirty {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 && pt.cpSeq == pt.pos {
		return nil
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].res != keys[j].res {
			return keys[i].res < keys[j].res
		}
		return keys[i].start < keys[j].start
	})
	for _, k := range keys {
		w := pt.windows[k]
		w.LastSeq = pt.pos
		data, err := w.Marshal()
		if err != nil {
			return fmt.Errorf("encode window: %w", err)
		}
		subj := "$KV." + pt.s.buckets[k.res].Bucket() + "." + counts.Key(time.Unix(k.start, 0), pt.p)
		msg := &nats.Msg{Subject: subj, Data: data}
		f, err := pt.s.js.PublishMsgAsync(msg, jetstream.WithExpectLastSequencePerSubject(w.rev))
		if err != nil {
			return fmt.Errorf("write window %s: %w", subj, err)
		}
		writes = append(writes, write{w: w, f: f})
	}
	var errs []error
	for _, wr := range writes {
		select {
		case ack := <-wr.f.Ok():
			wr.w.rev = ack.Sequence
			wr.w.dirty = false
		case err := <-wr.f.Err():
			if isWrongLastSeq(err) {
				errs = append(errs, fmt.Errorf("%w: %s: %v", ErrFenced, wr.f.Msg().Subject, err))
			} else {
				errs = append(errs, fmt.Errorf("write %s: %w", wr.f.Msg().Subject, err))
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	pt.s.m.windowWrites.Add(float64(len(writes)))

	cp, err := proto.Marshal(&logtallyv1.Checkpoint{Seq: pt.pos, WatermarkUnixMs: pt.wm, Owner: pt.s.id})
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
			return fmt.Errorf("%w: checkpoint of partition %d: %v", ErrFenced, pt.p, err)
		}
		return fmt.Errorf("write checkpoint of partition %d: %w", pt.p, err)
	}
	pt.cpRev, pt.cpSeq = rev, pt.pos
	pt.s.m.flushes.Inc()
	pt.s.m.flushSeconds.Observe(time.Since(start).Seconds())
	pt.s.m.watermark.WithLabelValues(strconv.Itoa(pt.p)).Set(float64(pt.wm) / 1000)
	pt.flushes++
	if pt.s.cfg.PurgeEvery > 0 && pt.flushes%pt.s.cfg.PurgeEvery == 0 {
		pt.purge(ctx)
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

// evict forgets clean windows far behind the watermark; a late record for
// one reads it from KV again.
func (pt *partition) evict() {
	for k, w := range pt.windows {
		if w.dirty {
			continue
		}
		size := pt.s.res[k.res].Size.Milliseconds()
		if k.start*1000+2*size < pt.wm || len(pt.windows) > pt.s.cfg.MaxCachedWindows {
			delete(pt.windows, k)
		}
	}
	for r := range pt.last {
		pt.last[r] = nil
	}
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

func waitAll(ctx context.Context, fs []jetstream.PubAckFuture) error {
	for _, f := range fs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

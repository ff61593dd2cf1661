// Package parser turns raw line batches into combined record batches, one
// per (raw batch, partition): the lines of a raw batch are counted per
// (minute, client IP) with their classes, and every partition gets its
// message, empty or not, so the aggregator can deduplicate by raw sequence
// and notice a batch that never arrived. Replicas share one durable
// consumer, so starting more parsers splits the work. Output message IDs
// derive from the raw message's stream sequence: a redelivered raw batch
// publishes the same IDs and JetStream drops them.
package parser

import (
	"context"
	"errors"
	"fmt"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/dims"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/service"
	"github.com/logtally/logtally/internal/topology"
	"github.com/logtally/logtally/services/parser/format"
)

// namesSubject is where a KV put of the names bucket goes.
const namesSubject = "$KV." + topology.NamesBucket + "."

// maxDeadLine is how much of a rejected line is kept in its dead letter.
const maxDeadLine = 4096

// Service is the parser stage.
type Service struct {
	cfg  Config
	deps service.Deps
	log  hclog.Logger
	js   jetstream.JetStream
	m    *metrics
	lag  *lateness
	opts format.Options
	dims *dimsConfig // nil: no field beyond the IP is counted

	cons     jetstream.Consumer
	itMu     sync.Mutex
	iters    []jetstream.MessagesContext
	stopping bool // set under itMu; no new iterators after it
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
	ready    atomic.Bool
}

// New builds the parser.
func New(cfg Config, deps service.Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lag := newLateness()
	if deps.Registerer != nil {
		if err := deps.Registerer.Register(lag); err != nil {
			return nil, fmt.Errorf("register lateness histogram: %w", err)
		}
	}
	dc := cfg.dimsConfig()
	if !dc.any() {
		dc = nil
	}
	return &Service{
		dims: dc,
		cfg:  cfg,
		deps: deps,
		log:  deps.Log.Named("parser"),
		js:   deps.NATS.JS,
		m:    newMetrics(deps.Registerer),
		lag:  lag,
		opts: format.Options{
			JSONIPFields:   splitList(cfg.JSONIPFields),
			JSONTimeFields: splitList(cfg.JSONTimeFields),
			MaxFuture:      cfg.MaxFuture,
		},
	}, nil
}

// Name implements service.Service.
func (s *Service) Name() string { return "parser" }

// Start joins the shared durable consumer and starts the workers.
func (s *Service) Start(ctx context.Context) error {
	cons, err := s.js.CreateOrUpdateConsumer(ctx, topology.RawStream, jetstream.ConsumerConfig{
		Durable:       topology.ParserConsumer,
		Description:   "parser replicas share this consumer",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxAckPending: s.cfg.MaxAckPending,
		MaxDeliver:    -1,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", topology.ParserConsumer, topology.RawStream, err)
	}
	s.cons = cons
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for i := 0; i < s.cfg.Workers; i++ {
		it, err := cons.Messages(jetstream.PullMaxMessages(8))
		if err != nil {
			s.cancel()
			return fmt.Errorf("consume %s: %w", topology.RawStream, err)
		}
		s.itMu.Lock()
		s.iters = append(s.iters, it)
		s.itMu.Unlock()
		s.wg.Add(1)
		go s.work(i)
	}
	go s.watchLag() // ends with s.ctx, after the workers
	s.ready.Store(true)
	if s.deps.Health != nil {
		s.deps.Health.Add("parser", func() error {
			if !s.ready.Load() {
				return errors.New("parser not consuming")
			}
			return nil
		})
	}
	s.log.Info("parser started", "workers", s.cfg.Workers, "partitions", s.deps.Topology.Partitions)
	return nil
}

// watchLag exports the shared consumer's lag every few seconds.
func (s *Service) watchLag() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
		if info, err := s.cons.Info(ctx); err == nil {
			s.m.pending.Set(float64(info.NumPending))
			s.m.ackPending.Set(float64(info.NumAckPending))
		}
		cancel()
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stop stops pulling, finishes the batches already received and acks them.
func (s *Service) Stop(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.ready.Store(false)
	s.itMu.Lock()
	s.stopping = true
	for _, it := range s.iters {
		it.Drain()
	}
	s.itMu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.cancel()
		<-done
	}
	s.cancel()
	if s.deps.Health != nil {
		s.deps.Health.Remove("parser")
	}
	s.log.Info("parser stopped")
	return nil
}

// Kill stops at once without acking what is in flight, as a crash would.
func (s *Service) Kill() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.itMu.Lock()
	s.stopping = true
	for _, it := range s.iters {
		it.Stop()
	}
	s.itMu.Unlock()
	s.wg.Wait()
}

func (s *Service) work(i int) {
	defer s.wg.Done()
	w := &worker{s: s, parser: format.New(s.opts), comb: newCombiner(s.deps.Topology.Partitions), names: nameCache{written: map[[counts.AddrLen]byte]int64{}}}
	if s.dims != nil {
		var err error
		if w.dims, err = newDimmer(s.dims, s.deps.Topology.Partitions); err != nil {
			s.log.Error("counting user agents is off for this worker", "error", err)
			dc := *s.dims
			dc.on[dims.UA], dc.on[dims.OS] = false, false
			w.dims, _ = newDimmer(&dc, s.deps.Topology.Partitions)
		}
	}
	s.itMu.Lock()
	it := s.iters[i]
	s.itMu.Unlock()
	for {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			// After an outage the pull subscription reports missed
			// heartbeats or other errors; a worker must outlive them.
			s.log.Warn("consume raw batches; resubscribing", "error", err)
			if it = s.resubscribe(i, it); it == nil {
				return
			}
			continue
		}
		if s.ctx.Err() != nil {
			return // killed: leave it unacked
		}
		start := time.Now()
		if err := w.handle(s.ctx, m); err != nil {
			s.m.publishFails.Inc()
			s.log.Warn("raw batch not processed; it will be delivered again", "error", err)
			_ = m.NakWithDelay(time.Second)
			continue
		}
		if err := m.Ack(); err != nil {
			s.log.Warn("ack raw batch", "error", err)
		}
		s.m.batches.Inc()
		s.m.batchSeconds.Observe(time.Since(start).Seconds())
	}
}

// resubscribe replaces worker i's iterator after an error, retrying until
// it works or the service stops (then it returns nil).
func (s *Service) resubscribe(i int, old jetstream.MessagesContext) jetstream.MessagesContext {
	old.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
		s.itMu.Lock()
		if s.stopping {
			s.itMu.Unlock()
			return nil
		}
		it, err := s.cons.Messages(jetstream.PullMaxMessages(8))
		if err == nil {
			s.iters[i] = it
		}
		s.itMu.Unlock()
		if err == nil {
			return it
		}
		s.log.Warn("resubscribe to raw batches", "error", err)
	}
}

type worker struct {
	s      *Service
	parser *format.Parser
	raw    rawBatch
	comb   *combiner
	dims   *dimmer // nil when no field beyond the IP is counted
	names  nameCache
	// written are the names published for the current batch.
	written [][counts.AddrLen]byte
	dead    []deadLetter
	futs    []jetstream.PubAckFuture
	plain   []byte   // decompressed raw batch; lines alias it during handle
	lag     lagStats // the batch's lateness, added once it is acknowledged
}

// maxRawBatch bounds a decompressed raw batch: ingest never builds one
// larger than max_payload, so more is a corrupt or foreign message.
const maxRawBatch = 64 << 20

// payload returns the RawBatch encoding of a raw message, decompressing it
// when ingest compressed it.
func (w *worker) payload(m jetstream.Msg) ([]byte, error) {
	enc := ""
	if h := m.Headers(); h != nil {
		enc = h.Get(topology.EncodingHeader)
	}
	switch enc {
	case "":
		return m.Data(), nil
	case topology.EncodingS2:
		n, err := s2.DecodedLen(m.Data())
		if err != nil {
			return nil, fmt.Errorf("s2 payload: %w", err)
		}
		if n > maxRawBatch {
			return nil, fmt.Errorf("s2 payload decodes to %d bytes, more than %d", n, maxRawBatch)
		}
		if cap(w.plain) < n {
			w.plain = make([]byte, n)
		}
		out, err := s2.Decode(w.plain[:n], m.Data())
		if err != nil {
			return nil, fmt.Errorf("s2 payload: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown %s %q", topology.EncodingHeader, enc)
}

// maxUnacked bounds the output messages of one raw batch that a worker has
// published and not yet seen acknowledged. A batch of tiny bad lines turns
// into one dead letter per line (87k for 256 KiB of "x\n"); holding every
// future until the end cost about 1 KB per line and stayed referenced after
// the batch.
const maxUnacked = 1024

type deadLetter struct {
	line   []byte
	length int
	reason string
	code   string
}

// handle parses one raw batch and publishes its record batches, one per
// partition, and its dead letters; it returns only after JetStream
// acknowledged every output message.
func (w *worker) handle(ctx context.Context, m jetstream.Msg) (err error) {
	meta, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("raw message metadata: %w", err)
	}
	seq := meta.Sequence.Stream
	id := "r" + strconv.FormatUint(seq, 10)
	rb := &w.raw
	// Nothing of this batch may stay referenced by the worker afterwards:
	// the dead letters and raw lines alias the message, the futures hold
	// the published messages.
	defer w.release()
	defer func() {
		if err != nil {
			// Unacknowledged publishes may still be retried from these.
			w.comb.dropBuffers()
			if w.dims != nil {
				w.dims.comb.dropBuffers()
			}
		}
	}()
	data, derr := w.payload(m)
	if derr == nil {
		derr = decodeRaw(data, rb)
	}
	if derr != nil {
		w.s.m.badBatches.Inc()
		w.dead = append(w.dead, deadLetter{line: m.Data(), length: len(m.Data()), reason: fmt.Sprintf("%v: %v", ErrNotRawBatch, derr), code: "not_raw_batch"})
		// What decodeRaw read before it failed is not to be parsed, nor kept.
		clear(rb.lines)
		clear(rb.oversized)
		*rb = rawBatch{source: "unknown", receivedMS: meta.Timestamp.UnixMilli(), lines: rb.lines[:0], oversized: rb.oversized[:0]}
	}
	w.lag = w.s.lag.start(subjectToken(rb.source))
	records := w.combine(rb, seq)

	// A window may name a hashed value only once its text is stored, or
	// the dashboard would show a hash: the names go out first and are
	// acknowledged with everything else before the raw batch is.
	now := time.Now()
	w.written = w.written[:0]
	if w.dims != nil {
		for k, text := range w.dims.names {
			if !w.names.needs(k, now) {
				continue
			}
			fut, err := w.s.js.PublishAsync(namesSubject+dims.NameKey(k), []byte(text))
			if err != nil {
				return fmt.Errorf("publish name of %s: %w", id, err)
			}
			w.futs = append(w.futs, fut)
			w.written = append(w.written, k)
		}
	}
	groups := 0
	for p := range w.comb.parts {
		pb := &w.comb.parts[p]
		groups += len(pb.groups)
		var dg []group
		if w.dims != nil {
			dg = w.dims.comb.parts[p].groups
			groups += len(dg)
		}
		pb.buf = appendRecordBatch(pb.buf[:0], pb, dg, seq, rb.receivedMS)
		fut, err := w.s.js.PublishAsync(topology.ParsedSubject(p), pb.buf, jetstream.WithMsgID(id+".p"+strconv.Itoa(p)))
		if err != nil {
			return fmt.Errorf("publish partition %d of %s: %w", p, id, err)
		}
		w.futs = append(w.futs, fut)
		if len(w.futs) >= maxUnacked {
			if err := w.waitAcks(ctx, id); err != nil {
				return err
			}
		}
	}
	src := subjectToken(rb.source)
	for i, d := range w.dead {
		line := d.line
		if len(line) > maxDeadLine {
			line = line[:maxDeadLine]
		}
		data, err := proto.Marshal(&logtallyv1.DeadLetter{
			Line: line, Source: rb.source, Peer: rb.peer, Reason: d.reason,
			ReceivedUnixMs: rb.receivedMS, Length: uint64(d.length),
		})
		if err != nil {
			return fmt.Errorf("encode dead letter: %w", err)
		}
		fut, err := w.s.js.PublishAsync(topology.DeadPrefix+src, data, jetstream.WithMsgID(id+".d"+strconv.Itoa(i)))
		if err != nil {
			return fmt.Errorf("publish dead letter of %s: %w", id, err)
		}
		w.futs = append(w.futs, fut)
		if len(w.futs) >= maxUnacked {
			if err := w.waitAcks(ctx, id); err != nil {
				return err
			}
		}
	}
	if err := w.waitAcks(ctx, id); err != nil {
		return err
	}
	w.s.m.lines.Add(float64(len(rb.lines) + len(rb.oversized)))
	w.s.m.records.Add(float64(records))
	w.s.m.groups.Add(float64(groups))
	w.s.m.published.Add(float64(len(w.comb.parts)))
	if w.dims != nil {
		for _, k := range w.written {
			w.names.wrote(k, now)
		}
		w.s.m.namesWritten.Add(float64(len(w.written)))
		w.s.m.uaUnparsed.Add(float64(w.dims.uaSkipped))
	}
	w.s.lag.add(src, &w.lag)
	for _, d := range w.dead {
		w.s.m.deadLetters.WithLabelValues(d.code).Inc()
	}
	return nil
}

// combine parses the lines of rb into w.comb, collects the dead letters in
// w.dead and returns the number of records (lines counted). It publishes
// nothing, so that it is the same for a redelivered batch: lines without a
// timestamp take rb's receive time, and the dead-letter count goes to
// partition seq mod P.
func (w *worker) combine(rb *rawBatch, seq uint64) int {
	received := time.UnixMilli(rb.receivedMS).UTC()
	f, ferr := format.ParseFormat(rb.format)
	if ferr != nil {
		f = format.Auto
	}
	c := w.comb
	c.reset()
	if w.dims != nil {
		w.dims.reset()
	}
	records := 0
	var rec format.Record
	for i, line := range rb.lines {
		if err := w.parseLine(rb, i, line, f, received, &rec); err != nil {
			w.dead = append(w.dead, deadLetter{line: line, length: len(line), reason: err.Error(), code: reasonCode(err)})
			continue
		}
		w.lag.observe(rec.Time.UnixMilli())
		c.add(&rec)
		if w.dims != nil {
			w.dims.add(&rec)
		}
		records++
	}
	for _, o := range rb.oversized {
		w.dead = append(w.dead, oversizedDeadLetter(o))
	}
	if len(w.dead) > 0 {
		// The count travels with the records so that the aggregator's exactly
		// once bookkeeping covers dead letters too.
		c.parts[seq%uint64(len(c.parts))].deadLetters = uint64(len(w.dead))
	}
	c.finish()
	if w.dims != nil {
		w.dims.comb.finish()
	}
	return records
}

// oversizedDeadLetter is the dead letter of an entry that travelled as its
// prefix only: a line over the listener's limit, or a syslog frame that the
// end of its connection cut short. A cut frame is not parsed for what
// arrived of it: the message is not the one sent (a cut address is another
// address, a cut status another status).
func oversizedDeadLetter(o oversized) deadLetter {
	if !o.truncated {
		return deadLetter{line: o.prefix, length: int(o.length), reason: fmt.Sprintf("line too long: %d bytes", o.length), code: "line_too_long"}
	}
	reason := fmt.Sprintf("truncated frame: the connection ended after %d of the %d bytes its octet count declared", o.received, o.length)
	if o.length == 0 {
		reason = fmt.Sprintf("truncated frame: the connection ended in the octet count %q", o.prefix)
	}
	return deadLetter{line: o.prefix, length: int(o.received), reason: reason, code: "truncated_frame"}
}

// waitAcks waits until JetStream acknowledged every future in w.futs and
// empties it.
func (w *worker) waitAcks(ctx context.Context, id string) error {
	defer func() {
		clear(w.futs)
		w.futs = w.futs[:0]
	}()
	for _, fut := range w.futs {
		select {
		case <-fut.Ok():
		case err := <-fut.Err():
			return fmt.Errorf("publish output of %s: %w", id, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// release drops the worker's references into the last raw batch.
func (w *worker) release() {
	clear(w.futs)
	w.futs = w.futs[:0]
	clear(w.dead)
	w.dead = w.dead[:0]
	clear(w.raw.lines)
	clear(w.raw.oversized)
}

// subjectToken keeps a source name usable as one subject token.
func subjectToken(s string) string {
	if s == "" {
		return "unknown"
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// reasonCode is the metric label of a parse error: a fixed set, unlike the
// error text, which quotes the input.
func reasonCode(err error) string {
	for _, c := range []struct {
		err  error
		code string
	}{
		{format.ErrEmptyLine, "empty_line"},
		{format.ErrInvalidUTF8, "invalid_utf8"},
		{format.ErrBinary, "binary"},
		{format.ErrMalformed, "malformed"},
		{format.ErrNoClientIP, "no_client_ip"},
		{format.ErrBadIP, "bad_ip"},
		{format.ErrBadTimestamp, "bad_timestamp"},
		{format.ErrFutureTimestamp, "future_timestamp"},
		{format.ErrBadSyslog, "bad_syslog"},
		{format.ErrBadJSON, "bad_json"},
	} {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "other"
}

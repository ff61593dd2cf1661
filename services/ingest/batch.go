package ingest

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// lineCost is what one line adds to the encoded RawBatch.
func lineCost(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

// oversizedCost is what one oversized entry adds to the encoded RawBatch,
// at most (a truncated frame's two fields included).
func oversizedCost(prefix int) int {
	inner := 1 + protowire.SizeVarint(uint64(prefix)) + prefix + 1 + 10 + 2 + 1 + 10
	return 1 + protowire.SizeVarint(uint64(inner)) + inner
}

// batch is one RawBatch under construction, kept in its wire encoding:
// every line is appended as field 5 the moment it is added, so a line is
// copied once on its way from the socket to JetStream and nothing is
// marshalled at the end. The fields that describe the batch (source, peer,
// receive time, format) are appended last by encode: protobuf readers
// accept fields in any order. Buffers come from a pool and go back once the
// batch is acknowledged.
type batch struct {
	pool  *buffers
	enc   []byte
	n     int // lines and oversized entries
	nl    int // lines
	size  int
	peer  string
	mixed bool
	// abandoned: a publish of enc was given up on with its ack pending;
	// the client may still send it, so the buffer is left to the GC.
	abandoned bool
	first     time.Time
	timer     *time.Timer
}

func newBatch(pool *buffers, first time.Time) *batch {
	return &batch{pool: pool, enc: pool.get(), size: batchOverhead, first: first}
}

// release returns the batch's buffer once nothing refers to its encoding.
func (b *batch) release() {
	if b.enc != nil && !b.abandoned {
		b.pool.put(b.enc)
		b.enc = nil
	}
}

func (b *batch) count() int { return b.n }

func (b *batch) setPeer(peer string) {
	switch {
	case b.count() == 0:
		b.peer = peer
	case !b.mixed && b.peer != peer:
		b.peer, b.mixed = "", true
	}
}

// Field numbers of logtallyv1.RawBatch and OversizedLine.
const (
	fieldSource    = 1
	fieldPeer      = 2
	fieldReceived  = 3
	fieldFormat    = 4
	fieldLines     = 5
	fieldOversized = 6
	fieldLineMeta  = 7
	fieldPrefix    = 1
	fieldLength    = 2
	// OversizedLine
	fieldCutTruncated = 3
	fieldCutReceived  = 4
	// LineMeta
	fieldMetaLine     = 1
	fieldMetaAddr     = 2
	fieldMetaTime     = 3
	fieldMetaObserved = 4
)

func (b *batch) addLine(p []byte) {
	b.enc = protowire.AppendTag(b.enc, fieldLines, protowire.BytesType)
	b.enc = protowire.AppendBytes(b.enc, p)
	b.n++
	b.nl++
	b.size += lineCost(len(p))
}

// lineMeta is what a sender said about one line (logtallyv1.LineMeta):
// its client address and times, zero when unset.
type lineMeta struct {
	addr       netip.Addr
	timeMS     int64
	observedMS int64
}

func (m lineMeta) empty() bool { return !m.addr.IsValid() && m.timeMS == 0 && m.observedMS == 0 }

// maxLineMetaCost bounds what one LineMeta entry adds to a batch.
const maxLineMetaCost = 2 + (1 + 5) + (2 + 16) + 2*(1+10)

// addLineMeta adds a line and, unless m is empty, its LineMeta entry.
func (b *batch) addLineMeta(p []byte, m lineMeta) {
	idx := b.nl
	b.addLine(p)
	if m.empty() {
		return
	}
	inner := 1 + protowire.SizeVarint(uint64(idx))
	var a []byte
	if m.addr.IsValid() {
		if m.addr.Is4() {
			a4 := m.addr.As4()
			a = a4[:]
		} else {
			a16 := m.addr.As16()
			a = a16[:]
		}
		inner += 1 + protowire.SizeBytes(len(a))
	}
	if m.timeMS != 0 {
		inner += 1 + protowire.SizeVarint(uint64(m.timeMS))
	}
	if m.observedMS != 0 {
		inner += 1 + protowire.SizeVarint(uint64(m.observedMS))
	}
	start := len(b.enc)
	b.enc = protowire.AppendTag(b.enc, fieldLineMeta, protowire.BytesType)
	b.enc = protowire.AppendVarint(b.enc, uint64(inner))
	b.enc = protowire.AppendTag(b.enc, fieldMetaLine, protowire.VarintType)
	b.enc = protowire.AppendVarint(b.enc, uint64(idx))
	if a != nil {
		b.enc = protowire.AppendTag(b.enc, fieldMetaAddr, protowire.BytesType)
		b.enc = protowire.AppendBytes(b.enc, a)
	}
	if m.timeMS != 0 {
		b.enc = protowire.AppendTag(b.enc, fieldMetaTime, protowire.VarintType)
		b.enc = protowire.AppendVarint(b.enc, uint64(m.timeMS))
	}
	if m.observedMS != 0 {
		b.enc = protowire.AppendTag(b.enc, fieldMetaObserved, protowire.VarintType)
		b.enc = protowire.AppendVarint(b.enc, uint64(m.observedMS))
	}
	b.size += len(b.enc) - start
}

func (b *batch) addOversized(prefix []byte, length uint64) {
	b.addCut(oversizedLine{prefix: prefix, length: length})
}

// addCut adds an entry that travels as its prefix: an oversized line or a
// truncated frame (OversizedLine).
func (b *batch) addCut(o oversizedLine) {
	inner := 1 + protowire.SizeBytes(len(o.prefix)) + 1 + protowire.SizeVarint(o.length)
	if o.truncated {
		inner += 2 + 1 + protowire.SizeVarint(o.received)
	}
	b.enc = protowire.AppendTag(b.enc, fieldOversized, protowire.BytesType)
	b.enc = protowire.AppendVarint(b.enc, uint64(inner))
	b.enc = protowire.AppendTag(b.enc, fieldPrefix, protowire.BytesType)
	b.enc = protowire.AppendBytes(b.enc, o.prefix)
	b.enc = protowire.AppendTag(b.enc, fieldLength, protowire.VarintType)
	b.enc = protowire.AppendVarint(b.enc, o.length)
	if o.truncated {
		b.enc = protowire.AppendTag(b.enc, fieldCutTruncated, protowire.VarintType)
		b.enc = protowire.AppendVarint(b.enc, 1)
		b.enc = protowire.AppendTag(b.enc, fieldCutReceived, protowire.VarintType)
		b.enc = protowire.AppendVarint(b.enc, o.received)
	}
	b.n++
	b.size += oversizedCost(len(o.prefix))
}

// encode appends the batch's own fields and returns the RawBatch encoding.
// The batch takes no more lines afterwards.
func (b *batch) encode(source, format string) []byte {
	appendString := func(num protowire.Number, v string) {
		if v != "" {
			b.enc = protowire.AppendTag(b.enc, num, protowire.BytesType)
			b.enc = protowire.AppendString(b.enc, v)
		}
	}
	appendString(fieldSource, source)
	appendString(fieldPeer, b.peer)
	if ms := b.first.UnixMilli(); ms != 0 {
		b.enc = protowire.AppendTag(b.enc, fieldReceived, protowire.VarintType)
		b.enc = protowire.AppendVarint(b.enc, uint64(ms))
	}
	appendString(fieldFormat, format)
	return b.enc
}

// lineHandler takes the lines a framer cuts from a stream.
type lineHandler interface {
	line(p []byte) // p is only valid during the call; never empty
	oversized(prefix []byte, length uint64)
	// empty takes an empty line (or datagram, or frame). It must be
	// forwarded as an empty entry of RawBatch.lines, so that the parser
	// records it as a dead letter: bad input is never dropped silently.
	empty()
}

// chunk collects the lines one reader got from one read, so that a
// connection takes the shared batcher's lock once per read, not per line.
type chunk struct {
	buf   []byte
	ends  []int
	over  []oversizedLine
	first time.Time
	bytes int64
	blank int // empty lines among ends
	cut   int // truncated frames among over
}

func (c *chunk) start() {
	if c.first.IsZero() {
		c.first = time.Now()
	}
}

func (c *chunk) line(p []byte) {
	c.start()
	c.buf = append(c.buf, p...)
	c.ends = append(c.ends, len(c.buf))
	c.bytes += int64(len(p))
}

func (c *chunk) oversized(prefix []byte, length uint64) {
	c.start()
	c.over = append(c.over, oversizedLine{prefix: append([]byte(nil), prefix...), length: length})
	c.bytes += int64(length)
}

func (c *chunk) truncated(prefix []byte, declared, received uint64) {
	c.start()
	c.over = append(c.over, oversizedLine{prefix: append([]byte(nil), prefix...), length: declared, truncated: true, received: received})
	c.bytes += int64(received)
	c.cut++
}

func (c *chunk) empty() {
	c.line(nil)
	c.blank++
}

func (c *chunk) entries() int { return len(c.ends) + len(c.over) }

// oversizedLine is the kept prefix of a line over the limit, or of a
// syslog frame cut short (truncated: received of its length bytes arrived).
type oversizedLine struct {
	prefix    []byte
	length    uint64
	truncated bool
	received  uint64
}

func (c *chunk) reset() {
	c.buf, c.ends, c.over = c.buf[:0], c.ends[:0], c.over[:0]
	c.first, c.bytes, c.blank, c.cut = time.Time{}, 0, 0, 0
}

// batcher accumulates the lines of one source into batches and hands each
// full or lingering batch to a publisher goroutine. At most
// PublishMaxInFlight batches of a source are sealed and unacknowledged;
// these slots are the bounded queue that gives backpressure.
type batcher struct {
	s       *Service
	source  string
	format  string
	subject string
	slots   chan struct{}

	mu     sync.Mutex
	cur    *batch
	closed bool

	lines, bytes, oversized, blank counter
}

// counter is the subset of prometheus.Counter the batcher needs.
type counter interface{ Add(float64) }

func (s *Service) newBatcher(source, format string) *batcher {
	return &batcher{
		s:         s,
		source:    source,
		format:    format,
		subject:   subjectFor(source),
		slots:     make(chan struct{}, s.cfg.PublishMaxInFlight),
		lines:     s.m.lines.WithLabelValues(source),
		bytes:     s.m.bytes.WithLabelValues(source),
		oversized: s.m.oversized.WithLabelValues(source),
		blank:     s.m.empty.WithLabelValues(source),
	}
}

// add merges c into the current batch. With wait, it blocks while every
// slot of the source is in flight (TCP backpressure). Without wait, it adds
// nothing and returns false when a batch would have to be sealed and no
// slot is free (UDP: the caller drops the datagram).
func (bt *batcher) add(c *chunk, peer string, wait bool) bool {
	if c.entries() == 0 {
		return true
	}
	max := bt.s.cfg.BatchMaxBytes
	bt.mu.Lock()
	defer bt.mu.Unlock()
	if bt.closed {
		return false
	}
	need := func(cost int) bool {
		if bt.cur != nil && bt.cur.size+cost > max {
			if !bt.sealLocked(wait) {
				return false
			}
		}
		if bt.cur == nil {
			bt.cur = newBatch(bt.s.arenas, c.first)
			b := bt.cur
			b.timer = time.AfterFunc(bt.s.cfg.BatchLinger, func() { bt.linger(b) })
		}
		bt.cur.setPeer(peer)
		return true
	}
	count := func() {
		bt.lines.Add(float64(len(c.ends)))
		bt.bytes.Add(float64(c.bytes))
		if n := len(c.over) - c.cut; n > 0 {
			bt.oversized.Add(float64(n))
		}
		if c.blank > 0 {
			bt.blank.Add(float64(c.blank))
		}
	}
	if wait {
		// Everything will be added (or counted as lost at shutdown):
		// count now, before a seal can block.
		count()
	}
	start := 0
	for _, end := range c.ends {
		if !need(lineCost(end - start)) {
			return false
		}
		bt.cur.addLine(c.buf[start:end])
		start = end
	}
	for _, o := range c.over {
		if !need(oversizedCost(len(o.prefix))) {
			return false
		}
		bt.cur.addCut(o)
	}
	if !wait {
		count()
	}
	if bt.cur.size >= max-lineCost(0) {
		bt.sealLocked(wait)
	}
	return true
}

// sealLocked hands the current batch to a publisher once a slot is free.
// bt.mu is held: while a TCP reader waits here, the source's other readers
// wait for the lock, which is the backpressure.
func (bt *batcher) sealLocked(wait bool) bool {
	b := bt.cur
	if b == nil {
		return true
	}
	select {
	case bt.slots <- struct{}{}:
	default:
		if !wait {
			return false
		}
		t0 := time.Now()
		select {
		case bt.slots <- struct{}{}:
			bt.s.m.backpressure.Add(time.Since(t0).Seconds())
		case <-bt.s.giveUp.Done():
			bt.cur = nil
			b.timer.Stop()
			bt.s.lose(b.count())
			b.release()
			return true
		}
	}
	bt.cur = nil
	b.timer.Stop()
	bt.s.pending.Add(1)
	go bt.publish(b)
	return true
}

// linger seals b when its linger time is over, unless it was sealed already.
// It never waits: when every slot is in flight, b stays the open batch and
// the timer is re-armed. b keeps taking lines until it is full, and then TCP
// readers wait in sealLocked and UDP datagrams are dropped, so no more than
// one open batch per source is held beyond the in-flight slots.
func (bt *batcher) linger(b *batch) {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	if bt.cur != b || bt.closed {
		return
	}
	select {
	case bt.slots <- struct{}{}:
		bt.cur = nil
		bt.s.pending.Add(1)
		go bt.publish(b)
	default:
		b.timer.Reset(bt.s.cfg.BatchLinger)
	}
}

// flush seals the current batch and refuses further lines (Stop).
func (bt *batcher) flush() {
	bt.mu.Lock()
	bt.closed = true
	b := bt.cur
	bt.cur = nil
	if b != nil {
		b.timer.Stop()
		bt.s.pending.Add(1)
	}
	bt.mu.Unlock()
	if b != nil {
		bt.waitSlotAndPublish(b)
	}
}

// waitSlotAndPublish publishes b (already counted in s.pending) once a
// slot is free.
func (bt *batcher) waitSlotAndPublish(b *batch) {
	select {
	case bt.slots <- struct{}{}:
		go bt.publish(b)
	case <-bt.s.giveUp.Done():
		bt.s.lose(b.count())
		b.release()
		bt.s.pending.Done()
	}
}

// publish sends b until it is acknowledged or the service gives up. It
// owns one slot and one count of s.pending.
func (bt *batcher) publish(b *batch) {
	defer func() {
		<-bt.slots
		bt.s.pending.Done()
	}()
	data := b.encode(bt.source, bt.format)
	_, err := bt.s.publishData(bt.s.giveUp, "", bt.source, bt.source, bt.subject, data, b.count())
	if err != nil {
		bt.s.lose(b.count())
	}
	b.abandoned = errors.Is(err, errPublishInFlight)
	b.release()
}

package counts

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// Layout bounds how a window is split into values. Every value stays well
// under the server's max_payload, whatever the number of IPs.
type Layout struct {
	// ChunkBytes is the target size of one chunk (at most 256 KiB).
	ChunkBytes int
	// InlineBytes is how large the inline entries of a manifest may grow
	// before they are written out as a run. Past InlineKeep they are
	// written out too once a change is less than 1/InlineRatio of them:
	// then rewriting them every flush would cost more than the change.
	// Spilling needs an atomic batch, which on an R1 file store costs a
	// staging store of its own; windows that change a lot stay inline.
	InlineBytes int
	InlineKeep  int
	InlineRatio int
	// MaxDeltas is how many runs besides the base a window keeps before
	// the MergeFanIn smallest are merged into one (reads visit every run).
	MaxDeltas  int
	MergeFanIn int
	// Ratio: when the runs besides the base add up to Ratio × the base's
	// bytes, everything is merged into a new base. Each byte written as a
	// delta is then rewritten about 1 + 1/Ratio times: the cost of a flush
	// follows the change, not the window's size.
	Ratio float64
	// HeadSize is how many top entries per class a run's head keeps, so
	// that top-N queries rarely read a whole run.
	HeadSize int
	// MaxBatch is the largest atomic batch (chunks + manifest) a commit
	// may use: the server's max_batch_size (default 1000).
	MaxBatch int
	// RefreshAge: a run written longer ago than this is rewritten by the
	// next commit, so that a manifest never outlives the chunks it names
	// (each value expires by the bucket's max age after its own write).
	RefreshAge time.Duration
}

// DefaultLayout returns the layout for a server whose max_payload is
// maxPayload bytes (0: 1 MiB) and a bucket whose values live retention.
func DefaultLayout(maxPayload int64, retention time.Duration) Layout {
	if maxPayload <= 0 {
		maxPayload = 1 << 20
	}
	// Leave room for headers and the chunk's own framing.
	chunk := int(min(256<<10, maxPayload/2-512))
	return Layout{
		ChunkBytes:  chunk,
		InlineBytes: min(64<<10, chunk/4),
		InlineKeep:  min(32<<10, chunk/8),
		InlineRatio: 8,
		MaxDeltas:   32,
		MergeFanIn:  8,
		Ratio:       1,
		HeadSize:    64,
		MaxBatch:    1000,
		RefreshAge:  retention / 4,
	}
}

// Validate checks the layout.
func (l Layout) Validate() error {
	var errs []error
	if l.ChunkBytes < 1024 || l.ChunkBytes > 256<<10 {
		errs = append(errs, fmt.Errorf("chunk size %d must be between 1 KiB and 256 KiB", l.ChunkBytes))
	}
	if l.InlineBytes < 64 || l.InlineBytes > l.ChunkBytes {
		errs = append(errs, fmt.Errorf("inline size %d must be between 64 bytes and the chunk size %d", l.InlineBytes, l.ChunkBytes))
	}
	if l.InlineKeep < 0 || l.InlineKeep > l.InlineBytes || l.InlineRatio < 1 {
		errs = append(errs, fmt.Errorf("inline keep %d must be between 0 and the inline size %d, and the inline ratio %d at least 1", l.InlineKeep, l.InlineBytes, l.InlineRatio))
	}
	if l.MaxDeltas < 1 {
		errs = append(errs, fmt.Errorf("max deltas %d must be at least 1", l.MaxDeltas))
	}
	if l.MergeFanIn < 1 {
		errs = append(errs, fmt.Errorf("merge fan-in %d must be at least 1", l.MergeFanIn))
	}
	if l.Ratio <= 0 {
		errs = append(errs, fmt.Errorf("ratio %g must be positive", l.Ratio))
	}
	if l.HeadSize < 1 {
		errs = append(errs, fmt.Errorf("head size %d must be at least 1", l.HeadSize))
	}
	if l.MaxBatch < 2 {
		errs = append(errs, fmt.Errorf("max batch %d must be at least 2", l.MaxBatch))
	}
	return errors.Join(errs...)
}

// Store reads and writes the windows of one counts bucket.
type Store struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	kv     jetstream.KeyValue
	bucket string
	layout Layout
	now    func() time.Time
	// batches limits the atomic batches this process has open on the
	// bucket's stream (the server allows 50 per stream).
	batches chan struct{}
}

// KVStream is the name of the stream behind a KV bucket.
func KVStream(bucket string) string { return "KV_" + bucket }

// NewStore opens the store of bucket.
func NewStore(ctx context.Context, js jetstream.JetStream, bucket string, layout Layout) (*Store, error) {
	// A smaller inline size (tests, tiny payloads) caps the keep size.
	layout.InlineKeep = min(layout.InlineKeep, layout.InlineBytes)
	if err := layout.Validate(); err != nil {
		return nil, fmt.Errorf("window layout of %s: %w", bucket, err)
	}
	st, err := js.Stream(ctx, KVStream(bucket))
	if err != nil {
		return nil, fmt.Errorf("open stream of bucket %s: %w", bucket, err)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", bucket, err)
	}
	return &Store{js: js, stream: st, kv: kv, bucket: bucket, layout: layout, now: time.Now, batches: make(chan struct{}, 8)}, nil
}

// Bucket is the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

// Layout is the store's layout.
func (s *Store) Layout() Layout { return s.layout }

func (s *Store) subject(key string) string { return "$KV." + s.bucket + "." + key }

// Load reads a window's manifest from the stream leader (a direct get may
// be stale, and the revision is what the next write compares against). A
// missing window is (nil, 0, nil).
func (s *Store) Load(ctx context.Context, key string) (*Manifest, uint64, error) {
	msg, err := s.stream.GetLastMsgForSubject(ctx, s.subject(key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read window %s/%s: %w", s.bucket, key, err)
	}
	if op := msg.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" || msg.Header.Get("Nats-Marker-Reason") != "" {
		// A delete or an expiry marker: the window is gone, the next write
		// compares against the marker's revision.
		return nil, msg.Sequence, nil
	}
	m, err := UnmarshalManifest(msg.Data)
	if err != nil {
		return nil, 0, fmt.Errorf("window %s/%s revision %d: %w", s.bucket, key, msg.Sequence, err)
	}
	return m, msg.Sequence, nil
}

// ReadChunk reads chunk slot of a run of window key and checks that it is
// the run's. A direct get first (served by any replica, outside the
// stream's API queue, which a merge would otherwise flood with one request
// per chunk); a chunk never changes within its generation, so only a
// lagging replica can answer wrong, and then the leader is asked.
func (s *Store) ReadChunk(ctx context.Context, key string, slot uint32, generation uint64) (*Chunk, error) {
	if e, err := s.kv.Get(ctx, ChunkKey(key, slot)); err == nil {
		if c, err := checkChunk(e.Value(), s.bucket, ChunkKey(key, slot), generation); err == nil {
			return c, nil
		}
	}
	msg, err := s.stream.GetLastMsgForSubject(ctx, s.subject(ChunkKey(key, slot)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: chunk %s/%s is gone", ErrChanged, s.bucket, ChunkKey(key, slot))
	}
	if err != nil {
		return nil, fmt.Errorf("read chunk %s/%s: %w", s.bucket, ChunkKey(key, slot), err)
	}
	return checkChunk(msg.Data, s.bucket, ChunkKey(key, slot), generation)
}

func checkChunk(data []byte, bucket, key string, generation uint64) (*Chunk, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: chunk %s/%s is gone", ErrChanged, bucket, key)
	}
	c, err := UnmarshalChunk(data)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", bucket, key, err)
	}
	if c.Generation != generation {
		return nil, fmt.Errorf("%w: chunk %s/%s has generation %d, want %d", ErrChanged, bucket, key, c.Generation, generation)
	}
	return c, nil
}

// GetChunk reads one chunk with a KV get (direct get where the bucket
// allows it) for readers that may retry: a stale or replaced chunk is
// ErrChanged.
func GetChunk(ctx context.Context, kv jetstream.KeyValue, key string, slot uint32, generation uint64) (*Chunk, error) {
	ck := ChunkKey(key, slot)
	e, err := kv.Get(ctx, ck)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: chunk %s/%s is gone", ErrChanged, kv.Bucket(), ck)
	}
	if err != nil {
		return nil, fmt.Errorf("read chunk %s/%s: %w", kv.Bucket(), ck, err)
	}
	return checkChunk(e.Value(), kv.Bucket(), ck, generation)
}

// Change is what one commit adds to a window.
type Change struct {
	Entries     []Entry // sorted by address, no duplicates
	DeadLetters uint64
	Late        uint64
	LastSeq     uint64
}

// WriteKind says how a commit stored its entries.
type WriteKind int

// The kinds of commits, from cheapest.
const (
	WriteInline WriteKind = iota // the manifest alone
	WriteSpill                   // a new run, plus the manifest
	WriteMerge                   // the smallest runs merged with the new one
	WriteFull                    // every run merged into a new base
)

var writeKindNames = [...]string{"inline", "spill", "merge", "full"}

func (k WriteKind) String() string { return writeKindNames[k] }

// Stats describes one commit.
type Stats struct {
	Kind          WriteKind
	ManifestBytes int
	ChunkBytes    int // chunks and heads written
	Chunks        int
	ReadBytes     int // chunks read back to merge
}

// Pending is a commit in flight.
type Pending struct {
	next  *Manifest
	stats Stats
	fut   jetstream.PubAckFuture
	rev   uint64
	err   error
}

// Wait returns the new manifest and its revision once the commit landed.
// A write that lost its compare-and-swap returns ErrConflict.
func (p *Pending) Wait(ctx context.Context) (*Manifest, uint64, Stats, error) {
	if p.err != nil {
		return nil, 0, p.stats, p.err
	}
	if p.fut == nil {
		return p.next, p.rev, p.stats, nil
	}
	select {
	case ack := <-p.fut.Ok():
		return p.next, ack.Sequence, p.stats, nil
	case err := <-p.fut.Err():
		return nil, 0, p.stats, classify(p.fut.Msg().Subject, err)
	case <-ctx.Done():
		return nil, 0, p.stats, ctx.Err()
	}
}

// ErrConflict means that a write found another revision than the one it
// was based on: another writer got there first.
var ErrConflict = errors.New("window was written by someone else")

// ErrTooLarge means a window needs more chunks in one commit than an
// atomic batch may hold (Layout.MaxBatch).
var ErrTooLarge = errors.New("window too large for one atomic batch")

func classify(subject string, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return fmt.Errorf("%w: %s: %v", ErrConflict, subject, err)
	}
	return fmt.Errorf("write %s: %w", subject, err)
}

// Commit writes cur (nil for a new window, read at revision rev) plus ch
// as the window's next generation. Small windows are one manifest,
// published asynchronously; when the inline entries outgrow
// Layout.InlineBytes they become a run and the write is an atomic batch
// of the new chunks and the manifest, made synchronously. Either way the
// manifest is written with compare-and-swap against rev, and cur is not
// modified.
func (s *Store) Commit(ctx context.Context, key string, cur *Manifest, rev uint64, ch Change) *Pending {
	next := &Manifest{Format: Format}
	if cur != nil {
		*next = *cur
		next.Format = Format
	}
	next.Generation++
	next.LastSeq = ch.LastSeq
	next.DeadLetters += ch.DeadLetters
	next.Late += ch.Late
	for i := range ch.Entries {
		next.Totals.Add(ch.Entries[i].Counters)
	}
	var inline []Entry
	if cur != nil {
		inline = MergeSorted(nil, cur.Inline, ch.Entries)
	} else {
		inline = ch.Entries
	}
	now := s.now()
	refresh := false
	for _, r := range next.Runs {
		if s.layout.RefreshAge > 0 && now.Sub(r.Written) > s.layout.RefreshAge {
			refresh = true
		}
	}
	size := encodedSize(inline)
	small := size <= s.layout.InlineBytes
	if size > s.layout.InlineKeep && encodedSize(ch.Entries)*s.layout.InlineRatio < size {
		small = false
	}
	if small && !refresh {
		next.Inline = inline
		data, err := MarshalManifest(next)
		if err != nil {
			return &Pending{err: fmt.Errorf("encode window %s/%s: %w", s.bucket, key, err)}
		}
		p := &Pending{next: next, stats: Stats{Kind: WriteInline, ManifestBytes: len(data)}}
		msg := &nats.Msg{Subject: s.subject(key), Data: data}
		p.fut, p.err = s.js.PublishMsgAsync(msg, jetstream.WithExpectLastSequencePerSubject(rev))
		if p.err != nil {
			p.err = fmt.Errorf("write window %s/%s: %w", s.bucket, key, p.err)
		}
		return p
	}
	next.Inline = nil
	return s.commitRuns(ctx, key, cur, rev, next, inline, refresh)
}

func encodedSize(es []Entry) int {
	n := 10
	var prev *[AddrLen]byte
	var buf [MaxEntrySize]byte
	for i := range es {
		n += len(AppendEntry(buf[:0], prev, &es[i]))
		prev = &es[i].Addr
	}
	return n
}

// commitRuns writes the spilled inline entries as a run, merging runs as
// the layout asks, in one atomic batch with the manifest.
func (s *Store) commitRuns(ctx context.Context, key string, cur *Manifest, rev uint64, next *Manifest, spill []Entry, refresh bool) *Pending {
	p := &Pending{next: next}
	select {
	case s.batches <- struct{}{}:
	case <-ctx.Done():
		p.err = ctx.Err()
		return p
	}
	defer func() { <-s.batches }()

	used := map[uint32]bool{}
	for _, r := range next.Runs {
		for _, sl := range r.Slots {
			used[sl] = true
		}
		if r.HeadSlot != 0 {
			used[r.HeadSlot] = true
		}
	}
	w := &runWriter{s: s, key: key, gen: next.Generation, used: used, now: s.now()}
	var err error
	w.batch, err = jetstreamext.NewBatchPublisher(s.js, jetstreamext.BatchFlowControl{AckFirst: true, AckEvery: 50, AckTimeout: s.js.Options().DefaultTimeout})
	if err != nil {
		p.err = fmt.Errorf("atomic batch for %s/%s: %w", s.bucket, key, err)
		return p
	}
	defer func() {
		if !w.batch.IsClosed() {
			_ = w.batch.Discard()
		}
	}()

	spillBytes := uint64(encodedSize(spill))
	runs := next.Runs
	var deltaBytes uint64
	for _, r := range runs[min(1, len(runs)):] {
		deltaBytes += r.Bytes
	}
	var inputs []entrySource
	keep := runs
	switch {
	case len(runs) == 0:
		p.stats.Kind = WriteSpill
	case refresh || float64(deltaBytes+spillBytes) >= s.layout.Ratio*float64(runs[0].Bytes):
		p.stats.Kind = WriteFull
		for i := range runs {
			inputs = append(inputs, s.runSource(ctx, key, &runs[i], &p.stats))
		}
		keep = nil
	case len(runs)-1+1 > s.layout.MaxDeltas:
		// Merge the smallest deltas with the spill (size-tiered: a byte
		// takes part in about log_fanIn(base/spill) merges).
		p.stats.Kind = WriteMerge
		merge := smallest(runs[1:], s.layout.MergeFanIn)
		keep = make([]Run, 0, len(runs))
		for i := range runs {
			if i > 0 && slices.Contains(merge, i-1) {
				inputs = append(inputs, s.runSource(ctx, key, &runs[i], &p.stats))
			} else {
				keep = append(keep, runs[i])
			}
		}
	default:
		p.stats.Kind = WriteSpill
	}
	inputs = append(inputs, sliceSource(spill))
	run, err := w.writeRun(mergeSources(inputs))
	if err != nil {
		p.err = err
		return p
	}
	next.Runs = append(append([]Run(nil), keep...), run)
	// The base (runs[0], which the ratio compares against) is the largest
	// run; a merge may have made a delta larger than it.
	largest := 0
	for i, r := range next.Runs {
		if r.Bytes > next.Runs[largest].Bytes {
			largest = i
		}
	}
	next.Runs[0], next.Runs[largest] = next.Runs[largest], next.Runs[0]
	p.stats.Chunks, p.stats.ChunkBytes = w.chunks, w.bytes
	data, err := MarshalManifest(next)
	if err != nil {
		p.err = fmt.Errorf("encode window %s/%s: %w", s.bucket, key, err)
		return p
	}
	p.stats.ManifestBytes = len(data)
	if w.chunks+1 > s.layout.MaxBatch {
		p.err = fmt.Errorf("%w: %s/%s needs %d chunks, at most %d fit", ErrTooLarge, s.bucket, key, w.chunks, s.layout.MaxBatch-1)
		return p
	}
	ack, err := w.batch.CommitMsg(ctx, &nats.Msg{Subject: s.subject(key), Data: data}, jetstreamext.WithBatchExpectLastSequencePerSubject(rev))
	if err != nil {
		p.err = classify(s.subject(key), err)
		return p
	}
	p.rev = ack.Sequence
	return p
}

// smallest returns the indexes of the k runs with the fewest bytes.
func smallest(rs []Run, k int) []int {
	idx := make([]int, len(rs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(rs[a].Bytes, rs[b].Bytes) })
	return idx[:min(k, len(idx))]
}

// runWriter cuts a sorted entry stream into chunks and adds them to an
// atomic batch, keeping the run's head on the way.
type runWriter struct {
	s      *Store
	key    string
	gen    uint64
	used   map[uint32]bool
	next   uint32
	batch  jetstreamext.BatchPublisher
	now    time.Time
	chunks int
	bytes  int
}

func (w *runWriter) slot() uint32 {
	for {
		w.next++
		if !w.used[w.next] {
			w.used[w.next] = true
			return w.next
		}
	}
}

func (w *runWriter) add(data []byte) (uint32, error) {
	w.chunks++
	if w.chunks+1 > w.s.layout.MaxBatch {
		return 0, fmt.Errorf("%w: %s/%s needs more than %d chunks", ErrTooLarge, w.s.bucket, w.key, w.s.layout.MaxBatch-1)
	}
	sl := w.slot()
	w.bytes += len(data)
	if err := w.batch.AddMsg(&nats.Msg{Subject: w.s.subject(ChunkKey(w.key, sl)), Data: data}); err != nil {
		return 0, fmt.Errorf("write chunk %s/%s: %w", w.s.bucket, ChunkKey(w.key, sl), err)
	}
	return sl, nil
}

func (w *runWriter) writeRun(src entrySource) (Run, error) {
	run := Run{Generation: w.gen, Written: w.now}
	head := newHeadBuilder(w.s.layout.HeadSize)
	body := make([]byte, 0, w.s.layout.ChunkBytes)
	var n int
	var prev [AddrLen]byte
	var first [AddrLen]byte
	flush := func() error {
		if n == 0 {
			return nil
		}
		enc := AppendEntriesHeader(make([]byte, 0, len(body)+10), n, body)
		data, err := MarshalChunk(w.gen, enc, nil)
		if err != nil {
			return err
		}
		sl, err := w.add(data)
		if err != nil {
			return err
		}
		run.Slots = append(run.Slots, sl)
		run.Firsts = append(run.Firsts, first)
		run.Bytes += uint64(len(data))
		body, n = body[:0], 0
		return nil
	}
	for {
		e, ok, err := src.next()
		if err != nil {
			return Run{}, err
		}
		if !ok {
			break
		}
		if len(body)+MaxEntrySize > w.s.layout.ChunkBytes-64 {
			if err := flush(); err != nil {
				return Run{}, err
			}
		}
		var p *[AddrLen]byte
		if n == 0 {
			first = e.Addr
		} else {
			p = &prev
		}
		body = AppendEntry(body, p, &e)
		prev = e.Addr
		n++
		run.Entries++
		head.add(&e)
	}
	if err := flush(); err != nil {
		return Run{}, err
	}
	if run.Entries > uint64(w.s.layout.HeadSize) {
		entries, bounds := head.build()
		data, err := MarshalChunk(w.gen, EncodeEntries(entries), bounds[:])
		if err != nil {
			return Run{}, err
		}
		if run.HeadSlot, err = w.add(data); err != nil {
			return Run{}, err
		}
	}
	if run.Entries == 0 {
		return Run{}, fmt.Errorf("%w: empty run for %s/%s", ErrCorrupt, w.s.bucket, w.key)
	}
	return run, nil
}

// AppendEntriesHeader appends n and the already encoded entries body.
func AppendEntriesHeader(b []byte, n int, body []byte) []byte {
	b = binary.AppendUvarint(b, uint64(n))
	return append(b, body...)
}

// entrySource yields entries in address order.
type entrySource interface {
	next() (Entry, bool, error)
}

type sliceSrc struct {
	es []Entry
	i  int
}

func sliceSource(es []Entry) entrySource { return &sliceSrc{es: es} }

func (s *sliceSrc) next() (Entry, bool, error) {
	if s.i >= len(s.es) {
		return Entry{}, false, nil
	}
	s.i++
	return s.es[s.i-1], true, nil
}

// runSrc streams a stored run chunk by chunk.
type runSrc struct {
	ctx   context.Context
	s     *Store
	key   string
	run   *Run
	chunk int
	es    []Entry
	i     int
	stats *Stats
}

func (s *Store) runSource(ctx context.Context, key string, r *Run, st *Stats) entrySource {
	return &runSrc{ctx: ctx, s: s, key: key, run: r, stats: st}
}

func (r *runSrc) next() (Entry, bool, error) {
	for r.i >= len(r.es) {
		if r.chunk >= len(r.run.Slots) {
			return Entry{}, false, nil
		}
		c, err := r.s.ReadChunk(r.ctx, r.key, r.run.Slots[r.chunk], r.run.Generation)
		if err != nil {
			if errors.Is(err, ErrChanged) {
				return Entry{}, false, fmt.Errorf("%w: %w", ErrConflict, err)
			}
			return Entry{}, false, err
		}
		r.stats.ReadBytes += len(c.Entries) * 10
		r.es, r.i = c.Entries, 0
		r.chunk++
	}
	r.i++
	return r.es[r.i-1], true, nil
}

// mergeSources merges sorted sources, adding the counters of equal
// addresses. There are few sources (the runs of one window), so the
// smallest head is found by a scan.
type merged struct {
	srcs  []entrySource
	heads []Entry
	live  []bool
	init  bool
}

func mergeSources(srcs []entrySource) entrySource {
	if len(srcs) == 1 {
		return srcs[0]
	}
	return &merged{srcs: srcs, heads: make([]Entry, len(srcs)), live: make([]bool, len(srcs))}
}

func (m *merged) next() (Entry, bool, error) {
	if !m.init {
		m.init = true
		for i, s := range m.srcs {
			e, ok, err := s.next()
			if err != nil {
				return Entry{}, false, err
			}
			m.heads[i], m.live[i] = e, ok
		}
	}
	best := -1
	for i := range m.srcs {
		if m.live[i] && (best < 0 || CompareAddr(&m.heads[i].Addr, &m.heads[best].Addr) < 0) {
			best = i
		}
	}
	if best < 0 {
		return Entry{}, false, nil
	}
	out := m.heads[best]
	for i := range m.srcs {
		if !m.live[i] || (i != best && m.heads[i].Addr != out.Addr) {
			continue
		}
		if i != best {
			out.Add(m.heads[i].Counters)
		}
		e, ok, err := m.srcs[i].next()
		if err != nil {
			return Entry{}, false, err
		}
		m.heads[i], m.live[i] = e, ok
	}
	return out, true, nil
}

// Entries streams the entries of one window in address order.
type Entries struct {
	src entrySource
}

// Next returns the next entry; false once every entry was returned. An
// error wrapping ErrConflict means the window was rewritten while it was
// read: load its manifest again and start over.
func (it *Entries) Next() (Entry, bool, error) { return it.src.next() }

// Entries returns every entry of window key as of manifest m, merged
// across its runs and its inline entries, reading one chunk of each run at
// a time (from a replica, checked against the run's generation): memory
// stays a few chunks whatever the size of the window.
func (s *Store) Entries(ctx context.Context, key string, m *Manifest) *Entries {
	var st Stats
	srcs := []entrySource{sliceSource(m.Inline)}
	for i := range m.Runs {
		srcs = append(srcs, s.runSource(ctx, key, &m.Runs[i], &st))
	}
	return &Entries{src: mergeSources(srcs)}
}

// ReadAll returns every entry of a window (Entries, collected). It holds
// the whole window in memory: for tests, tools and small windows.
func (s *Store) ReadAll(ctx context.Context, key string, m *Manifest) ([]Entry, error) {
	it := s.Entries(ctx, key, m)
	var out []Entry
	for {
		e, ok, err := it.Next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return out, nil
		}
		out = append(out, e)
	}
}

package export

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/logtally/logtally/internal/dims"
)

// Parquet metadata keys of an hour file.
const (
	// metaRevisions is a JSON object: window key ("<start>.<p>") →
	// revision, of every window the file was written from.
	metaRevisions = "logtally.revisions"
	metaBucket    = "logtally.bucket"
)

// hourRef is one hour of one bucket.
type hourRef struct {
	b    int
	hour int64 // unix seconds
}

// fileRef is one Parquet file: an hour of a bucket and one table.
type fileRef struct {
	hourRef
	table string
}

// parquetSink writes, per closed hour and bucket, one file per table:
// <dir>/<table>/<resolution>/<YYYY-MM-DDTHH>.parquet. A file is written
// once the hour is closed (its end plus -export.parquet.close-after) and
// rewritten, atomically (a temporary file renamed over it), whenever a
// window of the hour changes later. Each file records the revision of
// every window it holds, so a restart writes only what changed.
type parquetSink struct {
	s   *Service
	dir string
	q   *queue

	mu      sync.Mutex
	written map[fileRef]map[string]uint64
	waiting map[hourRef]time.Time // hours with changes, first change at
	err     error
}

func newParquet(s *Service, dir string) *parquetSink {
	return &parquetSink{s: s, dir: dir, q: newQueue(), written: map[fileRef]map[string]uint64{}, waiting: map[hourRef]time.Time{}}
}

func (p *parquetSink) name() string  { return "parquet" }
func (p *parquetSink) queue() *queue { return p.q }
func (p *parquetSink) close()        {}

// forget: the files' revisions are pruned by hour (prune).
func (p *parquetSink) forget(ref) {}

// prune drops the revisions of files whose windows have all expired.
func (p *parquetSink) prune(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for f := range p.written {
		if b := p.s.buckets[f.b]; time.Unix(f.hour, 0).Add(time.Hour + b.res.Retention + time.Hour).Before(now) {
			delete(p.written, f)
		}
	}
}

func (p *parquetSink) ready() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// oldest is the oldest change of a closed hour not yet written, counted
// from when the hour closed.
func (p *parquetSink) oldest() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var at time.Time
	now := time.Now()
	for h, first := range p.waiting {
		closes := p.closes(h)
		if closes.After(now) {
			continue
		}
		t := first
		if closes.After(t) {
			t = closes
		}
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	return at, !at.IsZero()
}

func (p *parquetSink) closes(h hourRef) time.Time {
	return time.Unix(h.hour, 0).Add(time.Hour + p.s.cfg.CloseAfter)
}

// tables of a bucket's files.
func (p *parquetSink) tables(b *bucket) []dims.Dim {
	if !b.dims() {
		return []dims.Dim{0}
	}
	return dims.All
}

func (p *parquetSink) path(b *bucket, d dims.Dim, hour int64) string {
	return filepath.Join(p.dir, table(d), b.res.Name, time.Unix(hour, 0).UTC().Format("2006-01-02T15")+".parquet")
}

// load reads the revisions recorded in the files already written.
func (p *parquetSink) load() error {
	for _, b := range p.s.buckets {
		for _, d := range p.tables(b) {
			dir := filepath.Join(p.dir, table(d), b.res.Name)
			ents, err := os.ReadDir(dir)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("parquet: %w", err)
			}
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), ".tmp") {
					// Left by a crash while writing.
					_ = os.Remove(filepath.Join(dir, e.Name()))
					continue
				}
				name, ok := strings.CutSuffix(e.Name(), ".parquet")
				if !ok {
					continue
				}
				t, err := time.Parse("2006-01-02T15", name)
				if err != nil || t.Add(time.Hour+b.res.Retention+time.Hour).Before(time.Now()) {
					// Not ours, or its windows are gone from NATS: never
					// written again.
					continue
				}
				revs, err := readRevisions(filepath.Join(dir, e.Name()))
				if err != nil {
					// Rewritten when its hour is next seen.
					p.s.log.Warn("parquet: unreadable file is written again", "file", filepath.Join(dir, e.Name()), "error", err)
					continue
				}
				p.written[fileRef{hourRef{b.idx, t.Unix()}, table(d)}] = revs
			}
		}
	}
	return nil
}

func readRevisions(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(f, st.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, err
	}
	v, ok := pf.Lookup(metaRevisions)
	if !ok {
		return nil, fmt.Errorf("no %s metadata", metaRevisions)
	}
	revs := map[string]uint64{}
	if err := json.Unmarshal([]byte(v), &revs); err != nil {
		return nil, fmt.Errorf("%s metadata: %w", metaRevisions, err)
	}
	return revs, nil
}

func hourOf(start int64) int64 { return start - start%3600 }

func (p *parquetSink) run(ctx context.Context) {
	if err := p.load(); err != nil {
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		p.s.log.Error("parquet export: cannot read its directory", "dir", p.dir, "error", err)
	}
	// An hour is judged only once every window of it is known.
	select {
	case <-ctx.Done():
		return
	case <-p.s.follow.ready:
	}
	backoff := time.Second
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastPrune := time.Now()
	for {
		if time.Since(lastPrune) > 10*time.Minute {
			p.prune(time.Now())
			lastPrune = time.Now()
		}
		for _, it := range p.q.take() {
			h := hourRef{it.b, hourOf(it.start)}
			p.mu.Lock()
			if first, ok := p.waiting[h]; !ok || it.at.Before(first) {
				p.waiting[h] = it.at
			}
			p.mu.Unlock()
		}
		failed := false
		for _, h := range p.due() {
			err := p.writeHour(ctx, h)
			if ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			p.err = err
			if err == nil {
				delete(p.waiting, h)
			}
			p.mu.Unlock()
			if err != nil {
				failed = true
				p.s.m.failures.WithLabelValues(p.name()).Inc()
				p.s.log.Warn("parquet export failed; retrying", "bucket", p.s.buckets[h.b].res.Bucket(), "hour", time.Unix(h.hour, 0).UTC(), "error", err, "backoff", backoff)
				break
			}
		}
		wait := time.Duration(0)
		if failed {
			wait, backoff = backoff, min(backoff*2, 30*time.Second)
		} else {
			backoff = time.Second
		}
		if wait > 0 && !sleep(ctx, wait) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-p.q.signal:
		case <-tick.C:
		}
	}
}

// due returns the closed hours with changes, oldest first; hours whose
// files already hold every window's newest revision are dropped.
func (p *parquetSink) due() []hourRef {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	var out []hourRef
	for h := range p.waiting {
		if p.closes(h).After(now) {
			continue
		}
		if !p.stale(h) {
			delete(p.waiting, h)
			continue
		}
		out = append(out, h)
	}
	p.s.m.pending.WithLabelValues(p.name()).Set(float64(len(out)))
	sortHours(out)
	return out
}

func sortHours(hs []hourRef) {
	slices.SortFunc(hs, func(x, y hourRef) int { return cmp.Or(cmp.Compare(x.hour, y.hour), cmp.Compare(x.b, y.b)) })
}

// stale reports whether a file of h is missing or older than a window.
func (p *parquetSink) stale(h hourRef) bool {
	b := p.s.buckets[h.b]
	refs := p.s.follow.within(h.b, h.hour, h.hour+3600)
	for _, d := range p.tables(b) {
		revs, ok := p.written[fileRef{h, table(d)}]
		if !ok {
			return len(refs) > 0
		}
		for _, r := range refs {
			if revs[r.key()] != p.s.follow.revision(r) {
				return true
			}
		}
	}
	return false
}

// expired counts the windows a file of h holds that NATS no longer has.
func (p *parquetSink) expired(h hourRef) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, d := range p.tables(p.s.buckets[h.b]) {
		for key := range p.written[fileRef{h, table(d)}] {
			if r, ok := parseRef(h.b, key); ok && p.s.follow.revision(r) == 0 {
				n++
			}
		}
	}
	return n
}

// writeHour writes every file of hour h from the windows' newest
// revisions.
func (p *parquetSink) writeHour(ctx context.Context, h hourRef) error {
	for attempt := 0; ; attempt++ {
		err := p.writeHourOnce(ctx, h)
		if errors.Is(err, errStale) && attempt < 5 {
			continue
		}
		return err
	}
}

func (p *parquetSink) writeHourOnce(ctx context.Context, h hourRef) error {
	b := p.s.buckets[h.b]
	ds := p.tables(b)
	if gone := p.expired(h); gone > 0 {
		// Rewriting would drop the rows of the windows NATS no longer
		// has: the file keeps its older counts (PostgreSQL has the new).
		p.s.m.skipped.Inc()
		p.s.log.Warn("parquet: hour not rewritten: some of its windows expired from NATS, the file keeps its older counts", "bucket", b.res.Bucket(), "hour", time.Unix(h.hour, 0).UTC(), "expired_windows", gone)
		return nil
	}
	files := map[dims.Dim]*pqFile{}
	defer func() {
		for _, f := range files {
			f.abort()
		}
	}()
	for _, d := range ds {
		f, err := newPQFile(p.path(b, d, h.hour), column(d))
		if err != nil {
			return fmt.Errorf("parquet: %w", err)
		}
		files[d] = f
	}
	revs := map[string]uint64{}
	type otherKey struct {
		start int64
		d     dims.Dim
	}
	others := map[otherKey]*[5]int64{}
	var otherOrder []otherKey
	for _, r := range p.s.follow.within(h.b, h.hour, h.hour+3600) {
		w, err := p.s.load(ctx, r)
		if err != nil {
			return err
		}
		if w == nil {
			continue
		}
		revs[r.key()] = w.rev
		ri := p.s.rows(ctx, w)
		for {
			rw, ok, err := ri.next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if rw.other {
				// Every partition has its own remainder: one row per window.
				k := otherKey{r.start, rw.dim}
				sum, ok := others[k]
				if !ok {
					sum = new([5]int64)
					others[k] = sum
					otherOrder = append(otherOrder, k)
				}
				for i := range sum {
					sum[i] = satAdd(sum[i], rw.c[i])
				}
				continue
			}
			key := rw.value
			if rw.dim == 0 {
				key = rw.ip.String()
			}
			if err := files[rw.dim].write(b.res.Name, w.start(), key, &rw.c); err != nil {
				return fmt.Errorf("parquet: %w", err)
			}
		}
	}
	for _, k := range otherOrder {
		if err := files[k.d].write(b.res.Name, time.Unix(k.start, 0).UTC(), OtherValue, others[k]); err != nil {
			return fmt.Errorf("parquet: %w", err)
		}
	}
	meta, err := json.Marshal(revs)
	if err != nil {
		return err
	}
	kind := "new"
	for _, d := range ds {
		if _, ok := p.written[fileRef{h, table(d)}]; ok {
			kind = "rewrite"
		}
	}
	for _, d := range ds {
		f := files[d]
		if err := f.commit(map[string]string{metaRevisions: string(meta), metaBucket: b.res.Bucket()}); err != nil {
			return fmt.Errorf("parquet: %w", err)
		}
		delete(files, d)
		p.mu.Lock()
		p.written[fileRef{h, table(d)}] = revs
		p.mu.Unlock()
		p.s.m.rows.WithLabelValues(p.name(), table(d)).Add(float64(f.rows))
		p.s.m.files.WithLabelValues(kind).Inc()
	}
	p.s.m.windows.WithLabelValues(p.name(), b.dataset()).Add(float64(len(revs)))
	return nil
}

func satAdd(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return 1<<63 - 1
}

// pqFile is one Parquet file being written to a temporary name.
type pqFile struct {
	path, tmp string
	f         *os.File
	w         *parquet.Writer
	v         reflect.Value // the row, reused
	rows      int
}

var timeType = reflect.TypeOf(time.Time{})

// rowType is the row of a table whose key column is key: the same
// columns, in the same order, as the PostgreSQL table.
func rowType(key string) reflect.Type {
	i64 := reflect.TypeOf(int64(0))
	fields := []reflect.StructField{
		{Name: "Resolution", Type: reflect.TypeOf(""), Tag: `parquet:"resolution,dict"`},
		{Name: "WindowStart", Type: timeType, Tag: `parquet:"window_start,timestamp(microsecond)"`},
		{Name: "Key", Type: reflect.TypeOf(""), Tag: reflect.StructTag(`parquet:"` + key + `"`)},
	}
	for i, c := range classColumns {
		fields = append(fields, reflect.StructField{Name: fmt.Sprintf("C%d", i), Type: i64, Tag: reflect.StructTag(`parquet:"` + c + `"`)})
	}
	return reflect.StructOf(fields)
}

func newPQFile(path, key string) (*pqFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, err
	}
	t := rowType(key)
	v := reflect.New(t)
	w := parquet.NewWriter(f, parquet.SchemaOf(v.Interface()), parquet.Compression(&zstd.Codec{}))
	return &pqFile{path: path, tmp: f.Name(), f: f, w: w, v: v}, nil
}

func (p *pqFile) write(res string, start time.Time, key string, c *[5]int64) error {
	e := p.v.Elem()
	e.Field(0).SetString(res)
	e.Field(1).Set(reflect.ValueOf(start))
	e.Field(2).SetString(key)
	for i := range c {
		e.Field(3 + i).SetInt(c[i])
	}
	p.rows++
	return p.w.Write(p.v.Interface())
}

// commit finishes the file and renames it over the final name.
func (p *pqFile) commit(meta map[string]string) error {
	for k, v := range meta {
		p.w.SetKeyValueMetadata(k, v)
	}
	if err := p.w.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p.tmp, err)
	}
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p.tmp, err)
	}
	if err := p.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", p.tmp, err)
	}
	if err := os.Rename(p.tmp, p.path); err != nil {
		return err
	}
	p.f = nil
	if d, err := os.Open(filepath.Dir(p.path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// abort removes an unfinished file.
func (p *pqFile) abort() {
	if p.f != nil {
		_ = p.f.Close()
		_ = os.Remove(p.tmp)
		p.f = nil
	}
}

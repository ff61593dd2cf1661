package export

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/dims"
)

// OtherValue is the value of the row that sums, per field and window, the
// values a closed field window did not keep (its top-K cut).
const OtherValue = "(other)"

// window is one window of one partition as of one revision.
type window struct {
	b   *bucket
	ref ref
	rev uint64
	m   *counts.Manifest
}

func (w *window) start() time.Time { return time.Unix(w.ref.start, 0).UTC() }

// load reads the newest manifest of r; nil when the window is gone.
func (s *Service) load(ctx context.Context, r ref) (*window, error) {
	b := s.buckets[r.b]
	m, rev, err := b.store.Load(ctx, r.key())
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, nil
	}
	return &window{b: b, ref: r, rev: rev, m: m}, nil
}

// row is one exported row: an IP (dim 0) or a field value, with counters.
type row struct {
	dim   dims.Dim
	ip    netip.Addr
	value string
	other bool
	c     [5]int64
}

// classColumns are the counter columns of every table, in row.c's order.
var classColumns = [5]string{"requests", "status_4xx", "status_5xx", "auth_failures", "bytes"}

func (s *Service) clamp(v uint64) int64 {
	if v > math.MaxInt64 {
		s.m.clamped.Inc()
		return math.MaxInt64
	}
	return int64(v)
}

// rowIter streams the rows of one window in key order.
type rowIter struct {
	s   *Service
	ctx context.Context
	w   *window
	it  *counts.Entries
	r   row
}

func (s *Service) rows(ctx context.Context, w *window) *rowIter {
	return &rowIter{s: s, ctx: ctx, w: w, it: w.b.store.Entries(ctx, w.ref.key(), w.m)}
}

// next returns the next row (valid until the following call); false at
// the end. A window rewritten while it is read gives errStale.
func (ri *rowIter) next() (*row, bool, error) {
	s, w := ri.s, ri.w
	for {
		e, ok, err := ri.it.Next()
		if err != nil {
			if errors.Is(err, counts.ErrConflict) {
				return nil, false, fmt.Errorf("%w: %s/%s: %w", errStale, w.b.res.Bucket(), w.ref.key(), err)
			}
			return nil, false, fmt.Errorf("read window %s/%s: %w", w.b.res.Bucket(), w.ref.key(), err)
		}
		if !ok {
			return nil, false, nil
		}
		ri.r = row{c: [5]int64{s.clamp(e.Requests), s.clamp(e.Status4xx), s.clamp(e.Status5xx), s.clamp(e.AuthFailures), s.clamp(e.Bytes)}}
		if !w.b.dims() {
			ri.r.ip = counts.Unpack(e.Addr)
			return &ri.r, true, nil
		}
		d, _, _ := dims.Decode(e.Addr)
		if !d.Valid() {
			// Not a key the parser writes: nothing to name it by.
			s.log.Warn("skip entry of an unknown field", "bucket", w.b.res.Bucket(), "key", w.ref.key(), "field", byte(d))
			continue
		}
		ri.r.dim = d
		if dims.IsOther(e.Addr) {
			ri.r.other, ri.r.value = true, OtherValue
		} else {
			var known bool
			if ri.r.value, known = s.names.Text(ri.ctx, e.Addr); !known {
				s.m.unknown.Inc()
			}
		}
		return &ri.r, true, nil
	}
}

// keyOfValue is the key a field value was counted under: the inverse of
// the text rows give, including "#<hex>" for a hashed value without a
// name.
func keyOfValue(d dims.Dim, v string) [counts.AddrLen]byte {
	if len(v) > 0 && v[0] == '#' {
		if k, ok := dims.ParseNameKey(v[1:]); ok && k[0] == byte(d) {
			return k
		}
	}
	k, _ := dims.Key(d, []byte(v))
	return k
}

// table is the name of the table (and Parquet file set) of a field, and
// column the name of its key column.
func table(d dims.Dim) string {
	if d == 0 {
		return "logtally_ip_counts"
	}
	return "logtally_" + d.String() + "_counts"
}

func column(d dims.Dim) string {
	if d == 0 {
		return "ip"
	}
	return d.String()
}

package windows

import (
	"context"
	"runtime"
	"time"

	"github.com/logtally/logtally/internal/counts"
)

// TotalsResult is the answer of Totals.
type TotalsResult struct {
	Range Range
	// Counters are the sums of every class over all IPs.
	Counters    counts.Counters
	DistinctIPs uint64
	DeadLetters uint64
	Late        uint64
	// LostBatches is Reader.LostBatches at the time of the answer: not of
	// the range, since a lost batch's times are unknown.
	LostBatches uint64
}

// Totals returns the class totals, dead letters and late records of r
// (from the manifests alone) and the number of distinct IPs. Distinct IPs
// need no chunk when a partition's range is one list (one run, or inline
// entries only); otherwise the lists are merged by address, streaming,
// a few partitions at a time.
func (r *Reader) Totals(ctx context.Context, rg Range) (TotalsResult, error) {
	if err := r.CheckRange(rg); err != nil {
		return TotalsResult{}, err
	}
	segs := decompose(rg.From.Unix(), rg.To.Unix(), r.sizes)
	var res TotalsResult
	err := r.run(ctx, func(q *query) error {
		res = TotalsResult{Range: rg, LostBatches: r.LostBatches()}
		ws, err := q.windows(segs, -1)
		if err != nil {
			return err
		}
		for _, w := range ws {
			res.Counters.Add(w.m.Totals)
			res.DeadLetters += w.m.DeadLetters
			res.Late += w.m.Late
		}
		parts := q.byPartition(ws)
		distinct := make([]uint64, len(parts))
		// Merges are CPU-bound and hold a chunk per list: one per core.
		err = eachN(runtime.GOMAXPROCS(0), len(parts), func(p int) error {
			n, err := q.distinct(parts[p])
			distinct[p] = n
			return err
		})
		if err != nil {
			return err
		}
		for _, n := range distinct {
			res.DistinctIPs += n
		}
		return nil
	})
	return res, err
}

// distinct counts the distinct IPs of one partition's windows.
func (q *query) distinct(ws []*win) (uint64, error) {
	srcs := sources(ws)
	switch len(srcs) {
	case 0:
		return 0, nil
	case 1:
		return srcs[0].entries(), nil
	}
	m, err := q.newMerger(srcs, nil, nil, true)
	if err != nil {
		return 0, err
	}
	var n uint64
	var e counts.Entry
	for {
		ok, err := m.next(&e)
		if err != nil {
			return 0, err
		}
		if !ok {
			return n, nil
		}
		if n&4095 == 0 {
			if err := q.ctx.Err(); err != nil {
				return 0, Unavailable("query timed out", err)
			}
		}
		n++
	}
}

// SeriesPoint is the counters of one step starting at Start.
type SeriesPoint struct {
	Start    time.Time
	Counters counts.Counters
}

// TotalSeriesResult is the answer of TotalSeries: the counters of every IP
// together per step.
type TotalSeriesResult struct {
	Range    Range
	Step     time.Duration
	Counters counts.Counters
	Series   []SeriesPoint
}

// TotalSeries returns the counters of all IPs in r, in total and per step,
// from the manifests' totals. Every point is the exact sum, over every
// partition, of the coarsest windows that tile [start, start+step).
func (r *Reader) TotalSeries(ctx context.Context, rg Range, step time.Duration) (TotalSeriesResult, error) {
	if err := r.CheckRange(rg); err != nil {
		return TotalSeriesResult{}, err
	}
	points, err := checkStep(rg, step, r.finest, r.cfg.MaxPoints)
	if err != nil {
		return TotalSeriesResult{}, err
	}
	var res TotalSeriesResult
	err = r.run(ctx, func(q *query) error {
		keys, owner, starts := r.pointKeys(rg, step, points, -1)
		res = TotalSeriesResult{Range: rg, Step: step, Series: make([]SeriesPoint, points)}
		for i := range res.Series {
			res.Series[i].Start = starts[i]
		}
		ws, err := q.load(keys)
		if err != nil {
			return err
		}
		for k, w := range ws {
			if w != nil {
				res.Series[owner[k]].Counters.Add(w.m.Totals)
				res.Counters.Add(w.m.Totals)
			}
		}
		return nil
	})
	return res, err
}

// pointKeys lists the window keys of every point of a series (of partition
// part, or all with part < 0), the point of each key and each point's start.
func (r *Reader) pointKeys(rg Range, step time.Duration, points, part int) ([]revKey, []int, []time.Time) {
	from, to, st := rg.From.Unix(), rg.To.Unix(), int64(step/time.Second)
	var keys []revKey
	var owner []int
	starts := make([]time.Time, points)
	for i := range points {
		pf := from + int64(i)*st
		pt := min(pf+st, to)
		starts[i] = time.Unix(pf, 0).UTC()
		for _, seg := range decompose(pf, pt, r.sizes) {
			n := len(keys)
			keys = r.indexes[seg.res].collect(seg, part, keys)
			for range len(keys) - n {
				owner = append(owner, i)
			}
		}
	}
	return keys, owner, starts
}

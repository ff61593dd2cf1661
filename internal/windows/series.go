package windows

import (
	"context"
	"net/netip"
	"time"

	"github.com/logtally/logtally/internal/counts"
)

// SeriesResult is the answer of Series: one point per step from
// Range.From; the last point covers [start, Range.To) when the range is
// not a whole number of steps.
type SeriesResult struct {
	IP       netip.Addr
	Range    Range
	Step     time.Duration
	Counters counts.Counters
	Series   []SeriesPoint
}

// Series returns one IP's counters in r, in total and per step. Every
// point is the exact sum of the coarsest windows that tile
// [start, start+step), each read with one point lookup per run (the chunk
// its first addresses name) in the IP's partition only.
func (r *Reader) Series(ctx context.Context, ip netip.Addr, rg Range, step time.Duration) (SeriesResult, error) {
	if !ip.IsValid() {
		return SeriesResult{}, Invalidf("ip is missing or not valid")
	}
	ip = ip.WithZone("").Unmap()
	if err := r.CheckRange(rg); err != nil {
		return SeriesResult{}, err
	}
	points, err := checkStep(rg, step, r.finest, r.cfg.MaxPoints)
	if err != nil {
		return SeriesResult{}, err
	}
	addr := counts.Pack(ip)
	var res SeriesResult
	err = r.run(ctx, func(q *query) error {
		keys, owner, starts := r.pointKeys(rg, step, points, counts.Partition(addr, r.partitions))
		res = SeriesResult{IP: ip, Range: rg, Step: step, Series: make([]SeriesPoint, points)}
		for i := range res.Series {
			res.Series[i].Start = starts[i]
		}
		ws, err := q.load(keys)
		if err != nil {
			return err
		}
		var srcs []source
		var point []int
		for k, w := range ws {
			if w == nil {
				continue
			}
			for _, s := range sources([]*win{w}) {
				srcs = append(srcs, s)
				point = append(point, owner[k])
			}
		}
		got := make([]counts.Counters, len(srcs))
		err = q.each(len(srcs), func(i int) error {
			c, err := q.lookup(srcs[i], q.cachedHead(srcs[i]), &addr)
			got[i] = c
			return err
		})
		if err != nil {
			return err
		}
		for i, c := range got {
			res.Series[point[i]].Counters.Add(c)
			res.Counters.Add(c)
		}
		return nil
	})
	return res, err
}

package aggregator

import "github.com/logtally/logtally/internal/counts"

// fold returns the pending changes of a window with one entry per address,
// its counters summed, sorted by address, in a new slice (pending is
// reused). Pending changes arrive as sorted runs — every record batch lists
// its groups by minute, then address — so a bottom-up merge of the runs
// (log₂ runs passes) beats sorting the whole slice; the merge also folds
// equal addresses.
func fold(es []counts.Entry) []counts.Entry {
	if len(es) == 0 {
		return nil
	}
	// Boundaries of the ascending runs; equal neighbours fold right away.
	var bounds []int
	src := make([]counts.Entry, 0, len(es))
	for i := range es {
		if len(src) > 0 {
			last := &src[len(src)-1]
			switch c := counts.CompareAddr(&last.Addr, &es[i].Addr); {
			case c == 0:
				last.Add(es[i].Counters)
				continue
			case c > 0:
				bounds = append(bounds, len(src))
			}
		}
		src = append(src, es[i])
	}
	bounds = append(bounds, len(src))
	if len(bounds) == 1 {
		return src
	}
	dst := make([]counts.Entry, 0, len(src))
	for len(bounds) > 1 {
		dst = dst[:0]
		var next []int
		start := 0
		for i := 0; i < len(bounds); i += 2 {
			if i+1 == len(bounds) {
				dst = append(dst, src[start:bounds[i]]...)
				next = append(next, len(dst))
				break
			}
			dst = counts.MergeSorted(dst, src[start:bounds[i]], src[bounds[i]:bounds[i+1]])
			next = append(next, len(dst))
			start = bounds[i+1]
		}
		src, dst, bounds = dst, src, next
	}
	return src
}

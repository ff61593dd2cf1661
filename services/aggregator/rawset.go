package aggregator

import (
	"slices"
)

// rawSet is the set of raw sequences whose record batch a partition has
// applied: every sequence at or below low, plus the sorted ones in above.
// The parser publishes exactly one batch per (raw batch, partition), so
// the set is nearly contiguous and above holds only what parsers reordered:
// it stays small however long it lives. This is what makes deduplication
// independent of JetStream's duplicate window (docs/design.md).
type rawSet struct {
	low   uint64
	above []uint64 // sorted, all > low
}

// has reports whether raw sequence r was applied (or declared lost).
func (s *rawSet) has(r uint64) bool {
	if r <= s.low {
		return true
	}
	_, ok := slices.BinarySearch(s.above, r)
	return ok
}

// add records r and absorbs the contiguous prefix into low.
func (s *rawSet) add(r uint64) {
	if r <= s.low {
		return
	}
	i, ok := slices.BinarySearch(s.above, r)
	if ok {
		return
	}
	s.above = slices.Insert(s.above, i, r)
	s.compact()
}

func (s *rawSet) compact() {
	n := 0
	for n < len(s.above) && s.above[n] == s.low+1 {
		s.low++
		n++
	}
	if n > 0 {
		s.above = append(s.above[:0], s.above[n:]...)
	}
}

// advance moves low to at least to and returns how many sequences in
// (max(low, floor), to] had not been applied: those batches will never
// arrive. Sequences at or below floor are not counted (see
// Checkpoint.legacy_raw_max). first is the lowest missing one.
func (s *rawSet) advance(to, floor uint64) (missing, first uint64) {
	if to <= s.low {
		return 0, 0
	}
	from := max(s.low, floor)
	if to > from {
		missing = to - from
		next := from + 1
		for _, a := range s.above {
			if a > to {
				break
			}
			if a > from {
				missing--
				if a == next {
					next++
				}
			}
		}
		if missing > 0 {
			first = next
		}
	}
	i, _ := slices.BinarySearch(s.above, to+1)
	s.low = to
	s.above = append(s.above[:0], s.above[i:]...)
	s.compact()
	return missing, first
}

// ranges encodes above as [first, last] pairs for the checkpoint.
func (s *rawSet) ranges() []uint64 {
	var out []uint64
	for i := 0; i < len(s.above); {
		j := i
		for j+1 < len(s.above) && s.above[j+1] == s.above[j]+1 {
			j++
		}
		out = append(out, s.above[i], s.above[j])
		i = j + 1
	}
	return out
}

// setRanges restores the set from a checkpoint; it reports false when the
// ranges are malformed.
func (s *rawSet) setRanges(low uint64, rs []uint64) bool {
	s.low, s.above = low, nil
	if len(rs)%2 != 0 {
		return false
	}
	prev := low
	for i := 0; i < len(rs); i += 2 {
		a, b := rs[i], rs[i+1]
		if a <= prev || b < a || b-a > 1<<20 {
			return false
		}
		for r := a; r <= b; r++ {
			s.above = append(s.above, r)
		}
		prev = b
	}
	s.compact()
	return true
}

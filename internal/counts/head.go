package counts

import "container/heap"

// A run's head holds, for every class, the run's top entries by that
// class, and a bound: no entry outside the head's top ones for a class
// has more of it. A top-N query over many runs (the threshold algorithm)
// reads heads and looks up single addresses, instead of whole runs, as
// long as the answer is decided within the heads.

type headItem struct {
	v uint64
	e Entry
}

// classHeap is a min-heap: the root is the worst entry kept.
type classHeap []headItem

func (h classHeap) Len() int { return len(h) }
func (h classHeap) Less(i, j int) bool {
	if h[i].v != h[j].v {
		return h[i].v < h[j].v
	}
	return CompareAddr(&h[i].e.Addr, &h[j].e.Addr) > 0
}
func (h classHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *classHeap) Push(x any)   { *h = append(*h, x.(headItem)) }
func (h *classHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type headBuilder struct {
	size  int
	heaps [NumClasses]classHeap
}

func newHeadBuilder(size int) *headBuilder { return &headBuilder{size: size} }

// add offers one entry (entries arrive in address order, each once).
func (b *headBuilder) add(e *Entry) {
	for c := Class(0); c < NumClasses; c++ {
		v := e.Get(c)
		if v == 0 {
			continue
		}
		h := &b.heaps[c]
		it := headItem{v: v, e: *e}
		if h.Len() < b.size {
			heap.Push(h, it)
			continue
		}
		// Equal values keep the lower address, which arrived first.
		if v > (*h)[0].v {
			(*h)[0] = it
			heap.Fix(h, 0)
		}
	}
}

// build returns the head's entries, sorted by address, and the bounds.
func (b *headBuilder) build() ([]Entry, [NumClasses]uint64) {
	var bounds [NumClasses]uint64
	seen := map[[AddrLen]byte]bool{}
	var out []Entry
	for c := Class(0); c < NumClasses; c++ {
		h := b.heaps[c]
		if h.Len() == b.size {
			bounds[c] = h[0].v
		}
		for _, it := range h {
			if !seen[it.e.Addr] {
				seen[it.e.Addr] = true
				out = append(out, it.e)
			}
		}
	}
	SortEntries(out)
	return out, bounds
}

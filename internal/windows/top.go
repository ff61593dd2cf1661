package windows

import (
	"container/heap"
	"context"
	"math"
	"net/netip"

	"github.com/logtally/logtally/internal/counts"
)

// TopQuery says what Top ranks.
type TopQuery struct {
	N     int
	Class counts.Class
	// Prefix, when valid, keeps only the IPs inside it.
	Prefix netip.Prefix
	// Keep, when not nil, keeps only the IPs for which it returns true
	// (such as those of one ASN). The answer is then a scan of every IP
	// of the range (inside Prefix) by address, not the threshold
	// algorithm: Keep is called at most once per IP, in run order, from
	// one goroutine.
	Keep func(netip.Addr) bool
}

// IPCount is one IP of a top answer: Count is its counter of the ranked
// class, Counters all of them.
type IPCount struct {
	IP       netip.Addr
	Count    uint64
	Counters counts.Counters
}

// TopResult is the answer of Top: Items sorted by Count descending, then
// IP ascending (netip.Addr.Compare). IPs whose count is zero are left out.
type TopResult struct {
	Range Range
	Class counts.Class
	Items []IPCount
}

// Top returns the N IPs with the highest counter of the class in r,
// exactly. Partitions hold disjoint IPs, so each is ranked on its own;
// within one, every run (and the inline entries) of every window of the
// range is a list, and an IP's count is the sum over the lists. The answer
// comes from the threshold algorithm over the lists' heads (see
// thresholdTop); a narrow prefix is read by address instead (scanTop).
func (r *Reader) Top(ctx context.Context, rg Range, tq TopQuery) (TopResult, error) {
	if tq.N < 1 || tq.N > r.cfg.MaxN {
		return TopResult{}, Invalidf("n must be between 1 and %d, got %d", r.cfg.MaxN, tq.N)
	}
	if tq.Class < 0 || tq.Class >= counts.NumClasses {
		return TopResult{}, Invalidf("class %s is not one of requests, 4xx, 5xx, auth_failure, bytes", tq.Class)
	}
	if err := r.CheckRange(rg); err != nil {
		return TopResult{}, err
	}
	if tq.Keep != nil {
		return r.topKept(ctx, rg, tq)
	}
	var pr *prefixRange
	if tq.Prefix.IsValid() {
		pr = newPrefixRange(tq.Prefix)
	}
	segs := decompose(rg.From.Unix(), rg.To.Unix(), r.sizes)
	var best []ranked
	err := r.run(ctx, func(q *query) error {
		ws, err := q.windows(segs, -1)
		if err != nil {
			return err
		}
		parts := q.byPartition(ws)
		t := newTopK(tq.N)
		if pr != nil && q.narrow(parts, pr) {
			err = q.scanTop(parts, t, tq.Class, pr)
		} else {
			err = q.thresholdTop(parts, t, tq.Class, pr)
		}
		if err != nil {
			return err
		}
		best = t.sorted()
		return nil
	})
	if err != nil {
		return TopResult{}, err
	}
	res := TopResult{Range: rg, Class: tq.Class, Items: make([]IPCount, len(best))}
	for i, e := range best {
		res.Items[i] = IPCount{IP: counts.Unpack(e.addr), Count: e.count, Counters: e.c}
	}
	return res, nil
}

// taList is one list of the threshold algorithm: sorted access reads es in
// the order of order (by the ranked class, descending), random access is a
// point lookup in the source.
type taList struct {
	src   source
	head  *chunk         // the run's head, nil for inline entries and runs read whole
	whole []counts.Entry // every entry, when the source was read whole
	es    []counts.Entry // what order indexes: the head's entries or whole
	order []int32
	pos   int
	// floor bounds the entries that sorted access never reads: those
	// outside the head's top ones for the class (Bounds[class]), 0 for a
	// source read whole.
	floor uint64
}

// bound is the highest count an entry that sorted access has not read yet
// may have.
func (l *taList) bound(c counts.Class) uint64 {
	if l.pos < len(l.order) {
		return l.es[l.order[l.pos]].Get(c)
	}
	return l.floor
}

// skip moves sorted access past entries outside the prefix.
func (l *taList) skip(pr *prefixRange) {
	if pr == nil {
		return
	}
	for l.pos < len(l.order) && !pr.contains(&l.es[l.order[l.pos]].Addr) {
		l.pos++
	}
}

// taPart is the threshold algorithm's state for one partition.
type taPart struct {
	lists []*taList
	srcs  []source
	heads []*chunk
	whole [][]counts.Entry
	seen  map[[counts.AddrLen]byte]struct{}
	// budget is how many more IPs sorted access may meet (each costs a
	// lookup in every list) before the partition is read by address.
	budget int
	bound  uint64 // Σ list bounds: no IP of the partition not yet seen has more
	floor  uint64 // Σ list floors: the lowest bound reachable within the heads
	done   bool
	index  int // in the partition heap
}

func (p *taPart) update(c counts.Class) {
	p.bound, p.floor = 0, 0
	for _, l := range p.lists {
		p.bound = addSat(p.bound, l.bound(c))
		p.floor = addSat(p.floor, l.floor)
	}
	if p.done {
		p.bound = 0
	}
}

// taBudget is how many IPs sorted access may meet in a partition before it
// is read by address instead: k, plus as many as cost about half a merge
// of the partition (each IP met is a binary search in every list, a merge
// a heap step per entry), so that giving up wastes at most that.
func taBudget(srcs []source, k int) int {
	var entries float64
	for _, s := range srcs {
		entries += float64(s.entries())
	}
	lists := float64(len(srcs))
	merge := entries * math.Log2(lists+1)
	lookup := lists * math.Log2(entries/lists+2)
	return k + int(merge/(2*lookup))
}

func addSat(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint64(0)
}

// partHeap orders partitions by bound, highest first.
type partHeap []*taPart

func (h partHeap) Len() int           { return len(h) }
func (h partHeap) Less(i, j int) bool { return h[i].bound > h[j].bound }
func (h partHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *partHeap) Push(x any) { p := x.(*taPart); p.index = len(*h); *h = append(*h, p) }
func (h *partHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}

// thresholdTop is Fagin's threshold algorithm over the lists of every
// partition. Sorted access reads a list's head (its top entries by each
// class, sorted by the ranked one) and, for a run without a head (a small
// one), the whole run sorted by the class; every IP it meets is looked up
// in every other list of its partition, so its count is exact. A
// partition's bound is the sum of its lists' next values (Bounds[class]
// once a head is read): no IP not yet seen there has more. Partitions are
// taken in the order of their bound, one sorted access at a time from the
// list with the highest next value; the answer is complete when the k-th
// best count is above the highest bound left (strictly: on equal counts a
// lower IP not yet seen could still rank before it), or nothing is left.
// A partition whose bound cannot fall below the k-th best within its heads
// is read in full instead (fallback), in address order; so is one where
// sorted access met more IPs than a budget (taBudget) without deciding:
// with many lists that hold an IP each (many short windows, no heavy
// hitters) the bound, a sum over the lists, stays far above any count,
// and a merge by address reads each entry once instead of looking it up
// in every list.
func (q *query) thresholdTop(parts [][]*win, t *topK, class counts.Class, pr *prefixRange) error {
	var ps []*taPart
	for _, ws := range parts {
		if len(ws) == 0 {
			continue
		}
		p := &taPart{srcs: sources(ws), seen: map[[counts.AddrLen]byte]struct{}{}}
		if len(p.srcs) == 0 {
			continue
		}
		p.budget = taBudget(p.srcs, t.k)
		ps = append(ps, p)
	}
	// Read every head (and every run without one) first, concurrently.
	type job struct{ p, i int }
	var jobs []job
	for pi, p := range ps {
		p.lists = make([]*taList, len(p.srcs))
		p.heads = make([]*chunk, len(p.srcs))
		p.whole = make([][]counts.Entry, len(p.srcs))
		for i := range p.srcs {
			jobs = append(jobs, job{pi, i})
		}
	}
	err := q.each(len(jobs), func(j int) error {
		p, i := ps[jobs[j].p], jobs[j].i
		l, err := q.taList(p.srcs[i], class)
		if err != nil {
			return err
		}
		l.skip(pr)
		p.lists[i], p.heads[i], p.whole[i] = l, l.head, l.whole
		return nil
	})
	if err != nil {
		return err
	}
	h := make(partHeap, 0, len(ps))
	for _, p := range ps {
		p.update(class)
		heap.Push(&h, p)
	}
	for h.Len() > 0 {
		if err := q.ctx.Err(); err != nil {
			return Unavailable("query timed out", err)
		}
		p := h[0]
		if p.bound == 0 || (t.full() && t.worst().count > p.bound) {
			return nil
		}
		l := p.next(class)
		if l < 0 || p.budget <= 0 || (t.full() && t.worst().count <= p.floor) {
			q.r.stats.fallbacks.Add(1)
			if err := q.fallback(p, t, class, pr); err != nil {
				return err
			}
			p.done = true
			p.update(class)
			heap.Fix(&h, p.index)
			continue
		}
		if err := q.step(p, l, t, class, pr); err != nil {
			return err
		}
		p.update(class)
		heap.Fix(&h, p.index)
	}
	return nil
}

// taList prepares the sorted access of one source.
func (q *query) taList(s source, class counts.Class) (*taList, error) {
	l := &taList{src: s}
	switch {
	case s.run == nil:
		l.whole, l.es = s.w.m.Inline, s.w.m.Inline
		l.order = s.w.m.orders.byClass(l.es, class, 0)
	case s.run.HeadSlot != 0:
		hd, err := q.head(s)
		if err != nil {
			return nil, err
		}
		l.head, l.es, l.floor = hd, hd.Entries, hd.Bounds[class]
		l.order = hd.orders.byClass(l.es, class, l.floor)
	case len(s.run.Slots) == 1:
		ch, err := q.chunk(s.w, s.run.Slots[0], s.run.Generation, false)
		if err != nil {
			return nil, err
		}
		l.whole, l.es = ch.Entries, ch.Entries
		l.order = ch.orders.byClass(l.es, class, 0)
	default:
		// A run without a head is small; a writer with another layout
		// might make a larger one: read it whole.
		var all []counts.Entry
		for _, slot := range s.run.Slots {
			ch, err := q.chunk(s.w, slot, s.run.Generation, false)
			if err != nil {
				return nil, err
			}
			all = append(all, ch.Entries...)
		}
		var o classOrders
		l.whole, l.es = all, all
		l.order = o.byClass(all, class, 0)
	}
	return l, nil
}

// next returns the list of p with the highest next value that sorted
// access can still read, or -1 when every head is read.
func (p *taPart) next(class counts.Class) int {
	best, bv := -1, uint64(0)
	for i, l := range p.lists {
		if l.pos >= len(l.order) {
			continue
		}
		if v := l.bound(class); best < 0 || v > bv {
			best, bv = i, v
		}
	}
	return best
}

// step does one sorted access on list li of p and, for an IP not seen
// before, its random accesses.
func (q *query) step(p *taPart, li int, t *topK, class counts.Class, pr *prefixRange) error {
	l := p.lists[li]
	e := &l.es[l.order[l.pos]]
	l.pos++
	l.skip(pr)
	if _, ok := p.seen[e.Addr]; ok {
		return nil
	}
	p.seen[e.Addr] = struct{}{}
	p.budget--
	sum, err := q.lookupAll(p.srcs, p.heads, p.whole, li, &e.Addr)
	if err != nil {
		return err
	}
	sum.Add(e.Counters)
	if v := sum.Get(class); v > 0 {
		t.add(ranked{addr: e.Addr, count: v, c: sum})
	}
	return nil
}

// fallback reads every source of p in address order and ranks the IPs not
// seen yet. The scan stops early once nothing after it can enter: the k-th
// best count is above the partition's bound, or equal to it with every
// later address ranking after the k-th best.
func (q *query) fallback(p *taPart, t *topK, class counts.Class, pr *prefixRange) error {
	var lo, hi *[counts.AddrLen]byte
	if pr != nil {
		lo, hi = &pr.lo, &pr.hi
	}
	m, err := q.newMerger(p.srcs, lo, hi, true)
	if err != nil {
		return err
	}
	bound := p.bound
	var e counts.Entry
	for n := 0; ; n++ {
		ok, err := m.next(&e)
		if err != nil || !ok {
			return err
		}
		if n&1023 == 0 {
			if err := q.ctx.Err(); err != nil {
				return Unavailable("query timed out", err)
			}
		}
		if _, seen := p.seen[e.Addr]; !seen && (pr == nil || pr.contains(&e.Addr)) {
			if v := e.Get(class); v > 0 {
				t.add(ranked{addr: e.Addr, count: v, c: e.Counters})
			}
		}
		if t.full() {
			w := t.worst()
			if w.count > bound || (w.count == bound && counts.CompareAddr(&e.Addr, scanEnd(&w.addr)) >= 0) {
				return nil
			}
		}
	}
}

// narrow reports whether the prefix covers at most about one chunk per
// run, so that reading its address range is cheaper than the heads.
func (q *query) narrow(parts [][]*win, pr *prefixRange) bool {
	chunks, runs := 0, 0
	for _, ws := range parts {
		for _, w := range ws {
			for i := range w.m.Runs {
				s := source{w: w, run: &w.m.Runs[i]}
				runs++
				a, b := max(chunkIndex(s, &pr.lo), 0), chunkIndex(s, &pr.hi)
				if b >= a {
					chunks += b - a + 1
				}
			}
		}
	}
	return chunks <= runs+runs/4
}

// scanTop ranks the IPs of a prefix by reading only its address range of
// every source.
func (q *query) scanTop(parts [][]*win, t *topK, class counts.Class, pr *prefixRange) error {
	for _, ws := range parts {
		if len(ws) == 0 {
			continue
		}
		m, err := q.newMerger(sources(ws), &pr.lo, &pr.hi, false)
		if err != nil {
			return err
		}
		var e counts.Entry
		for {
			ok, err := m.next(&e)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if v := e.Get(class); v > 0 && pr.contains(&e.Addr) {
				t.add(ranked{addr: e.Addr, count: v, c: e.Counters})
			}
		}
	}
	return nil
}

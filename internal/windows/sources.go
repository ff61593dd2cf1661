package windows

import (
	"github.com/logtally/logtally/internal/counts"
)

// source is one address-sorted list of a window: its inline entries or one
// of its runs. An IP's counters in a range are the sum over every source of
// every window of the range.
type source struct {
	w   *win
	run *counts.Run // nil: the inline entries
}

// sources lists the sources of windows.
func sources(ws []*win) []source {
	var out []source
	for _, w := range ws {
		if len(w.m.Inline) > 0 {
			out = append(out, source{w: w})
		}
		for i := range w.m.Runs {
			out = append(out, source{w: w, run: &w.m.Runs[i]})
		}
	}
	return out
}

// entries is the number of entries of the source.
func (s source) entries() uint64 {
	if s.run == nil {
		return uint64(len(s.w.m.Inline))
	}
	return s.run.Entries
}

// head returns the run's head, nil when it has none.
func (q *query) head(s source) (*chunk, error) {
	if s.run == nil || s.run.HeadSlot == 0 {
		return nil, nil
	}
	return q.chunk(s.w, s.run.HeadSlot, s.run.Generation, false)
}

// chunkIndex returns the index of the chunk of s that would hold addr, or
// -1 when addr is before the run's first address.
func chunkIndex(s source, addr *[counts.AddrLen]byte) int {
	if counts.CompareAddr(addr, &s.run.Firsts[0]) < 0 {
		return -1
	}
	return s.run.ChunkFor(addr)
}

// cachedHead returns the run's head when the cache has it.
func (q *query) cachedHead(s source) *chunk {
	if s.run == nil || s.run.HeadSlot == 0 {
		return nil
	}
	v, ok := q.r.cache.get(cacheKey{kind: kindChunk, winKey: s.w.winKey, slot: s.run.HeadSlot, ver: s.run.Generation})
	if !ok {
		return nil
	}
	return v.(*chunk)
}

// find returns addr's counters in sorted entries.
func find(es []counts.Entry, addr *[counts.AddrLen]byte) counts.Counters {
	if i, ok := search(es, addr); ok {
		return es[i].Counters
	}
	return counts.Counters{}
}

// lookup is a point lookup: addr's counters in s. A run answers from its
// head when head holds addr, else from the one chunk that would hold it.
func (q *query) lookup(s source, head *chunk, addr *[counts.AddrLen]byte) (counts.Counters, error) {
	if s.run == nil {
		return find(s.w.m.Inline, addr), nil
	}
	if head != nil {
		if i, ok := search(head.Entries, addr); ok {
			return head.Entries[i].Counters, nil
		}
	}
	ci := chunkIndex(s, addr)
	if ci < 0 {
		return counts.Counters{}, nil
	}
	ch, err := q.chunk(s.w, s.run.Slots[ci], s.run.Generation, false)
	if err != nil {
		return counts.Counters{}, err
	}
	return find(ch.Entries, addr), nil
}

// lookupAll returns the sum of addr's counters over srcs (heads[i] is the
// head of srcs[i] or nil), skipping srcs[except]. Lookups that the heads,
// the inline entries or the cache answer cost nothing; the chunks left are
// read concurrently.
func (q *query) lookupAll(srcs []source, heads []*chunk, whole [][]counts.Entry, except int, addr *[counts.AddrLen]byte) (counts.Counters, error) {
	var sum counts.Counters
	var miss []int
	for i, s := range srcs {
		if i == except {
			continue
		}
		switch {
		case whole != nil && whole[i] != nil:
			sum.Add(find(whole[i], addr))
			continue
		case s.run == nil:
			sum.Add(find(s.w.m.Inline, addr))
			continue
		}
		if h := heads[i]; h != nil {
			if j, ok := search(h.Entries, addr); ok {
				sum.Add(h.Entries[j].Counters)
				continue
			}
		}
		ci := chunkIndex(s, addr)
		if ci < 0 {
			continue
		}
		if v, ok := q.r.cache.get(cacheKey{kind: kindChunk, winKey: s.w.winKey, slot: s.run.Slots[ci], ver: s.run.Generation}); ok {
			q.r.stats.hits.Add(1)
			sum.Add(find(v.(*chunk).Entries, addr))
			continue
		}
		miss = append(miss, i)
	}
	if len(miss) == 0 {
		return sum, nil
	}
	got := make([]counts.Counters, len(miss))
	err := q.each(len(miss), func(j int) error {
		s := srcs[miss[j]]
		ch, err := q.chunk(s.w, s.run.Slots[chunkIndex(s, addr)], s.run.Generation, false)
		if err != nil {
			return err
		}
		got[j] = find(ch.Entries, addr)
		return nil
	})
	if err != nil {
		return counts.Counters{}, err
	}
	for _, c := range got {
		sum.Add(c)
	}
	return sum, nil
}

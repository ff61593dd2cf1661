package windows

import (
	"cmp"
	"context"
	"net/netip"
	"slices"

	"github.com/logtally/logtally/internal/counts"
)

// maxGroups bounds the groups of one TopGroups query. Groups are meant to
// be few (about 100k ASNs exist, about 250 countries); a grouping with
// more is refused rather than held in memory.
const maxGroups = 1 << 20

// GroupQuery says what TopGroups ranks: the IPs of the range (inside
// Within, when valid) mapped to groups by Group.
type GroupQuery[K cmp.Ordered] struct {
	N      int
	Class  counts.Class
	Within netip.Prefix
	// Group returns the group of an IP, ok false when it has none (the IP
	// then counts in the unknown group). It is called once per IP of the
	// range, in run order (counts.CompareAddr), from one goroutine, so it
	// may remember what it looked up last without a lock.
	Group func(netip.Addr) (key K, ok bool)
	// Keep, when not nil, leaves out the IPs for which it returns false
	// (they count nowhere, not even in the total); called before Group.
	Keep func(netip.Addr) bool
}

// GroupCount is one group of a TopGroups answer: Count is its counter of
// the ranked class summed over its IPs, IPs how many of them it held.
// Known is false for the IPs without a group (Key is then K's zero value).
type GroupCount[K cmp.Ordered] struct {
	Key      K
	Known    bool
	Count    uint64
	Counters counts.Counters
	IPs      uint64
}

// GroupResult is the answer of TopGroups. Items are sorted by Count
// descending, then known groups by key, then the unknown group; groups
// whose count is zero are left out. The unknown group is ranked with the
// others and is also in Unknown, listed or not.
type GroupResult[K cmp.Ordered] struct {
	Range Range
	Class counts.Class
	Items []GroupCount[K]
	// Unknown is the IPs without a group.
	Unknown GroupCount[K]
	// Total is the counters of every IP of the range (inside Within), IPs
	// their number, Groups the number of known groups they fell in.
	Total  counts.Counters
	IPs    uint64
	Groups int
	// Other is the ranked class summed over the groups not listed.
	Other uint64
}

// TopGroups returns the N groups of IPs with the highest counter of the
// class over rg, exactly. A group's IPs (the networks of an ASN, say) are
// spread over the whole address space and every partition, so every IP of
// the range is read once, merged by address across partitions as
// TopPrefixes does (one chunk and the one read ahead per list), and its
// counters added to its group's: memory is the groups, not the IPs. The
// cost is a scan of the range whatever N, plus one call of gq.Group per
// IP. It is a function, not a method, because its key type is a type
// parameter (an ASN number, a country code).
func TopGroups[K cmp.Ordered](ctx context.Context, r *Reader, rg Range, gq GroupQuery[K]) (GroupResult[K], error) {
	if gq.N < 1 || gq.N > r.cfg.MaxN {
		return GroupResult[K]{}, Invalidf("n must be between 1 and %d, got %d", r.cfg.MaxN, gq.N)
	}
	if gq.Class < 0 || gq.Class >= counts.NumClasses {
		return GroupResult[K]{}, Invalidf("class %s is not one of requests, 4xx, 5xx, auth_failure, bytes", gq.Class)
	}
	if gq.Group == nil {
		return GroupResult[K]{}, Invalidf("no grouping of IPs")
	}
	type acc struct {
		c   counts.Counters
		ips uint64
	}
	var (
		groups  map[K]*acc
		unknown acc
		total   acc
		tooMany bool
	)
	err := r.scanIPs(ctx, rg, gq.Within, func() func(*counts.Entry) bool {
		groups, unknown, total, tooMany = map[K]*acc{}, acc{}, acc{}, false
		return func(e *counts.Entry) bool {
			a := counts.Unpack(e.Addr)
			if gq.Keep != nil && !gq.Keep(a) {
				return true
			}
			total.c.Add(e.Counters)
			total.ips++
			k, ok := gq.Group(a)
			if !ok {
				unknown.c.Add(e.Counters)
				unknown.ips++
				return true
			}
			g := groups[k]
			if g == nil {
				if len(groups) == maxGroups {
					tooMany = true
					return false
				}
				g = &acc{}
				groups[k] = g
			}
			g.c.Add(e.Counters)
			g.ips++
			return true
		}
	})
	if err != nil {
		return GroupResult[K]{}, err
	}
	if tooMany {
		return GroupResult[K]{}, Invalidf("the IPs fall into more than %d groups", maxGroups)
	}
	res := GroupResult[K]{
		Range: rg, Class: gq.Class,
		Unknown: GroupCount[K]{Count: unknown.c.Get(gq.Class), Counters: unknown.c, IPs: unknown.ips},
		Total:   total.c, IPs: total.ips, Groups: len(groups),
	}
	all := make([]GroupCount[K], 0, len(groups)+1)
	for k, a := range groups {
		if v := a.c.Get(gq.Class); v > 0 {
			all = append(all, GroupCount[K]{Key: k, Known: true, Count: v, Counters: a.c, IPs: a.ips})
		}
	}
	if res.Unknown.Count > 0 {
		all = append(all, res.Unknown)
	}
	slices.SortFunc(all, func(a, b GroupCount[K]) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		if a.Known != b.Known {
			if a.Known {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Key, b.Key)
	})
	res.Items = all[:min(gq.N, len(all))]
	listed := uint64(0)
	for _, it := range res.Items {
		listed += it.Count
	}
	res.Other = res.Total.Get(gq.Class) - listed
	return res, nil
}

// topKept is Top with a Keep filter: every IP of the range (inside the
// prefix) is read by address, the kept ones ranked in a bounded heap.
func (r *Reader) topKept(ctx context.Context, rg Range, tq TopQuery) (TopResult, error) {
	var t *topK
	err := r.scanIPs(ctx, rg, tq.Prefix, func() func(*counts.Entry) bool {
		t = newTopK(tq.N)
		return func(e *counts.Entry) bool {
			v := e.Get(tq.Class)
			if v == 0 {
				return true
			}
			rk := ranked{addr: e.Addr, count: v, c: e.Counters}
			if t.full() && !better(&rk, t.worst()) {
				return true // Keep is not asked about an IP that cannot enter
			}
			if tq.Keep(counts.Unpack(e.Addr)) {
				t.add(rk)
			}
			return true
		}
	})
	if err != nil {
		return TopResult{}, err
	}
	best := t.sorted()
	res := TopResult{Range: rg, Class: tq.Class, Items: make([]IPCount, len(best))}
	for i, b := range best {
		res.Items[i] = IPCount{IP: counts.Unpack(b.addr), Count: b.count, Counters: b.c}
	}
	return res, nil
}

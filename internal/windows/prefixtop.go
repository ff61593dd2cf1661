package windows

import (
	"context"
	"net/netip"

	"github.com/logtally/logtally/internal/counts"
)

// PrefixQuery says what TopPrefixes ranks: networks of V4Bits (IPv4) and
// V6Bits (IPv6) bits, such as /24 and /64.
type PrefixQuery struct {
	N      int
	Class  counts.Class
	V4Bits int
	V6Bits int
	// Within, when valid, keeps only the IPs inside it.
	Within netip.Prefix
	// Keep, when not nil, keeps only the IPs for which it returns true
	// (such as those of one ASN). It is called once per IP of the range,
	// in run order, from one goroutine.
	Keep func(netip.Addr) bool
}

// PrefixCount is one network of a TopPrefixes answer: Count is its counter
// of the ranked class summed over its IPs, IPs how many of them it held.
type PrefixCount struct {
	Prefix   netip.Prefix
	Count    uint64
	Counters counts.Counters
	IPs      uint64
}

// PrefixResult is the answer of TopPrefixes: Items sorted by Count
// descending, then by network (IPv4 first, then by address).
type PrefixResult struct {
	Range Range
	Class counts.Class
	Items []PrefixCount
}

// TopPrefixes returns the N networks with the highest counter of the class
// in r, exactly. A network's IPs are spread over every partition, so the
// lists of all partitions are merged by address into one stream in which
// the IPs of a network are adjacent, and each network is summed as it
// passes: memory is one chunk (and the one read ahead) per list and the N
// best networks, whatever the number of IPs.
func (r *Reader) TopPrefixes(ctx context.Context, rg Range, pq PrefixQuery) (PrefixResult, error) {
	if pq.N < 1 || pq.N > r.cfg.MaxN {
		return PrefixResult{}, Invalidf("n must be between 1 and %d, got %d", r.cfg.MaxN, pq.N)
	}
	var t *topK
	var ips map[[counts.AddrLen]byte]uint64 // of the networks in t
	err := r.scanNetworks(ctx, rg, pq.Within, pq.Keep, pq.V4Bits, pq.V6Bits, pq.Class, func() func(*prefixAcc) bool {
		t, ips = newTopK(pq.N), map[[counts.AddrLen]byte]uint64{}
		return func(acc *prefixAcc) bool {
			if v := acc.c.Get(pq.Class); v > 0 {
				r := ranked{addr: acc.net, count: v, c: acc.c}
				if !t.full() || better(&r, t.worst()) {
					if t.full() {
						delete(ips, t.worst().addr)
					}
					t.add(r)
					ips[acc.net] = acc.ips
				}
			}
			return true
		}
	})
	if err != nil {
		return PrefixResult{}, err
	}
	best := t.sorted()
	res := PrefixResult{Range: rg, Class: pq.Class, Items: make([]PrefixCount, len(best))}
	for i, b := range best {
		bits := pq.V6Bits
		if isV4(&b.addr) {
			bits = pq.V4Bits
		}
		acc := prefixAcc{net: b.addr, bits: bits, c: b.c, ips: ips[b.addr]}
		res.Items[i] = acc.count(b.count)
	}
	return res, nil
}

// AboveQuery says which keys Above lists: the addresses (V4Bits 32 and
// V6Bits 128) or networks whose counter of Class over the range is above
// Min.
type AboveQuery struct {
	Class          counts.Class
	Min            uint64
	V4Bits, V6Bits int
	// Limit is the most keys listed (those keep accepts).
	Limit int
}

// Above lists, in address order, the keys above aq.Min for which keep
// (called as the keys pass) returns true, at most aq.Limit of them; more
// says that further keys passed keep. Unlike Top it reads every list of
// the range whole: it is for the cases where Top's N is not enough, such
// as deciding a million offenders a thousand at a time.
func (r *Reader) Above(ctx context.Context, rg Range, aq AboveQuery, keep func(PrefixCount) bool) (items []PrefixCount, more bool, err error) {
	if aq.Limit < 1 {
		return nil, false, Invalidf("limit must be at least 1, got %d", aq.Limit)
	}
	err = r.scanNetworks(ctx, rg, netip.Prefix{}, nil, aq.V4Bits, aq.V6Bits, aq.Class, func() func(*prefixAcc) bool {
		items, more = items[:0], false
		return func(acc *prefixAcc) bool {
			v := acc.c.Get(aq.Class)
			if v <= aq.Min {
				return true
			}
			pc := acc.count(v)
			if !keep(pc) {
				return true
			}
			if len(items) == aq.Limit {
				more = true
				return false
			}
			items = append(items, pc)
			return true
		}
	})
	return items, more, err
}

// scanNetworks merges every list of rg (inside within, when valid) by
// address and passes each network of v4Bits / v6Bits bits to the sink
// that start makes (anew for each attempt of the query), until the sink
// returns false. keep, when not nil, leaves out the IPs it refuses.
func (r *Reader) scanNetworks(ctx context.Context, rg Range, within netip.Prefix, keep func(netip.Addr) bool, v4Bits, v6Bits int, class counts.Class, start func() func(*prefixAcc) bool) error {
	if class < 0 || class >= counts.NumClasses {
		return Invalidf("class %s is not one of requests, 4xx, 5xx, auth_failure, bytes", class)
	}
	if v4Bits < 0 || v4Bits > 32 {
		return Invalidf("IPv4 prefix length must be between 0 and 32, got %d", v4Bits)
	}
	if v6Bits < 0 || v6Bits > 128 {
		return Invalidf("IPv6 prefix length must be between 0 and 128, got %d", v6Bits)
	}
	var s *prefixSummer
	err := r.scanIPs(ctx, rg, within, func() func(*counts.Entry) bool {
		s = newPrefixSummer(v4Bits, v6Bits, start())
		return func(e *counts.Entry) bool {
			if keep == nil || keep(counts.Unpack(e.Addr)) {
				s.add(e)
			}
			return !s.stop
		}
	})
	if err != nil {
		return err
	}
	s.finish()
	return nil
}

// scanIPs merges every list of rg (inside within, when valid) by address
// (run order, counts.CompareAddr) and passes each IP, with its counters
// summed over the range, to the sink that start makes (anew for each
// attempt of the query), until the sink returns false. Partitions hold
// disjoint IPs, so every IP passes once: memory is one chunk (and the one
// read ahead) per list, whatever the number of IPs.
func (r *Reader) scanIPs(ctx context.Context, rg Range, within netip.Prefix, start func() func(*counts.Entry) bool) error {
	if err := r.CheckRange(rg); err != nil {
		return err
	}
	var lo, hi *[counts.AddrLen]byte
	var pr *prefixRange
	if within.IsValid() {
		pr = newPrefixRange(within)
		lo, hi = &pr.lo, &pr.hi
	}
	segs := decompose(rg.From.Unix(), rg.To.Unix(), r.sizes)
	return r.run(ctx, func(q *query) error {
		ws, err := q.windows(segs, -1)
		if err != nil {
			return err
		}
		m, err := q.newMerger(sources(ws), lo, hi, true)
		if err != nil {
			return err
		}
		sink := start()
		var e counts.Entry
		for n := 0; ; n++ {
			ok, err := m.next(&e)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if n&4095 == 0 {
				if err := q.ctx.Err(); err != nil {
					return Unavailable("query timed out", err)
				}
			}
			if pr == nil || pr.contains(&e.Addr) {
				if !sink(&e) {
					break
				}
			}
		}
		return nil
	})
}

// prefixAcc is one network being summed.
type prefixAcc struct {
	net  [counts.AddrLen]byte
	bits int // of the unpacked address
	c    counts.Counters
	ips  uint64
	set  bool
}

// count is the network as an answer, counting v.
func (acc *prefixAcc) count(v uint64) PrefixCount {
	return PrefixCount{Prefix: netip.PrefixFrom(counts.Unpack(acc.net), acc.bits), Count: v, Counters: acc.c, IPs: acc.ips}
}

// prefixSummer sums a stream of IPs in run order (counts.CompareAddr) into
// networks and passes each to sink. In that order the IPs of a network are
// adjacent, except for the IPv6 network that holds ::ffff:0:0/96 (::/64,
// say): its addresses below the IPv4 block come before IPv4, the others
// after, so it is summed on the side.
type prefixSummer struct {
	v4Bits, v6Bits int
	sink           func(*prefixAcc) bool
	stop           bool
	cur, split     prefixAcc
	splitNet       [counts.AddrLen]byte
	hasSplit       bool
}

func newPrefixSummer(v4Bits, v6Bits int, sink func(*prefixAcc) bool) *prefixSummer {
	s := &prefixSummer{v4Bits: v4Bits, v6Bits: v6Bits, sink: sink}
	if v6Bits <= 96 {
		s.hasSplit = true
		s.splitNet = maskAddr([counts.AddrLen]byte{10: 0xff, 11: 0xff}, v6Bits)
	}
	return s
}

// maskAddr keeps the first bits bits of a.
func maskAddr(a [counts.AddrLen]byte, bits int) [counts.AddrLen]byte {
	for i := range a {
		switch {
		case bits >= 8*(i+1):
		case bits <= 8*i:
			a[i] = 0
		default:
			a[i] &= byte(0xff << (8 - (bits - 8*i)))
		}
	}
	return a
}

func (s *prefixSummer) add(e *counts.Entry) {
	v4 := isV4(&e.Addr)
	bits, packed := s.v6Bits, s.v6Bits
	if v4 {
		bits, packed = s.v4Bits, s.v4Bits+96
	}
	net := maskAddr(e.Addr, packed)
	acc := &s.cur
	if !v4 && s.hasSplit && net == s.splitNet {
		acc = &s.split
	} else if s.cur.set && s.cur.net != net {
		s.emit(&s.cur)
	}
	if !acc.set {
		*acc = prefixAcc{net: net, bits: bits, set: true}
	}
	acc.c.Add(e.Counters)
	acc.ips++
}

func (s *prefixSummer) finish() {
	s.emit(&s.cur)
	s.emit(&s.split)
}

func (s *prefixSummer) emit(acc *prefixAcc) {
	if acc.set && !s.stop && !s.sink(acc) {
		s.stop = true
	}
	*acc = prefixAcc{}
}

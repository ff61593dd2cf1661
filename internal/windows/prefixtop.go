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
	if pq.Class < 0 || pq.Class >= counts.NumClasses {
		return PrefixResult{}, Invalidf("class %s is not one of requests, 4xx, 5xx, auth_failure, bytes", pq.Class)
	}
	if pq.V4Bits < 0 || pq.V4Bits > 32 {
		return PrefixResult{}, Invalidf("IPv4 prefix length must be between 0 and 32, got %d", pq.V4Bits)
	}
	if pq.V6Bits < 0 || pq.V6Bits > 128 {
		return PrefixResult{}, Invalidf("IPv6 prefix length must be between 0 and 128, got %d", pq.V6Bits)
	}
	if err := r.CheckRange(rg); err != nil {
		return PrefixResult{}, err
	}
	var lo, hi *[counts.AddrLen]byte
	var pr *prefixRange
	if pq.Within.IsValid() {
		pr = newPrefixRange(pq.Within)
		lo, hi = &pr.lo, &pr.hi
	}
	segs := decompose(rg.From.Unix(), rg.To.Unix(), r.sizes)
	var best []ranked
	var ips map[[counts.AddrLen]byte]uint64
	err := r.run(ctx, func(q *query) error {
		ws, err := q.windows(segs, -1)
		if err != nil {
			return err
		}
		m, err := q.newMerger(sources(ws), lo, hi, true)
		if err != nil {
			return err
		}
		s := newPrefixSummer(pq, newTopK(pq.N))
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
				s.add(&e)
			}
		}
		s.finish()
		best, ips = s.t.sorted(), s.ips
		return nil
	})
	if err != nil {
		return PrefixResult{}, err
	}
	res := PrefixResult{Range: rg, Class: pq.Class, Items: make([]PrefixCount, len(best))}
	for i, b := range best {
		bits := pq.V6Bits
		if isV4(&b.addr) {
			bits = pq.V4Bits
		}
		res.Items[i] = PrefixCount{Prefix: netip.PrefixFrom(counts.Unpack(b.addr), bits), Count: b.count, Counters: b.c, IPs: ips[b.addr]}
	}
	return res, nil
}

// prefixAcc is one network being summed.
type prefixAcc struct {
	net [counts.AddrLen]byte
	c   counts.Counters
	ips uint64
	set bool
}

// prefixSummer sums a stream of IPs in run order (counts.CompareAddr) into
// networks. In that order the IPs of a network are adjacent, except for the
// IPv6 network that holds ::ffff:0:0/96 (::/64, say): its addresses below
// the IPv4 block come before IPv4, the others after, so it is summed on
// the side.
type prefixSummer struct {
	v4Bits, v6Bits int
	class          counts.Class
	t              *topK
	ips            map[[counts.AddrLen]byte]uint64 // of the networks in t
	cur, split     prefixAcc
	splitNet       [counts.AddrLen]byte
	hasSplit       bool
}

func newPrefixSummer(pq PrefixQuery, t *topK) *prefixSummer {
	s := &prefixSummer{v4Bits: pq.V4Bits + 96, v6Bits: pq.V6Bits, class: pq.Class, t: t, ips: map[[counts.AddrLen]byte]uint64{}}
	if pq.V6Bits <= 96 {
		s.hasSplit = true
		s.splitNet = maskAddr([counts.AddrLen]byte{10: 0xff, 11: 0xff}, pq.V6Bits)
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
	bits := s.v6Bits
	if v4 {
		bits = s.v4Bits
	}
	net := maskAddr(e.Addr, bits)
	acc := &s.cur
	if !v4 && s.hasSplit && net == s.splitNet {
		acc = &s.split
	} else if s.cur.set && s.cur.net != net {
		s.emit(&s.cur)
	}
	if !acc.set {
		*acc = prefixAcc{net: net, set: true}
	}
	acc.c.Add(e.Counters)
	acc.ips++
}

func (s *prefixSummer) finish() {
	s.emit(&s.cur)
	s.emit(&s.split)
}

func (s *prefixSummer) emit(acc *prefixAcc) {
	if !acc.set {
		return
	}
	if v := acc.c.Get(s.class); v > 0 {
		r := ranked{addr: acc.net, count: v, c: acc.c}
		if !s.t.full() || better(&r, s.t.worst()) {
			if s.t.full() {
				delete(s.ips, s.t.worst().addr)
			}
			s.t.add(r)
			s.ips[acc.net] = acc.ips
		}
	}
	*acc = prefixAcc{}
}

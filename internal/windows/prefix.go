package windows

import (
	"net/netip"

	"github.com/logtally/logtally/internal/counts"
)

// prefixRange is a prefix in the packed 16-byte form of counts.Pack: the
// first and last packed address it holds, so that a run (sorted by packed
// address) is read only between them. Like netip.Prefix.Contains, an IPv6
// prefix (even ::/0) holds no IPv4 address, although ::ffff:0:0/96 lies
// inside some of them in packed form: contains checks that.
type prefixRange struct {
	lo, hi [counts.AddrLen]byte
	bits   int // of the packed form
	v4     bool
}

func newPrefixRange(p netip.Prefix) *prefixRange {
	p = p.Masked()
	pr := &prefixRange{lo: counts.Pack(p.Addr()), bits: p.Bits(), v4: p.Addr().Is4()}
	if pr.v4 {
		pr.bits += 96
	}
	pr.hi = pr.lo
	for i := pr.bits; i < 8*counts.AddrLen; i++ {
		pr.hi[i/8] |= 0x80 >> (i % 8)
	}
	return pr
}

func (pr *prefixRange) contains(a *[counts.AddrLen]byte) bool {
	if isV4(a) != pr.v4 {
		return false
	}
	return counts.CompareAddr(a, &pr.lo) >= 0 && counts.CompareAddr(a, &pr.hi) <= 0
}

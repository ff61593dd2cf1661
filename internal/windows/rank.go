package windows

import (
	"bytes"
	"encoding/binary"

	"github.com/logtally/logtally/internal/counts"
)

// cmpAddr orders packed addresses as netip.Addr.Compare orders their
// unmapped forms: IPv4 before IPv6, then by value. Runs are sorted by the
// bytes (counts.CompareAddr), which differs only for IPv6 addresses below
// ::ffff:0:0 (such as ::1): they come before IPv4 in a run.
func cmpAddr(a, b *[counts.AddrLen]byte) int {
	va, vb := isV4(a), isV4(b)
	if va != vb {
		if va {
			return -1
		}
		return 1
	}
	return bytes.Compare(a[:], b[:])
}

var v4Prefix = [12]byte{10: 0xff, 11: 0xff}

// v4Max is the last IPv4 address in packed form.
var v4Max = [counts.AddrLen]byte{10: 0xff, 11: 0xff, 12: 0xff, 13: 0xff, 14: 0xff, 15: 0xff}

func isV4(a *[counts.AddrLen]byte) bool { return [12]byte(a[:12]) == v4Prefix }

// ranked is one IP's counters in a range and the value it is ranked by.
type ranked struct {
	addr  [counts.AddrLen]byte
	count uint64
	c     counts.Counters
}

// better reports whether a ranks before b: a higher count, then a lower IP.
func better(a, b *ranked) bool {
	if a.count != b.count {
		return a.count > b.count
	}
	return cmpAddr(&a.addr, &b.addr) < 0
}

// scanEnd is the packed address after which, in run order, every address
// ranks after worst on equal counts: worst itself, or the last IPv4
// address when worst is an IPv6 address that runs sort before IPv4.
func scanEnd(worst *[counts.AddrLen]byte) *[counts.AddrLen]byte {
	if !isV4(worst) && counts.CompareAddr(worst, &v4Max) < 0 {
		return &v4Max
	}
	return worst
}

// topK keeps the k best entries in a bounded min-heap whose root is the
// worst entry kept.
type topK struct {
	k int
	h []ranked
}

func newTopK(k int) *topK { return &topK{k: k, h: make([]ranked, 0, min(k, 1024))} }

func (t *topK) full() bool { return len(t.h) == t.k }

// worst is the k-th best entry (only when full).
func (t *topK) worst() *ranked { return &t.h[0] }

func (t *topK) add(e ranked) {
	h := t.h
	if len(h) < t.k {
		h = append(h, e)
		for i := len(h) - 1; i > 0; {
			p := (i - 1) / 2
			if !better(&h[p], &h[i]) {
				break
			}
			h[i], h[p] = h[p], h[i]
			i = p
		}
		t.h = h
		return
	}
	if e.count < h[0].count || !better(&e, &h[0]) {
		return
	}
	h[0] = e
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		w := l
		if r := l + 1; r < len(h) && better(&h[l], &h[r]) {
			w = r
		}
		if !better(&h[i], &h[w]) {
			return
		}
		h[i], h[w] = h[w], h[i]
		i = w
	}
}

// sorted returns the kept entries, best first.
func (t *topK) sorted() []ranked {
	out := append([]ranked(nil), t.h...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && better(&out[j], &out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// addrKey is a packed address as two big-endian words: compared like the
// bytes, far cheaper.
type addrKey struct{ hi, lo uint64 }

func keyOf(a *[counts.AddrLen]byte) addrKey {
	return addrKey{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}
}

func (k addrKey) less(o addrKey) bool { return k.hi < o.hi || (k.hi == o.hi && k.lo < o.lo) }

// search returns the index of the first entry of es (sorted by address) at
// or after addr, and whether it is addr.
func search(es []counts.Entry, addr *[counts.AddrLen]byte) (int, bool) {
	k := keyOf(addr)
	lo, hi := 0, len(es)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if keyOf(&es[m].Addr).less(k) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(es) && es[lo].Addr == *addr
}

package windows

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/logtally/logtally/internal/counts"
)

// refPrefixTop sums the reference per network.
func refPrefixTop(d data, rg Range, pq PrefixQuery) []PrefixCount {
	sums := map[netip.Prefix]*PrefixCount{}
	for ip, c := range refSums(d, rg.From, rg.To, pq.Within) {
		bits := pq.V6Bits
		if ip.Is4() {
			bits = pq.V4Bits
		}
		p, _ := ip.Prefix(bits)
		pc := sums[p]
		if pc == nil {
			pc = &PrefixCount{Prefix: p}
			sums[p] = pc
		}
		pc.Counters.Add(c)
		pc.IPs++
	}
	var out []PrefixCount
	for _, pc := range sums {
		if pc.Count = pc.Counters.Get(pq.Class); pc.Count > 0 {
			out = append(out, *pc)
		}
	}
	slices.SortFunc(out, func(a, b PrefixCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	return out[:min(pq.N, len(out))]
}

func fmtPrefixes(items []PrefixCount) string {
	var b strings.Builder
	for _, it := range items {
		fmt.Fprintf(&b, "%s=%d(%d ips) ", it.Prefix, it.Count, it.IPs)
	}
	return b.String()
}

// Networks of every size the rules and the API use, over ranges of both
// resolutions, every class and inside prefixes, against the reference; the
// fixture has IPv6 addresses below ::ffff:0:0, whose ::/64 (or ::/48)
// straddles the IPv4 block in run order.
func TestTopPrefixesMatchesReference(t *testing.T) {
	e := newEnv(t, envOpts{maxPayload: 64 << 10, layout: smallLayout})
	d, _ := genData(3, 6000)
	e.write(d, 4)
	ctx := context.Background()
	sizes := [][2]int{{24, 64}, {16, 48}, {32, 128}, {8, 32}, {0, 0}}
	withins := []string{"", "10.0.0.0/8", "2001:db8::/32", "::/0"}
	for _, rg := range testRanges {
		r := Range{at(rg.from), at(rg.to)}
		for class := counts.Class(0); class < counts.NumClasses; class++ {
			for _, sz := range sizes {
				for _, ws := range withins {
					pq := PrefixQuery{N: 10, Class: class, V4Bits: sz[0], V6Bits: sz[1]}
					if ws != "" {
						pq.Within = netip.MustParsePrefix(ws)
					}
					got, err := e.r.TopPrefixes(ctx, r, pq)
					if err != nil {
						t.Fatal(err)
					}
					if want := refPrefixTop(d, r, pq); !slices.Equal(got.Items, want) {
						t.Fatalf("%s %s /%d /%d within %q:\n got %s\nwant %s", r, class, sz[0], sz[1], ws, fmtPrefixes(got.Items), fmtPrefixes(want))
					}
				}
			}
		}
	}
	// The straddling network is one answer, not two.
	got, err := e.r.TopPrefixes(ctx, Range{at("2026-11-24T09:00:00Z"), at("2026-11-24T13:00:00Z")}, PrefixQuery{N: 1000, Class: counts.Requests, V4Bits: 8, V6Bits: 64})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Prefix]bool{}
	for _, it := range got.Items {
		if seen[it.Prefix] {
			t.Fatalf("%s answered twice", it.Prefix)
		}
		seen[it.Prefix] = true
	}
	if !seen[netip.MustParsePrefix("::/64")] {
		t.Fatalf("no ::/64 in %s", fmtPrefixes(got.Items))
	}
}

func TestTopPrefixesRejects(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := Range{at("2026-11-24T10:00:00Z"), at("2026-11-24T11:00:00Z")}
	for _, pq := range []PrefixQuery{{N: 0, V4Bits: 24, V6Bits: 64}, {N: 1, V4Bits: 33, V6Bits: 64}, {N: 1, V4Bits: 24, V6Bits: 129}, {N: 1, Class: counts.NumClasses, V4Bits: 24}} {
		if _, err := e.r.TopPrefixes(context.Background(), r, pq); !isInvalid(err, "") {
			t.Errorf("%+v: %v, want an invalid argument", pq, err)
		}
	}
}

// Above lists every address (or network) over the minimum once, skips
// what keep refuses, and stops at the limit saying that more passed.
func TestAboveMatchesReference(t *testing.T) {
	e := newEnv(t, envOpts{maxPayload: 64 << 10, layout: smallLayout})
	d, _ := genData(4, 6000)
	e.write(d, 4)
	ctx := context.Background()
	for _, rg := range testRanges {
		r := Range{at(rg.from), at(rg.to)}
		for _, sz := range [][2]int{{32, 128}, {24, 64}} {
			for _, min := range []uint64{0, 2, 50} {
				all := refPrefixTop(d, r, PrefixQuery{N: 1 << 30, Class: counts.Requests, V4Bits: sz[0], V6Bits: sz[1]})
				want := map[netip.Prefix]PrefixCount{}
				for _, pc := range all {
					// Every other network is refused by keep.
					if pc.Count > min && pc.Prefix.Addr().As16()[15]%2 == 0 {
						want[pc.Prefix] = pc
					}
				}
				keep := func(pc PrefixCount) bool { return pc.Prefix.Addr().As16()[15]%2 == 0 }
				got, more, err := e.r.Above(ctx, r, AboveQuery{Class: counts.Requests, Min: min, V4Bits: sz[0], V6Bits: sz[1], Limit: 1 << 20}, keep)
				if err != nil {
					t.Fatal(err)
				}
				if more || len(got) != len(want) {
					t.Fatalf("%s /%d min %d: %d keys (more %v), want %d", r, sz[0], min, len(got), more, len(want))
				}
				for _, pc := range got {
					if w, ok := want[pc.Prefix]; !ok || w != pc {
						t.Fatalf("%s /%d min %d: got %+v, want %+v", r, sz[0], min, pc, w)
					}
				}
				if len(want) > 3 {
					got, more, err := e.r.Above(ctx, r, AboveQuery{Class: counts.Requests, Min: min, V4Bits: sz[0], V6Bits: sz[1], Limit: 3}, keep)
					if err != nil || len(got) != 3 || !more {
						t.Fatalf("limit 3 of %d: %d keys, more %v, %v", len(want), len(got), more, err)
					}
				}
			}
		}
	}
}

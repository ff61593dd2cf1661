package windows

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/logtally/logtally/internal/counts"
)

// testGroup puts IPs into a few groups scattered over the address space
// (by the last byte), with every seventh IP in none; the IPv6 ones in
// groups of their own.
func testGroup(a netip.Addr) (uint32, bool) {
	b := a.As16()[15]
	switch {
	case b%7 == 0:
		return 0, false
	case a.Is4():
		return uint32(b % 5), true
	default:
		return 100 + uint32(b%3), true
	}
}

// refGroups sums the reference per group.
func refGroups(d data, rg Range, gq GroupQuery[uint32]) GroupResult[uint32] {
	groups := map[uint32]*GroupCount[uint32]{}
	res := GroupResult[uint32]{Range: rg, Class: gq.Class}
	for ip, c := range refSums(d, rg.From, rg.To, gq.Within) {
		if gq.Keep != nil && !gq.Keep(ip) {
			continue
		}
		res.Total.Add(c)
		res.IPs++
		k, ok := gq.Group(ip)
		g := &res.Unknown
		if ok {
			if g = groups[k]; g == nil {
				g = &GroupCount[uint32]{Key: k, Known: true}
				groups[k] = g
			}
		}
		g.Counters.Add(c)
		g.IPs++
	}
	res.Groups = len(groups)
	res.Unknown.Count = res.Unknown.Counters.Get(gq.Class)
	var all []GroupCount[uint32]
	for _, g := range groups {
		if g.Count = g.Counters.Get(gq.Class); g.Count > 0 {
			all = append(all, *g)
		}
	}
	if res.Unknown.Count > 0 {
		all = append(all, res.Unknown)
	}
	slices.SortFunc(all, func(a, b GroupCount[uint32]) int {
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
	res.Other = res.Total.Get(gq.Class)
	for _, it := range res.Items {
		res.Other -= it.Count
	}
	return res
}

// Groups of IPs spread over every partition and the whole address space,
// over ranges of both resolutions, every class and inside prefixes,
// against the reference: items, the unknown group, totals and remainder.
func TestTopGroupsMatchesReference(t *testing.T) {
	e := newEnv(t, envOpts{maxPayload: 64 << 10, layout: smallLayout})
	d, _ := genData(5, 6000)
	e.write(d, 4)
	ctx := context.Background()
	for _, rg := range testRanges {
		r := Range{at(rg.from), at(rg.to)}
		for class := counts.Class(0); class < counts.NumClasses; class++ {
			for _, ws := range []string{"", "10.0.0.0/8", "2001:db8::/32"} {
				for _, n := range []int{1, 3, 100} {
					gq := GroupQuery[uint32]{N: n, Class: class, Group: testGroup}
					if n == 3 {
						gq.Keep = func(a netip.Addr) bool { return a.As16()[14]%2 == 0 }
					}
					if ws != "" {
						gq.Within = netip.MustParsePrefix(ws)
					}
					got, err := TopGroups(ctx, e.r, r, gq)
					if err != nil {
						t.Fatal(err)
					}
					want := refGroups(d, r, gq)
					if !slices.Equal(got.Items, want.Items) || got.Unknown != want.Unknown || got.Total != want.Total ||
						got.IPs != want.IPs || got.Groups != want.Groups || got.Other != want.Other {
						t.Fatalf("%s %s n=%d within %q:\n got %+v\nwant %+v", r, class, n, ws, got, want)
					}
				}
			}
		}
	}
}

// Top and TopPrefixes with a Keep filter count only the kept IPs, exactly.
func TestKeepMatchesReference(t *testing.T) {
	e := newEnv(t, envOpts{maxPayload: 64 << 10, layout: smallLayout})
	d, _ := genData(6, 6000)
	e.write(d, 4)
	ctx := context.Background()
	keep := func(a netip.Addr) bool { k, ok := testGroup(a); return ok && (k == 2 || k == 101) }
	kept := data{dead: d.dead, late: d.late}
	for _, x := range d.evs {
		if keep(x.ip) {
			kept.evs = append(kept.evs, x)
		}
	}
	for _, rg := range testRanges {
		r := Range{at(rg.from), at(rg.to)}
		for class := counts.Class(0); class < counts.NumClasses; class++ {
			for _, ws := range []string{"", "10.0.0.0/8", "::/0"} {
				var p netip.Prefix
				if ws != "" {
					p = netip.MustParsePrefix(ws)
				}
				for _, n := range []int{1, 10, 1000} {
					got, err := e.r.Top(ctx, r, TopQuery{N: n, Class: class, Prefix: p, Keep: keep})
					if err != nil {
						t.Fatal(err)
					}
					if want := refTop(kept, r.From, r.To, class, n, p); !sameItems(got.Items, want) {
						t.Fatalf("top %s %s n=%d within %q:\n got %s\nwant %s", r, class, n, ws, fmtItems(got.Items), fmtItems(want))
					}
				}
				for _, sz := range [][2]int{{24, 64}, {16, 48}} {
					pq := PrefixQuery{N: 10, Class: class, V4Bits: sz[0], V6Bits: sz[1], Within: p, Keep: keep}
					got, err := e.r.TopPrefixes(ctx, r, pq)
					if err != nil {
						t.Fatal(err)
					}
					if want := refPrefixTop(kept, r, pq); !slices.Equal(got.Items, want) {
						t.Fatalf("prefixes %s %s /%d within %q:\n got %s\nwant %s", r, class, sz[0], ws, fmtPrefixes(got.Items), fmtPrefixes(want))
					}
				}
			}
		}
	}
}

func TestTopGroupsRejects(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := Range{at("2026-11-24T10:00:00Z"), at("2026-11-24T11:00:00Z")}
	for _, gq := range []GroupQuery[uint32]{{N: 0, Group: testGroup}, {N: 1, Class: counts.NumClasses, Group: testGroup}, {N: 1}} {
		if _, err := TopGroups(context.Background(), e.r, r, gq); !isInvalid(err, "") {
			t.Errorf("%+v: %v, want an invalid argument", gq.N, err)
		}
	}
	if _, err := TopGroups(context.Background(), e.r, Range{r.From, r.From}, GroupQuery[uint32]{N: 1, Group: testGroup}); !isInvalid(err, "") {
		t.Errorf("empty range: %v, want an invalid argument", err)
	}
}

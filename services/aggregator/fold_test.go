package aggregator

import (
	"math/rand/v2"
	"testing"

	"github.com/logtally/logtally/internal/counts"
)

func foldInput(r *rand.Rand, runs, perRun, pool int) []counts.Entry {
	var es []counts.Entry
	for range runs {
		var run []counts.Entry
		for range perRun {
			k := r.IntN(pool)
			run = append(run, counts.Entry{Addr: [counts.AddrLen]byte{10: 0xff, 11: 0xff, 12: byte(k >> 16), 13: byte(k >> 8), 14: byte(k), 15: 1}, Counters: counts.Counters{Requests: 1, Bytes: uint64(k)}})
		}
		counts.SortEntries(run)
		es = append(es, run...)
	}
	return es
}

// fold against an oracle: a map of sums.
func TestFold(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ runs, per, pool int }{{0, 0, 1}, {1, 10, 5}, {7, 300, 1000}, {64, 500, 20000}, {1, 1, 1}, {3, 1000, 10}} {
		es := foldInput(r, tc.runs, tc.per, tc.pool)
		// Some unsorted tails too.
		r.Shuffle(len(es)/10, func(i, j int) { es[i], es[j] = es[j], es[i] })
		ref := map[[counts.AddrLen]byte]counts.Counters{}
		for _, e := range es {
			c := ref[e.Addr]
			c.Add(e.Counters)
			ref[e.Addr] = c
		}
		got := fold(es)
		if len(got) != len(ref) {
			t.Fatalf("%+v: %d entries, want %d", tc, len(got), len(ref))
		}
		for i, e := range got {
			if i > 0 && counts.CompareAddr(&got[i-1].Addr, &e.Addr) >= 0 {
				t.Fatalf("%+v: not sorted at %d", tc, i)
			}
			if ref[e.Addr] != e.Counters {
				t.Fatalf("%+v: %v has %+v, want %+v", tc, e.Addr, e.Counters, ref[e.Addr])
			}
		}
	}
}

func BenchmarkFold(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	es := foldInput(r, 64, 500, 20000)
	work := make([]counts.Entry, len(es))
	b.ResetTimer()
	for range b.N {
		copy(work, es)
		fold(work)
	}
}

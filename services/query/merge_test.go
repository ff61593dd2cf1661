package query

import (
	"math/rand/v2"
	"testing"

	"github.com/logtally/logtally/internal/counts"
)

func microWindows() [][]*window {
	rng := rand.New(rand.NewPCG(1, 2))
	parts := make([][]*counts.Window, 32)
	for p := range parts {
		for range 60 {
			parts[p] = append(parts[p], counts.NewWindow())
		}
	}
	for i := range 100_000 {
		var a [16]byte
		a[10], a[11], a[13], a[14], a[15] = 0xff, 0xff, byte(i>>16), byte(i>>8), byte(i)
		p := counts.Partition(a, 32)
		for range 3 {
			parts[p][rng.IntN(60)].Counts[a] += 1 + rng.Uint64N(300)
		}
	}
	out := make([][]*window, 32)
	for p := range parts {
		for _, w := range parts[p] {
			out[p] = append(out[p], newWindow(w))
		}
	}
	return out
}

// BenchmarkMerge60Windows is the CPU part of a top-10 over 60 1m windows of
// 32 partitions with 100k IPs (no NATS, no cache).
func BenchmarkMerge60Windows(b *testing.B) {
	ws := microWindows()
	b.ResetTimer()
	for range b.N {
		for _, p := range ws {
			t := newTopK(10)
			mergeEach(p, t.add)
		}
	}
}

package query

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/counts"
)

// benchTop writes 100k distinct IPs into the windows that build, then runs
// Top(n=10) over r; it reports ns/op plus p99 and the cold first query.
func benchTop(b *testing.B, r Range, build func(e *env, rng *rand.Rand, ip netip.Addr, a [16]byte) []windowAdd) {
	e := newEnv(b, 32)
	rng := rand.New(rand.NewPCG(7, 7))
	ws := map[string]map[string]*counts.Window{}
	for i := range 100_000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		a := counts.Pack(ip)
		p := counts.Partition(a, e.topo.Partitions)
		for _, add := range build(e, rng, ip, a) {
			m := ws[add.bucket]
			if m == nil {
				m = map[string]*counts.Window{}
				ws[add.bucket] = m
			}
			k := counts.Key(add.start, p)
			w := m[k]
			if w == nil {
				w = counts.NewWindow()
				m[k] = w
			}
			w.Counts[a] += add.n
		}
	}
	e.put(ws)
	ctx := context.Background()
	t0 := time.Now()
	if _, err := e.svc.Top(ctx, r, 10); err != nil {
		b.Fatal(err)
	}
	cold := time.Since(t0)
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		t := time.Now()
		res, err := e.svc.Top(ctx, r, 10)
		lat = append(lat, time.Since(t))
		if err != nil || len(res.Items) != 10 {
			b.Fatal(err, len(res.Items))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(cold.Nanoseconds()), "cold-ns")
	entries, bytes := e.svc.cache.stats()
	b.Logf("n=%d p50 %v p90 %v p99 %v max %v cold %v; cache %d windows %d bytes",
		len(lat), lat[len(lat)/2], lat[len(lat)*9/10], lat[len(lat)*99/100], lat[len(lat)-1], cold, entries, bytes)
}

type windowAdd struct {
	bucket string
	start  time.Time
	n      uint64
}

// BenchmarkTop1h100kIPs: one 1h window per partition (32 keys), 100k IPs.
func BenchmarkTop1h100kIPs(b *testing.B) {
	hour := mustTime("2026-11-24T10:00:00Z")
	benchTop(b, Range{From: hour, To: hour.Add(time.Hour)}, func(_ *env, rng *rand.Rand, _ netip.Addr, _ [16]byte) []windowAdd {
		return []windowAdd{{bucket: "logtally_counts_1h", start: hour, n: 1 + rng.Uint64N(1000)}}
	})
}

// BenchmarkTop1hOf1mWindows100kIPs: the hour 10:01–11:01 is not aligned to
// 1h, so it is read from 60 1m windows per partition (1920 keys); each of
// the 100k IPs is in 3 of them.
func BenchmarkTop1hOf1mWindows100kIPs(b *testing.B) {
	from := mustTime("2026-11-24T10:01:00Z")
	benchTop(b, Range{From: from, To: from.Add(time.Hour)}, func(_ *env, rng *rand.Rand, _ netip.Addr, _ [16]byte) []windowAdd {
		var out []windowAdd
		for range 3 {
			out = append(out, windowAdd{bucket: "logtally_counts_1m", start: from.Add(time.Duration(rng.IntN(60)) * time.Minute), n: 1 + rng.Uint64N(300)})
		}
		return out
	})
}

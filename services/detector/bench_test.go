package detector_test

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/apptest"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/windows"
)

var benchOffenders = flag.Int("detector.bench-offenders", 1_000_000, "distinct addresses over the threshold in BenchmarkFlood")

// BenchmarkFlood: -detector.bench-offenders distinct addresses, each over
// a rule's threshold, counted by the all-in-one pipeline. It reports how
// long after the counts were queryable the first decision was made
// (first-decision-s), the decisions made per second under the
// -detector.max-new-per-run budget, the time of one evaluation that scans
// every offender (eval-s), and the heap after (heap-MiB): memory must stay
// bounded by the decisions, not grow with scans.
//
//	go test -run '^$' -bench Flood -benchtime 1x ./services/detector/
func BenchmarkFlood(b *testing.B) {
	n := *benchOffenders
	for range b.N {
		rules := writeRules(b, "rules:\n  - {name: flood, key: ip, range: 5m, threshold: 1, ban: 1h}\n")
		a := apptest.Start(b, "-rules.file="+rules, "-detector.interval=1s", "-detector.max-new-per-run=1000")
		now := time.Now()
		ips := make([]string, 0, 10000)
		for i := range n {
			ips = append(ips, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String())
			if len(ips) == cap(ips) || i == n-1 {
				apptest.SendAccessLines(b, a.Ingest.TCPAddr(), now, 2, ips...)
				ips = ips[:0]
			}
		}
		ctx := context.Background()
		to := now.Truncate(time.Minute).Add(time.Minute)
		rg := windows.Range{From: to.Add(-5 * time.Minute), To: to}
		// Queryable: the totals hold every line.
		var queryable time.Time
		for {
			res, err := a.Query.Reader().Totals(ctx, rg)
			if err == nil && res.Counters.Requests == uint64(2*n) {
				queryable = time.Now()
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		for len(a.Detector.Store().Active(true)) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		first := time.Since(queryable)
		start, made0 := time.Now(), len(a.Detector.Store().Active(true))
		time.Sleep(5 * time.Second)
		rate := float64(len(a.Detector.Store().Active(true))-made0) / time.Since(start).Seconds()
		t0 := time.Now()
		keep := func(windows.PrefixCount) bool { return true }
		items, _, err := a.Query.Reader().Above(ctx, rg, windows.AboveQuery{Class: counts.Requests, Min: 1, V4Bits: 32, V6Bits: 128, Limit: n + 1}, keep)
		if err != nil || len(items) != n {
			b.Fatalf("above: %d of %d, %v", len(items), n, err)
		}
		eval := time.Since(t0)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(first.Seconds(), "first-decision-s")
		b.ReportMetric(rate, "decisions/s")
		b.ReportMetric(eval.Seconds(), "eval-s")
		b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
		fmt.Printf("%d offenders: first decision %.2fs after queryable, %.0f decisions/s, full scan %.2fs, heap %.0f MiB\n", n, first.Seconds(), rate, eval.Seconds(), float64(ms.HeapAlloc)/(1<<20))
	}
}

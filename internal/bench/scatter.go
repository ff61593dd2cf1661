package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// scattered generates adversarial timestamps: n combined-format lines, each
// at a random minute of the years before end, from random client IPs (every seventh from a small set).
// Nearly every line opens two windows (its minute's and its hour's), which
// is what bounds a partition's open windows and memory.
func scattered(n int, end time.Time, years int) ([][]byte, []time.Time) {
	rng := rand.New(rand.NewPCG(20, 20))
	minutes := int64(years) * 365 * 24 * 60
	out := make([][]byte, n)
	times := make([]time.Time, n)
	buf := make([]byte, 0, 1<<20)
	for i := range out {
		t := end.Add(-time.Duration(1+rng.Int64N(minutes)) * time.Minute)
		times[i] = t
		ip := netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(1 + rng.IntN(254))})
		if i%7 == 0 {
			ip = netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i%254)})
		}
		if cap(buf)-len(buf) < 256 {
			buf = make([]byte, 0, 1<<20)
		}
		start := len(buf)
		buf = ip.AppendTo(buf)
		buf = append(buf, " - - ["...)
		buf = t.AppendFormat(buf, "02/Jan/2006:15:04:05 -0700")
		buf = append(buf, `] "GET /x HTTP/1.1" 200 `...)
		buf = strconv.AppendInt(buf, int64(rng.IntN(5000)), 10)
		out[i] = buf[start:len(buf):len(buf)]
	}
	return out, times
}

// checkScatterDays compares the totals of n random days that hold lines
// with the count of the generated lines of each day.
func checkScatterDays(ctx context.Context, base string, times []time.Time, n int) (bool, error) {
	perDay := map[int64]uint64{}
	for _, t := range times {
		perDay[t.UTC().Truncate(24*time.Hour).Unix()]++
	}
	days := make([]int64, 0, len(perDay))
	today := time.Now().UTC().Truncate(24 * time.Hour).Unix()
	for d := range perDay {
		if d < today-86400 { // the latency probes count at the receive time
			days = append(days, d)
		}
	}
	slices.Sort(days)
	rng := rand.New(rand.NewPCG(3, 3))
	for range n {
		d := days[rng.IntN(len(days))]
		from := time.Unix(d, 0).UTC()
		var tot totals
		q := base + "/api/v1/totals?from=" + from.Format(time.RFC3339) + "&to=" + from.Add(24*time.Hour).Format(time.RFC3339)
		if err := getJSON(ctx, q, &tot); err != nil {
			return false, err
		}
		if tot.Requests != perDay[d] {
			return false, fmt.Errorf("bench: %s holds %d requests, %d lines were sent for it", from.Format(time.DateOnly), tot.Requests, perDay[d])
		}
	}
	return true, nil
}

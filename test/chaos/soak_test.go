package chaos

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSoak streams a steady load for LOGTALLY_SOAK (e.g. 10m), samples every
// process's RSS and goroutines every 10s, and fails if either grows between
// the first and the last third of the run by more than a set bound; the
// counts must be exact at the end.
func TestSoak(t *testing.T) {
	v := os.Getenv("LOGTALLY_SOAK")
	if v == "" {
		t.Skip("set LOGTALLY_SOAK=10m to run the soak test")
	}
	dur, err := time.ParseDuration(v)
	if err != nil || dur < time.Minute {
		t.Fatalf("LOGTALLY_SOAK=%q: want a duration of at least 1m", v)
	}
	e := newEnv(t, 2, 2)
	rate := 5000
	w := NewWorkload(10, rate*int(dur/time.Second), 5000, e.from)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tcp := SendTCP(ctx, "tcp", e.ingest.TCPAddr, w, rate)
	m := NewMonitor(e.queryBase, e.from, e.to, tcp)

	type point struct{ rss, gor float64 }
	stages := e.stages()
	var rows [][]point
	var table strings.Builder
	fmt.Fprintf(&table, "%8s", "t")
	for _, s := range stages {
		fmt.Fprintf(&table, " %18s", s.Name+" MiB/gor")
	}
	table.WriteString("\n")
	t0 := time.Now()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-tcp.Done():
			done = true
		case <-tick.C:
		}
		row := make([]point, len(stages))
		fmt.Fprintf(&table, "%8s", time.Since(t0).Round(time.Second))
		for i, s := range stages {
			rss, _ := s.RSS()
			g, _ := s.Metric("go_goroutines")
			row[i] = point{float64(rss) / (1 << 20), g}
			fmt.Fprintf(&table, " %18s", fmt.Sprintf("%.1f/%.0f", row[i].rss, g))
		}
		table.WriteString("\n")
		rows = append(rows, row)
		e.checkAlive()
	}
	t.Logf("RSS (MiB) and goroutines every 10s:\n%s", table.String())
	e.finish(m, w.Ref, tcp)

	if len(rows) < 6 {
		t.Fatalf("only %d samples", len(rows))
	}
	third := len(rows) / 3
	mean := func(rs [][]point, i int) point {
		var p point
		for _, r := range rs {
			p.rss += r[i].rss
			p.gor += r[i].gor
		}
		return point{p.rss / float64(len(rs)), p.gor / float64(len(rs))}
	}
	for i, s := range stages {
		a, b := mean(rows[:third], i), mean(rows[len(rows)-third:], i)
		t.Logf("%-8s RSS %.1f -> %.1f MiB, goroutines %.0f -> %.0f (first third -> last third)", s.Name, a.rss, b.rss, a.gor, b.gor)
		if b.rss > a.rss*1.5+32 {
			t.Errorf("%s: RSS grew from %.1f to %.1f MiB", s.Name, a.rss, b.rss)
		}
		if b.gor > a.gor*1.2+20 {
			t.Errorf("%s: goroutines grew from %.0f to %.0f", s.Name, a.gor, b.gor)
		}
	}
}

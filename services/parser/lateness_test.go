package parser

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
)

// A log of 2026 then one of 2015 on the same source: every line of the
// second is measured as about eleven years behind the source's progress,
// and the first's lines, in time order, as on time. Another source has
// its own progress.
func TestLatenessIsMeasuredPerSource(t *testing.T) {
	pl := startParser(t, 2)
	batch := func(source string, from time.Time, n int) []byte {
		rb := &logtallyv1.RawBatch{Source: source, ReceivedUnixMs: time.Now().UnixMilli()}
		for i := range n {
			ts := from.Add(time.Duration(i) * time.Second).Format("02/Jan/2006:15:04:05 -0700")
			rb.Lines = append(rb.Lines, fmt.Appendf(nil, `192.0.2.%d - - [%s] "GET / HTTP/1.1" 200 5`, i%200, ts))
		}
		data, err := proto.Marshal(rb)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	pl.publishRaw(t, "replay", batch("replay", time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC), 300))
	pl.waitParsed(t)
	pl.publishRaw(t, "replay", batch("replay", time.Date(2015, 5, 17, 10, 0, 0, 0, time.UTC), 200))
	pl.publishRaw(t, "tcp", batch("tcp", time.Date(2015, 5, 17, 10, 0, 0, 0, time.UTC), 100))
	pl.waitParsed(t)

	want := `
# HELP logtally_parser_event_lateness_seconds How far behind the largest event time already parsed from the same source a record arrived (0 for the newest). A measurement: no record is refused for its age.
# TYPE logtally_parser_event_lateness_seconds histogram
logtally_parser_event_lateness_seconds_bucket{source="replay",le="1"} 300
logtally_parser_event_lateness_seconds_bucket{source="replay",le="10"} 300
logtally_parser_event_lateness_seconds_bucket{source="replay",le="60"} 300
logtally_parser_event_lateness_seconds_bucket{source="replay",le="600"} 300
logtally_parser_event_lateness_seconds_bucket{source="replay",le="3600"} 300
logtally_parser_event_lateness_seconds_bucket{source="replay",le="21600"} 300
logtally_parser_event_lateness_seconds_bucket{source="replay",le="86400"} 300
logtally_parser_event_lateness_seconds_bucket{source="replay",le="604800"} 300
logtally_parser_event_lateness_seconds_bucket{source="replay",le="2.592e+06"} 300
logtally_parser_event_lateness_seconds_bucket{source="replay",le="3.1536e+07"} 300
logtally_parser_event_lateness_seconds_bucket{source="replay",le="+Inf"} 500
logtally_parser_event_lateness_seconds_bucket{source="tcp",le="1"} 100
logtally_parser_event_lateness_seconds_bucket{source="tcp",le="10"} 100
logtally_parser_event_lateness_seconds_bucket{source="tcp",le="60"} 100
logtally_parser_event_lateness_seconds_bucket{source="tcp",le="600"} 100
logtally_parser_event_lateness_seconds_bucket{source="tcp",le="3600"} 100
logtally_parser_event_lateness_seconds_bucket{source="tcp",le="21600"} 100
logtally_parser_event_lateness_seconds_bucket{source="tcp",le="86400"} 100
logtally_parser_event_lateness_seconds_bucket{source="tcp",le="604800"} 100
logtally_parser_event_lateness_seconds_bucket{source="tcp",le="2.592e+06"} 100
logtally_parser_event_lateness_seconds_bucket{source="tcp",le="3.1536e+07"} 100
logtally_parser_event_lateness_seconds_bucket{source="tcp",le="+Inf"} 100
`
	err := testutil.GatherAndCompare(pl.reg, strings.NewReader(want+sumAndCount(pl, "replay")+sumAndCount(pl, "tcp")), "logtally_parser_event_lateness_seconds")
	if err != nil {
		t.Fatal(err)
	}
	// The 2015 lines are each behind 2026-11-30 10:04:59 by that minus
	// their own time: the sum is exact.
	progress := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC).Add(299 * time.Second)
	var wantSum float64
	for i := range 200 {
		wantSum += progress.Sub(time.Date(2015, 5, 17, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)).Seconds()
	}
	if got := snapshot(pl.svc.lag, "replay").sumMS / 1000; got != wantSum {
		t.Fatalf("lateness sum %v s, want %v s", got, wantSum)
	}
}

// sumAndCount renders the _sum and _count lines of source as collected,
// so that the comparison above checks the buckets; the sum is checked
// against its own oracle.
func sumAndCount(pl *pipeline, source string) string {
	s := snapshot(pl.svc.lag, source)
	return fmt.Sprintf("logtally_parser_event_lateness_seconds_sum{source=%q} %v\nlogtally_parser_event_lateness_seconds_count{source=%q} %d\n",
		source, s.sumMS/1000, source, s.count)
}

func snapshot(l *lateness, source string) lagStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return *l.srcs[source]
}

func TestLatenessSourcesAreBounded(t *testing.T) {
	l := newLateness()
	for i := range maxLatenessSources + 10 {
		src := fmt.Sprintf("s%d", i)
		st := l.start(src)
		st.observe(int64(i))
		l.add(src, &st)
	}
	if len(l.srcs) != maxLatenessSources+1 {
		t.Fatalf("%d sources tracked, want %d (the bound plus other)", len(l.srcs), maxLatenessSources+1)
	}
	if got := l.srcs["other"].count; got != 10 {
		t.Fatalf("other holds %d records, want 10", got)
	}
	if n := testutil.CollectAndCount(l); n != maxLatenessSources+1 {
		t.Fatalf("%d series collected, want %d", n, maxLatenessSources+1)
	}
}

package parser

import (
	"math"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Lateness is a measurement, never a reason to refuse a record: the
// aggregator counts every record in its own windows whatever its age
// (docs/design.md, event time). What operators want to know is how far
// behind its source's progress a record arrived: a shipper delivering a
// backlog, parsers reordering batches, two files of different eras on one
// connection. Progress is the largest event time this parser process has
// parsed from the source (the raw subject's source token); with several
// parser replicas each measures against its own view.

// latenessBounds are the histogram's upper bounds in seconds: on time
// (≤ 1 s) to more than a year behind.
var latenessBounds = []float64{1, 10, 60, 600, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400}

// maxLatenessSources bounds the label values: sources come from listeners
// and from ?source= of the HTTP ingest, so their number is up to senders.
// Sources past the bound share the label "other".
const maxLatenessSources = 256

// lagStats is what one batch contributes to one source's histogram.
type lagStats struct {
	progress int64 // largest event time, unix ms
	buckets  [11]uint64
	sumMS    float64
	count    uint64
}

// observe adds a record of event time ms to the stats, moving the
// progress forward when the record is the newest.
func (l *lagStats) observe(ms int64) {
	l.count++
	if ms >= l.progress {
		l.progress = ms
		l.buckets[0]++
		return
	}
	behind := l.progress - ms
	l.sumMS += float64(behind)
	i := sort.SearchFloat64s(latenessBounds, float64(behind)/1000)
	l.buckets[i]++
}

// lateness holds the per-source histograms and exports them.
type lateness struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	srcs map[string]*lagStats
}

func newLateness() *lateness {
	return &lateness{
		desc: prometheus.NewDesc("logtally_parser_event_lateness_seconds",
			"How far behind the largest event time already parsed from the same source a record arrived (0 for the newest). A measurement: no record is refused for its age.",
			[]string{"source"}, nil),
		srcs: map[string]*lagStats{},
	}
}

// start returns the stats to fill for one batch of source, starting at the
// source's progress. A nil lateness measures nothing.
func (l *lateness) start(source string) lagStats {
	if l == nil {
		return lagStats{progress: math.MinInt64}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.srcs[source]; s != nil {
		return lagStats{progress: s.progress}
	}
	if s := l.srcs["other"]; s != nil && len(l.srcs) >= maxLatenessSources {
		return lagStats{progress: s.progress}
	}
	return lagStats{progress: math.MinInt64}
}

// add merges a batch's stats into its source's.
func (l *lateness) add(source string, b *lagStats) {
	if l == nil || b.count == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.srcs[source]
	if s == nil {
		if len(l.srcs) >= maxLatenessSources {
			source = "other"
			s = l.srcs[source]
		}
		if s == nil {
			s = &lagStats{progress: b.progress}
			l.srcs[source] = s
		}
	}
	s.progress = max(s.progress, b.progress)
	for i, n := range b.buckets {
		s.buckets[i] += n
	}
	s.sumMS += b.sumMS
	s.count += b.count
}

func (l *lateness) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l *lateness) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for src, s := range l.srcs {
		cum := make(map[float64]uint64, len(latenessBounds))
		var n uint64
		for i, ub := range latenessBounds {
			n += s.buckets[i]
			cum[ub] = n
		}
		ch <- prometheus.MustNewConstHistogram(l.desc, s.count, s.sumMS/1000, cum, src)
	}
}

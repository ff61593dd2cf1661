package parser

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	batches      prometheus.Counter
	lines        prometheus.Counter
	records      prometheus.Counter
	groups       prometheus.Counter
	deadLetters  *prometheus.CounterVec
	published    prometheus.Counter
	publishFails prometheus.Counter
	namesWritten prometheus.Counter
	uaUnparsed   prometheus.Counter
	badBatches   prometheus.Counter
	batchSeconds prometheus.Histogram
	pending      prometheus.Gauge
	ackPending   prometheus.Gauge
}

func newMetrics(r prometheus.Registerer) *metrics {
	f := promauto.With(r)
	return &metrics{
		batches:      f.NewCounter(prometheus.CounterOpts{Name: "logtally_parser_batches_total", Help: "Raw batches parsed and acknowledged."}),
		lines:        f.NewCounter(prometheus.CounterOpts{Name: "logtally_parser_lines_total", Help: "Lines read from raw batches."}),
		records:      f.NewCounter(prometheus.CounterOpts{Name: "logtally_parser_records_total", Help: "Lines counted into record batches on logs.parsed (lines read minus dead letters)."}),
		groups:       f.NewCounter(prometheus.CounterOpts{Name: "logtally_parser_groups_total", Help: "(minute, client IP) groups published; records / groups is how much the combiner saves."}),
		deadLetters:  f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_parser_dead_letters_total", Help: "Lines rejected to the dead-letter stream, by reason."}, []string{"reason"}),
		published:    f.NewCounter(prometheus.CounterOpts{Name: "logtally_parser_messages_published_total", Help: "Record batch messages published: one per raw batch and partition."}),
		namesWritten: f.NewCounter(prometheus.CounterOpts{Name: "logtally_parser_dim_names_written_total", Help: "Texts of hashed field values (long paths, hosts, user agents) written to the names bucket."}),
		uaUnparsed:   f.NewCounter(prometheus.CounterOpts{Name: "logtally_parser_ua_unparsed_total", Help: "Lines whose user agent was not classified because their raw batch had more distinct user agents than -parser.dims.ua-per-batch; they count as family Unparsed."}),
		publishFails: f.NewCounter(prometheus.CounterOpts{Name: "logtally_parser_publish_failures_total", Help: "Raw batches whose output could not be published; they are delivered again."}),
		badBatches:   f.NewCounter(prometheus.CounterOpts{Name: "logtally_parser_bad_batches_total", Help: "Raw messages that were not a RawBatch; kept whole as a dead letter."}),
		pending:      f.NewGauge(prometheus.GaugeOpts{Name: "logtally_parser_consumer_pending", Help: "Raw batches not yet delivered to any parser (consumer lag of LOGTALLY_RAW/parser)."}),
		ackPending:   f.NewGauge(prometheus.GaugeOpts{Name: "logtally_parser_consumer_ack_pending", Help: "Raw batches delivered to parsers and not yet acknowledged."}),
		batchSeconds: f.NewHistogram(prometheus.HistogramOpts{Name: "logtally_parser_batch_seconds", Help: "Time to parse a raw batch and publish its output.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
}

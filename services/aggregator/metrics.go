package aggregator

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	records      prometheus.Counter
	skipped      prometheus.Counter
	duplicates   prometheus.Counter
	late         prometheus.Counter
	badBatches   prometheus.Counter
	windowWrites prometheus.Counter
	flushes      prometheus.Counter
	flushSeconds prometheus.Histogram
	fenced       prometheus.Counter
	restarts     prometheus.Counter
	flushRetries prometheus.Counter
	owned        *prometheus.GaugeVec
	pending      *prometheus.GaugeVec
	watermark    *prometheus.GaugeVec
	members      prometheus.Gauge
	rebalances   prometheus.Counter
}

func newMetrics(r prometheus.Registerer) *metrics {
	f := promauto.With(r)
	return &metrics{
		records:      f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_records_total", Help: "Records counted into windows."}),
		skipped:      f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_replayed_records_skipped_total", Help: "Records of replayed messages skipped because their window already holds them."}),
		duplicates:   f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_duplicate_messages_total", Help: "Messages delivered again at or below the applied position."}),
		late:         f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_late_records_total", Help: "Records older than the watermark minus the allowed lateness, sent to the late subject."}),
		badBatches:   f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_bad_batches_total", Help: "Record batches that could not be decoded and were skipped."}),
		windowWrites: f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_window_writes_total", Help: "Window values written to KV."}),
		flushes:      f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_flushes_total", Help: "Completed flushes (windows and checkpoint written)."}),
		flushSeconds: f.NewHistogram(prometheus.HistogramOpts{Name: "logtally_aggregator_flush_seconds", Help: "Time to write a partition's dirty windows and checkpoint.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		fenced:       f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_fenced_total", Help: "Flushes refused because another owner wrote the state (compare-and-swap lost)."}),
		restarts:     f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_partition_restarts_total", Help: "Partition sessions restarted from the checkpoint after an error."}),
		flushRetries: f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_flush_retries_total", Help: "Flushes that failed transiently (timeout, lost connection) and were tried again with the state kept in memory."}),
		owned:        f.NewGaugeVec(prometheus.GaugeOpts{Name: "logtally_aggregator_partition_owned", Help: "1 for each partition this instance owns.", ConstLabels: nil}, []string{"partition", "owner"}),
		pending:      f.NewGaugeVec(prometheus.GaugeOpts{Name: "logtally_aggregator_consumer_pending", Help: "Messages of the partition not yet delivered to this owner."}, []string{"partition"}),
		watermark:    f.NewGaugeVec(prometheus.GaugeOpts{Name: "logtally_aggregator_watermark_seconds", Help: "Event-time watermark of the partition at its last checkpoint."}, []string{"partition"}),
		members:      f.NewGauge(prometheus.GaugeOpts{Name: "logtally_aggregator_members", Help: "Live aggregator instances seen by this one."}),
		rebalances:   f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_ownership_changes_total", Help: "Partitions claimed or released by this instance."}),
	}
}

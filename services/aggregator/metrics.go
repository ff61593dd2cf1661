package aggregator

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	increments     prometheus.Counter
	records        prometheus.Counter
	skipped        prometheus.Counter
	dimsCut        prometheus.Counter
	dimsCutValues  prometheus.Counter
	dimsCutSkipped prometheus.Counter
	duplicates     prometheus.Counter
	dupBatches     prometheus.Counter
	lostBatches    prometheus.Counter
	badBatches     prometheus.Counter
	windowWrites   *prometheus.CounterVec
	kvBytes        *prometheus.CounterVec
	readBytes      prometheus.Counter
	earlyFlushes   prometheus.Counter
	openWindows    prometheus.Gauge
	pendingEntries prometheus.Gauge
	flushes        prometheus.Counter
	flushSeconds   prometheus.Histogram
	fenced         prometheus.Counter
	restarts       prometheus.Counter
	flushRetries   prometheus.Counter
	owned          *prometheus.GaugeVec
	pending        *prometheus.GaugeVec
	watermark      *prometheus.GaugeVec
	members        prometheus.Gauge
	rebalances     prometheus.Counter
}

func newMetrics(r prometheus.Registerer) *metrics {
	f := promauto.With(r)
	return &metrics{
		increments:     f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_increments_total", Help: "(window, IP) counter updates applied: one per group of a record batch and resolution."}),
		records:        f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_records_total", Help: "Lines (requests) counted into windows: the pipeline's lines out."}),
		dimsCut:        f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_dims_windows_cut_total", Help: "Closed field windows cut to their top values per field (-aggregator.dims.top-k)."}),
		dimsCutValues:  f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_dims_values_folded_total", Help: "Field values folded into their field's other entry when closed windows were cut."}),
		dimsCutSkipped: f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_dims_cuts_skipped_total", Help: "Evicted field windows left uncut because the partition already remembered 4096 to cut."}),
		skipped:        f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_replayed_records_skipped_total", Help: "Requests of replayed messages skipped because their window already holds them."}),
		duplicates:     f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_duplicate_messages_total", Help: "Messages delivered again at or below the applied position."}),
		dupBatches:     f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_duplicate_batches_total", Help: "Record batches of a raw batch already applied (republished after the duplicate window), skipped."}),
		lostBatches:    f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_lost_batches_total", Help: "Record batches found missing: their raw batch left the streams (retention, limits) before this partition counted it."}),
		badBatches:     f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_bad_batches_total", Help: "Record batches that could not be decoded and were skipped."}),
		windowWrites:   f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_aggregator_window_writes_total", Help: "Window commits by kind: inline (the manifest alone), spill (a new run), merge (two runs merged), full (a new base)."}, []string{"kind"}),
		kvBytes:        f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_aggregator_kv_bytes_written_total", Help: "Bytes of values written to KV, by kind: manifest, chunk (runs and heads), checkpoint."}, []string{"kind"}),
		readBytes:      f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_kv_bytes_read_total", Help: "Approximate bytes of runs read back from KV to merge them."}),
		earlyFlushes:   f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_early_flushes_total", Help: "Flushes started before the interval because -aggregator.max-pending-entries was reached."}),
		openWindows:    f.NewGauge(prometheus.GaugeOpts{Name: "logtally_aggregator_open_windows", Help: "Windows held in memory (manifest and pending changes) by this instance."}),
		pendingEntries: f.NewGauge(prometheus.GaugeOpts{Name: "logtally_aggregator_pending_entries", Help: "(window, IP) entries changed in memory and not yet committed."}),
		flushes:        f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_flushes_total", Help: "Completed flushes (windows and checkpoint written)."}),
		flushSeconds:   f.NewHistogram(prometheus.HistogramOpts{Name: "logtally_aggregator_flush_seconds", Help: "Time to write a partition's dirty windows and checkpoint.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		fenced:         f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_fenced_total", Help: "Flushes refused because another owner wrote the state (compare-and-swap lost)."}),
		restarts:       f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_partition_restarts_total", Help: "Partition sessions restarted from the checkpoint after an error."}),
		flushRetries:   f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_flush_retries_total", Help: "Flushes that failed transiently (timeout, lost connection) and were tried again with the state kept in memory."}),
		owned:          f.NewGaugeVec(prometheus.GaugeOpts{Name: "logtally_aggregator_partition_owned", Help: "1 for each partition this instance owns.", ConstLabels: nil}, []string{"partition", "owner"}),
		pending:        f.NewGaugeVec(prometheus.GaugeOpts{Name: "logtally_aggregator_consumer_pending", Help: "Messages of the partition not yet delivered to this owner."}, []string{"partition"}),
		watermark:      f.NewGaugeVec(prometheus.GaugeOpts{Name: "logtally_aggregator_watermark_seconds", Help: "Event-time watermark of the partition at its last checkpoint."}, []string{"partition"}),
		members:        f.NewGauge(prometheus.GaugeOpts{Name: "logtally_aggregator_members", Help: "Live aggregator instances seen by this one."}),
		rebalances:     f.NewCounter(prometheus.CounterOpts{Name: "logtally_aggregator_ownership_changes_total", Help: "Partitions claimed or released by this instance."}),
	}
}

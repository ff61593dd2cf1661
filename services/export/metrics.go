package export

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	lag      *prometheus.GaugeVec
	pending  *prometheus.GaugeVec
	windows  *prometheus.CounterVec
	rows     *prometheus.CounterVec
	failures *prometheus.CounterVec
	files    *prometheus.CounterVec
	skipped  prometheus.Counter
	clamped  prometheus.Counter
	unknown  prometheus.Counter
}

func newMetrics(r prometheus.Registerer) *metrics {
	f := promauto.With(r)
	return &metrics{
		lag: f.NewGaugeVec(prometheus.GaugeOpts{Name: "logtally_export_lag_seconds",
			Help: "Age of the oldest window change a sink has not written yet (0: caught up), by sink (postgres, parquet). For Parquet a change counts from when its hour closes (-export.parquet.close-after)."}, []string{"sink"}),
		pending: f.NewGaugeVec(prometheus.GaugeOpts{Name: "logtally_export_pending",
			Help: "Windows (postgres) or hour files (parquet) changed and not yet written, by sink."}, []string{"sink"}),
		windows: f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_export_windows_total",
			Help: "Window revisions written, by sink and dataset (ip, dims); a redelivered revision is not counted twice."}, []string{"sink", "dataset"}),
		rows: f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_export_rows_total",
			Help: "Rows sent to a sink (upserted or written), by sink and table."}, []string{"sink", "table"}),
		failures: f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_export_failures_total",
			Help: "Failed writes by sink; the window or file is retried with backoff until it is written."}, []string{"sink"}),
		files: f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_export_parquet_files_total",
			Help: "Parquet files written, by kind: new (first write of an hour), rewrite (a window of a closed hour changed)."}, []string{"kind"}),
		skipped: f.NewCounter(prometheus.CounterOpts{Name: "logtally_export_parquet_skipped_total",
			Help: "Hour files not rewritten after a change because some of their windows had already expired from NATS: the file keeps its older counts (PostgreSQL has the new ones)."}),
		clamped: f.NewCounter(prometheus.CounterOpts{Name: "logtally_export_clamped_total",
			Help: "Counters above the largest signed 64-bit integer (a forged byte count) written as 9223372036854775807."}),
		unknown: f.NewCounter(prometheus.CounterOpts{Name: "logtally_export_unknown_names_total",
			Help: "Hashed field values whose text was not in the names bucket, written as #<key>."}),
	}
}

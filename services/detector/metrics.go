package detector

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	decisions      *prometheus.CounterVec
	evalSeconds    prometheus.Histogram
	lastEval       prometheus.Gauge
	lag            prometheus.Gauge
	truncated      *prometheus.CounterVec
	rateLimited    *prometheus.CounterVec
	failures       prometheus.Counter
	webhook        *prometheus.CounterVec
	outputFailures *prometheus.CounterVec
	auditFailures  prometheus.Counter
}

func newMetrics(r prometheus.Registerer) *metrics {
	f := promauto.With(r)
	return &metrics{
		decisions: f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_detector_decisions_total",
			Help: "Keys over a rule's threshold, by rule and outcome: new (a decision), simulated (recorded, not served), active (another replica made it first), allowed (overlaps the allow list; counted per evaluation)."}, []string{"rule", "outcome"}),
		evalSeconds:    f.NewHistogram(prometheus.HistogramOpts{Name: "logtally_detector_evaluation_seconds", Help: "Time to evaluate every rule once.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		lastEval:       f.NewGauge(prometheus.GaugeOpts{Name: "logtally_detector_last_evaluation_timestamp_seconds", Help: "When the rules were last evaluated completely."}),
		lag:            f.NewGauge(prometheus.GaugeOpts{Name: "logtally_detector_evaluation_lag_seconds", Help: "Time since the start of the last complete evaluation: the interval plus the evaluation's own time when healthy."}),
		truncated:      f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_detector_offenders_truncated_total", Help: "Evaluations of a rule that found more keys over its threshold than -detector.max-offenders."}, []string{"rule"}),
		rateLimited:    f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_detector_rate_limited_total", Help: "Evaluations of a rule that left keys over its threshold for the next evaluation because -detector.max-new-per-run decisions were made."}, []string{"rule"}),
		webhook:        f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_detector_webhook_total", Help: "Webhook deliveries of new decisions by result: ok, retry, failed (gave up after 10 attempts), dropped (queue full)."}, []string{"result"}),
		outputFailures: f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_detector_output_failures_total", Help: "Failed writes of a file output (nginx)."}, []string{"output"}),
		auditFailures:  f.NewCounter(prometheus.CounterOpts{Name: "logtally_detector_audit_failures_total", Help: "Failed writes of a decision event to the audit stream (retried until they succeed)."}),
		failures:       f.NewCounter(prometheus.CounterOpts{Name: "logtally_detector_evaluation_failures_total", Help: "Rule evaluations that failed (a query or a KV write); the next evaluation tries again."}),
	}
}

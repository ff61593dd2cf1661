package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	lines           *prometheus.CounterVec
	bytes           *prometheus.CounterVec
	batches         *prometheus.CounterVec
	oversized       *prometheus.CounterVec
	empty           *prometheus.CounterVec
	publishErrors   prometheus.Counter
	publishRetries  prometheus.Counter
	pastDedup       prometheus.Counter
	compressedBytes prometheus.Counter
	duplicates      prometheus.Counter
	batchLines      prometheus.Histogram
	publishLatency  prometheus.Histogram
	udpDropped      *prometheus.CounterVec
	udpRcvbuf       prometheus.Gauge
	connsRejected   *prometheus.CounterVec
	openConns       *prometheus.GaugeVec
	idleClosed      *prometheus.CounterVec
	lostOnShutdown  prometheus.Counter
	httpRequests    *prometheus.CounterVec
	framingErrors   *prometheus.CounterVec
	batchesInFlight prometheus.Gauge
	backpressure    prometheus.Counter

	jsonObjects        prometheus.Counter
	jsonWithoutMessage prometheus.Counter
	otlpRequests       *prometheus.CounterVec
	otlpRecords        prometheus.Counter
	otlpRejected       *prometheus.CounterVec
	otlpOverrides      *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer) *metrics {
	f := promauto.With(r)
	return &metrics{
		lines:           f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_ingest_lines_total", Help: "Lines received and handed to a batch (empty lines included, oversized lines not), by source."}, []string{"source"}),
		bytes:           f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_ingest_bytes_total", Help: "Bytes of received lines without terminators (full length of oversized lines included), by source."}, []string{"source"}),
		batches:         f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_ingest_batches_published_total", Help: "Raw batches acknowledged by JetStream, by source."}, []string{"source"}),
		oversized:       f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_ingest_oversized_lines_total", Help: "Lines longer than -ingest.max-line-bytes, sent as prefix and length, by source."}, []string{"source"}),
		empty:           f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_ingest_empty_lines_total", Help: "Empty lines forwarded as empty entries (the parser dead-letters them; included in lines_total), by source."}, []string{"source"}),
		publishErrors:   f.NewCounter(prometheus.CounterOpts{Name: "logtally_ingest_publish_errors_total", Help: "Failed publish attempts of raw batches (each is retried)."}),
		publishRetries:  f.NewCounter(prometheus.CounterOpts{Name: "logtally_ingest_publish_retries_total", Help: "Publish attempts repeated with the same Nats-Msg-Id."}),
		pastDedup:       f.NewCounter(prometheus.CounterOpts{Name: "logtally_ingest_retries_past_dedup_window_total", Help: "Batches still being retried longer than the raw stream's duplicate window after their first attempt: if an unacknowledged earlier attempt was stored, this one is stored again (raise -nats.duplicate-window for longer outages)."}),
		compressedBytes: f.NewCounter(prometheus.CounterOpts{Name: "logtally_ingest_compressed_bytes_total", Help: "Bytes of raw batches as published after S2 compression (-ingest.compress); compare with logtally_ingest_bytes_total."}),
		duplicates:      f.NewCounter(prometheus.CounterOpts{Name: "logtally_ingest_publish_duplicates_total", Help: "Batches JetStream acknowledged as duplicates: an earlier attempt was stored but its ack was lost, or an HTTP request with an Idempotency-Key was sent again."}),
		batchLines:      f.NewHistogram(prometheus.HistogramOpts{Name: "logtally_ingest_batch_lines", Help: "Lines per published raw batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		publishLatency:  f.NewHistogram(prometheus.HistogramOpts{Name: "logtally_ingest_publish_latency_seconds", Help: "Time from publishing a raw batch to its JetStream ack (successful attempts).", Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16)}),
		udpDropped:      f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_ingest_udp_dropped_total", Help: "Syslog UDP datagrams that did not become lines, by reason: no_batch_slot (every batch slot was in flight), kernel_rcvbuf (dropped by the kernel, normally at a full receive buffer; Linux SO_RXQ_OVFL, counted when the next datagram arrives)."}, []string{"reason"}),
		udpRcvbuf:       f.NewGauge(prometheus.GaugeOpts{Name: "logtally_ingest_syslog_udp_rcvbuf_bytes", Help: "Receive buffer of the syslog UDP socket as the kernel reports it (SO_RCVBUF; on Linux twice -ingest.syslog.udp-rcvbuf, capped at twice net.core.rmem_max)."}),
		connsRejected:   f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_ingest_connections_rejected_total", Help: "TCP connections refused, by listener and reason: per_peer (closed with a reset before reading, as the peer address had -ingest.tcp.max-conns-per-peer open). At -ingest.max-connections nothing is refused: the listener stops accepting."}, []string{"listener", "reason"}),
		idleClosed:      f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_ingest_connections_idle_closed_total", Help: "TCP connections closed by -ingest.tcp.idle-timeout (the peer sent nothing for that long); what they had sent was kept, as at a close by the peer."}, []string{"listener"}),
		openConns:       f.NewGaugeVec(prometheus.GaugeOpts{Name: "logtally_ingest_open_connections", Help: "Open TCP connections, by listener."}, []string{"listener"}),
		lostOnShutdown:  f.NewCounter(prometheus.CounterOpts{Name: "logtally_ingest_lines_lost_on_shutdown_total", Help: "Lines whose batch was not acknowledged before the stop deadline."}),
		httpRequests:    f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_ingest_http_requests_total", Help: "HTTP ingest requests, by status code."}, []string{"code"}),
		framingErrors:   f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_ingest_syslog_framing_errors_total", Help: "Syslog TCP framing errors, by reason: bad_octet_count (a frame without a valid octet count; the rest of the connection is read as newline-delimited), truncated_frame (a frame cut short by the end of its connection; forwarded as what arrived, dead-lettered)."}, []string{"reason"}),
		batchesInFlight: f.NewGauge(prometheus.GaugeOpts{Name: "logtally_ingest_batches_in_flight", Help: "Raw batches published and not yet acknowledged."}),
		backpressure:    f.NewCounter(prometheus.CounterOpts{Name: "logtally_ingest_backpressure_seconds_total", Help: "Time TCP readers spent waiting for a free batch slot (backpressure)."}),

		jsonObjects:        f.NewCounter(prometheus.CounterOpts{Name: "logtally_ingest_json_objects_total", Help: "JSON objects read from application/x-ndjson and application/json ingest bodies (each one line of logtally_ingest_lines_total)."}),
		jsonWithoutMessage: f.NewCounter(prometheus.CounterOpts{Name: "logtally_ingest_json_without_message_total", Help: "JSON objects of ingest bodies without any -ingest.http.message-field; each was forwarded whole as its line."}),
		otlpRequests:       f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_ingest_otlp_requests_total", Help: "OTLP/HTTP POST /v1/logs requests, by status code and encoding (protobuf, json)."}, []string{"code", "encoding"}),
		otlpRecords:        f.NewCounter(prometheus.CounterOpts{Name: "logtally_ingest_otlp_log_records_total", Help: "OTLP log records accepted and stored as lines (acknowledged by JetStream)."}),
		otlpRejected:       f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_ingest_otlp_rejected_log_records_total", Help: "OTLP log records rejected (answered in partial_success.rejected_log_records), by reason."}, []string{"reason"}),
		otlpOverrides:      f.NewCounterVec(prometheus.CounterOpts{Name: "logtally_ingest_otlp_overrides_total", Help: "OTLP log records whose attributes or fields set the client address (kind address) or the event time (kind time) of their line."}, []string{"kind"}),
	}
}

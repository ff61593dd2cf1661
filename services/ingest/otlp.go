package ingest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// OTLPLogsPath is the OTLP/HTTP logs endpoint (the default path of the
// OpenTelemetry collector's otlphttp exporter and of the SDK exporters).
const OTLPLogsPath = "/v1/logs"

// SourceOTLP is the source of OTLP log records: their raw subject is
// logs.raw.otlp unless ?source= names another.
const SourceOTLP = "otlp"

// Attribute keys that name a log record's client address, tried in this
// order on the record's attributes and then on its resource's. The first
// whose value is a string holding an IP address (optionally with a port)
// wins; other values (a domain name, a socket path) are skipped.
// client.address and source.address are the current semantic conventions;
// net.peer.ip and http.client_ip the older ones that senders still emit.
var otlpAddrKeys = []string{"client.address", "source.address", "net.peer.ip", "http.client_ip"}

const (
	otlpProtobuf = "application/x-protobuf"
	otlpJSON     = "application/json"
)

// handleOTLPLogs serves POST /v1/logs: OTLP/HTTP logs, an
// ExportLogsServiceRequest in binary protobuf (Content-Type
// application/x-protobuf) or in the OTLP JSON encoding (application/json),
// optionally gzip-compressed. Every log record becomes one line:
//
//   - the line is the record's body: a string as it is; bytes as they are
//     if they are UTF-8 text; an integer, double or boolean as its text; a
//     map (kvlist) or array as compact JSON, which the parser reads as a
//     JSON log line. A record without a body, with an empty body or with
//     binary bytes is rejected: it is reported in partial_success and
//     counted in logtally_ingest_otlp_rejected_log_records_total{reason};
//   - its client address is the first of otlpAddrKeys found on the record,
//     then on its resource: it wins over the IP in the line, and a line
//     with one counts even when its text holds no IP (services/parser,
//     parseLine);
//   - its time is time_unix_nano when set, which wins over a timestamp in
//     the body; else the body's own timestamp; else observed_time_unix_nano;
//     else the receive time. (The collector's filelog receiver sets only the
//     observed time unless a time parser is configured: a replayed old file
//     still counts at its own timestamps.)
//
// The answer comes after JetStream acknowledged every batch of the
// request, in the request's encoding: 200 with an ExportLogsServiceResponse
// (partial_success set when records were rejected), 400 for a body that is
// not a valid request, 413 over -ingest.http.max-body-bytes, 415 for
// another Content-Type or Content-Encoding, 429 with Retry-After when
// -ingest.http.max-concurrent requests are being served and 503 with
// Retry-After when ingest is stopping or JetStream did not acknowledge in
// time (OTLP clients retry 429 and 503, and never 400 or a partial
// success). Error bodies are google.rpc.Status messages. A client error
// stores nothing. Idempotency-Key works as for POST /api/v1/ingest, with
// the message IDs otlp-<key>-<i> (never configure a fixed key as a static
// header: every later request would be dropped as a duplicate).
func (s *Service) handleOTLPLogs(w http.ResponseWriter, r *http.Request) {
	enc := "protobuf"
	ct := otlpProtobuf
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == otlpJSON {
		enc, ct = "json", otlpJSON
	}
	code := http.StatusOK
	defer func() { s.m.otlpRequests.WithLabelValues(strconv.Itoa(code), enc).Inc() }()
	fail := func(c int, format string, a ...any) {
		code = c
		if c == http.StatusServiceUnavailable || c == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		writeOTLP(w, ct, c, &statuspb.Status{Code: int32(grpcCode(c)), Message: fmt.Sprintf(format, a...)})
	}
	if mt != otlpProtobuf && mt != otlpJSON {
		fail(http.StatusUnsupportedMediaType, "content type %q is not supported (use %s or %s)", r.Header.Get("Content-Type"), otlpProtobuf, otlpJSON)
		return
	}

	s.mu.Lock()
	if !s.started || s.stopping {
		s.mu.Unlock()
		fail(http.StatusServiceUnavailable, "ingest is not running")
		return
	}
	s.httpWG.Add(1)
	s.mu.Unlock()
	defer s.httpWG.Done()
	select {
	case s.httpReq <- struct{}{}:
		defer func() { <-s.httpReq }()
	default:
		fail(http.StatusTooManyRequests, "more than %d ingest requests at once; retry", s.cfg.HTTPMaxConcurrent)
		return
	}

	received := time.Now()
	source := SourceOTLP
	if v := r.URL.Query().Get("source"); v != "" {
		source = sanitizeSource(v)
	}
	var key string
	if keys := r.Header.Values(IdempotencyKeyHeader); len(keys) > 0 {
		if len(keys) > 1 || !idempotencyKeyRE.MatchString(keys[0]) {
			fail(http.StatusBadRequest, "%s must be one value of 1-128 characters of [A-Za-z0-9._:-]", IdempotencyKeyHeader)
			return
		}
		key = keys[0]
	}

	rd, done, c, msg := decodedBody(http.MaxBytesReader(w, r.Body, s.cfg.HTTPMaxBodyBytes), r.Header.Get("Content-Encoding"), s.cfg.HTTPMaxBodyBytes)
	if c != 0 {
		fail(c, "%s", msg)
		return
	}
	data, err := io.ReadAll(rd)
	done()
	if err != nil {
		if c, msg := bodyError(err); c != 0 {
			fail(c, "%s", msg)
		} else {
			fail(http.StatusBadRequest, "read body: %v", err)
		}
		return
	}

	hb := &httpBatches{maxBytes: s.cfg.BatchMaxBytes, pool: s.arenas, peer: r.RemoteAddr, source: source, first: received}
	defer hb.release()
	o := &otlpReader{hb: hb, maxLine: s.cfg.MaxLineBytes}
	if enc == "json" {
		err = o.readJSON(data)
	} else {
		err = o.readProto(data)
	}
	if err != nil {
		fail(http.StatusBadRequest, "invalid ExportLogsServiceRequest: %v", err)
		return
	}
	if err := hb.seal(); err != nil {
		fail(http.StatusInternalServerError, "%v", err)
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.HTTPTimeout)
	defer cancel()
	stopAfter := context.AfterFunc(s.giveUp, cancel)
	defer stopAfter()
	if _, err := s.publishRequest(ctx, "otlp-", key, source, hb.batches); err != nil {
		if r.Context().Err() != nil {
			code = 499
			return
		}
		s.log.Warn("otlp ingest not acknowledged in time", "source", source, "records", o.records, "idempotency_key", key, "error", err)
		fail(http.StatusServiceUnavailable, "jetstream did not acknowledge the batches within %s: %v", s.cfg.HTTPTimeout, err)
		return
	}
	s.m.lines.WithLabelValues(SourceOTLP).Add(float64(hb.lines))
	s.m.bytes.WithLabelValues(SourceOTLP).Add(float64(hb.bytes))
	if hb.over > 0 {
		s.m.oversized.WithLabelValues(SourceOTLP).Add(float64(hb.over))
	}
	if hb.blank > 0 {
		s.m.empty.WithLabelValues(SourceOTLP).Add(float64(hb.blank))
	}
	s.m.otlpRecords.Add(float64(o.records - o.rejected))
	for reason, n := range o.reasons {
		s.m.otlpRejected.WithLabelValues(reason).Add(float64(n))
	}
	if o.addrs > 0 {
		s.m.otlpOverrides.WithLabelValues("address").Add(float64(o.addrs))
	}
	if o.times > 0 {
		s.m.otlpOverrides.WithLabelValues("time").Add(float64(o.times))
	}
	resp := &collogspb.ExportLogsServiceResponse{}
	if o.rejected > 0 {
		resp.PartialSuccess = &collogspb.ExportLogsPartialSuccess{
			RejectedLogRecords: int64(o.rejected),
			ErrorMessage:       fmt.Sprintf("%d of %d log records rejected: %s", o.rejected, o.records, o.firstReject),
		}
	}
	writeOTLP(w, ct, http.StatusOK, resp)
}

// grpcCode is the google.rpc.Status code of an HTTP status.
func grpcCode(httpCode int) codes.Code {
	switch httpCode {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return codes.InvalidArgument
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	return codes.Internal
}

// writeOTLP writes m in the encoding of content type ct.
func writeOTLP(w http.ResponseWriter, ct string, code int, m proto.Message) {
	var b []byte
	var err error
	if ct == otlpJSON {
		b, err = protojson.Marshal(m)
	} else {
		b, err = proto.Marshal(m)
	}
	if err != nil {
		code, b = http.StatusInternalServerError, nil
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// otlpReader turns the log records of an ExportLogsServiceRequest into
// lines of hb, one record at a time: a request holds only its body and
// one decoded record in memory, not a message tree many times its size.
type otlpReader struct {
	hb      *httpBatches
	maxLine int

	records, rejected int
	addrs, times      int
	reasons           map[string]int
	firstReject       string

	rec  logspb.LogRecord
	line []byte
}

// Reasons of rejected records (metric label, message).
var (
	rejectNoBody  = [2]string{"no_body", "a log record has no body"}
	rejectEmpty   = [2]string{"empty_body", "a log record's body is empty"}
	rejectBinary  = [2]string{"binary_body", "a log record's body is bytes that are not UTF-8 text"}
	rejectNoValue = [2]string{"no_value", "a log record's body is an AnyValue without a value"}
)

func (o *otlpReader) reject(r [2]string) {
	o.rejected++
	if o.reasons == nil {
		o.reasons = map[string]int{}
	}
	o.reasons[r[0]]++
	if o.firstReject == "" {
		o.firstReject = r[1]
	}
}

// record adds one log record; resAttrs are its resource's attributes.
func (o *otlpReader) record(rec *logspb.LogRecord, resAttrs []*commonpb.KeyValue) {
	o.records++
	if rec.Body == nil {
		o.reject(rejectNoBody)
		return
	}
	var ok bool
	switch v := rec.Body.Value.(type) {
	case nil:
		o.reject(rejectNoValue)
		return
	case *commonpb.AnyValue_StringValue:
		o.line = append(o.line[:0], v.StringValue...)
	case *commonpb.AnyValue_BytesValue:
		if !utf8.Valid(v.BytesValue) {
			o.reject(rejectBinary)
			return
		}
		o.line = append(o.line[:0], v.BytesValue...)
	default:
		if o.line, ok = appendAnyJSON(o.line[:0], rec.Body, 0); !ok {
			o.reject(rejectNoValue)
			return
		}
	}
	if len(o.line) == 0 {
		o.reject(rejectEmpty)
		return
	}
	var m lineMeta
	if m.addr = otlpAddr(rec.Attributes); !m.addr.IsValid() {
		m.addr = otlpAddr(resAttrs)
	}
	if m.addr.IsValid() {
		o.addrs++
	}
	m.timeMS = nanosToMillis(rec.TimeUnixNano)
	if m.timeMS != 0 {
		o.times++
	}
	m.observedMS = nanosToMillis(rec.ObservedTimeUnixNano)
	o.hb.lineMeta(o.line, m, o.maxLine)
}

// nanosToMillis converts an OTLP time; 0 (unset) and times before 1 ms
// after the epoch give 0.
func nanosToMillis(ns uint64) int64 {
	return int64(ns / uint64(time.Millisecond))
}

// otlpAddr is the client address named by attrs, if any.
func otlpAddr(attrs []*commonpb.KeyValue) netip.Addr {
	if len(attrs) == 0 {
		return netip.Addr{}
	}
	for _, k := range otlpAddrKeys {
		for _, kv := range attrs {
			if kv.GetKey() != k {
				continue
			}
			sv, ok := kv.GetValue().GetValue().(*commonpb.AnyValue_StringValue)
			if !ok {
				continue
			}
			if a, ok := parseClientAddr(sv.StringValue); ok {
				return a
			}
		}
	}
	return netip.Addr{}
}

// parseClientAddr reads an IP address, or an address with a port
// ("192.0.2.1:443", "[2001:db8::1]:443"), canonical (unmapped, no zone).
func parseClientAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	a = a.Unmap().WithZone("")
	if a.IsUnspecified() {
		return netip.Addr{}, false
	}
	return a, true
}

// appendAnyJSON appends v as JSON: the rendering of map and array bodies.
// Bytes are base64 (as in the OTLP JSON encoding), non-finite doubles
// strings. ok is false for an AnyValue without a value at the top.
func appendAnyJSON(b []byte, v *commonpb.AnyValue, depth int) ([]byte, bool) {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return appendJSONString(b, x.StringValue), true
	case *commonpb.AnyValue_BoolValue:
		return strconv.AppendBool(b, x.BoolValue), true
	case *commonpb.AnyValue_IntValue:
		return strconv.AppendInt(b, x.IntValue, 10), true
	case *commonpb.AnyValue_DoubleValue:
		if math.IsInf(x.DoubleValue, 0) || math.IsNaN(x.DoubleValue) {
			return appendJSONString(b, strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)), true
		}
		return strconv.AppendFloat(b, x.DoubleValue, 'g', -1, 64), true
	case *commonpb.AnyValue_BytesValue:
		return appendJSONString(b, base64.StdEncoding.EncodeToString(x.BytesValue)), true
	case *commonpb.AnyValue_ArrayValue:
		b = append(b, '[')
		for i, e := range x.ArrayValue.GetValues() {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendAnyJSON(b, e, depth+1); !ok {
				b = append(b, "null"...)
			}
		}
		return append(b, ']'), true
	case *commonpb.AnyValue_KvlistValue:
		b = append(b, '{')
		for i, kv := range x.KvlistValue.GetValues() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, kv.GetKey())
			b = append(b, ':')
			var ok bool
			if b, ok = appendAnyJSON(b, kv.GetValue(), depth+1); !ok {
				b = append(b, "null"...)
			}
		}
		return append(b, '}'), true
	}
	return b, false
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

// readProto reads a binary ExportLogsServiceRequest. The envelope
// (resource_logs, scope_logs) is walked with protowire; every resource,
// scope and log record is unmarshaled with the generated types, which
// check it as proto.Unmarshal of the whole request would (UTF-8 strings
// included).
func (o *otlpReader) readProto(b []byte) error {
	return eachField(b, func(num protowire.Number, v []byte) error {
		if num == 1 { // resource_logs
			return o.resourceLogsProto(v)
		}
		return nil
	})
}

func (o *otlpReader) resourceLogsProto(b []byte) error {
	// The resource may follow its scope_logs on the wire: read it first.
	var res resourcepb.Resource
	if err := eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			return proto.UnmarshalOptions{Merge: true}.Unmarshal(v, &res)
		case 3:
			if !utf8.Valid(v) {
				return errors.New("schema_url is not UTF-8")
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("resource_logs: %w", err)
	}
	return eachField(b, func(num protowire.Number, v []byte) error {
		if num != 2 { // scope_logs
			return nil
		}
		return eachField(v, func(num protowire.Number, v []byte) error {
			switch num {
			case 1:
				var scope commonpb.InstrumentationScope
				return proto.Unmarshal(v, &scope)
			case 2:
				if err := proto.Unmarshal(v, &o.rec); err != nil {
					return fmt.Errorf("log record %d: %w", o.records, err)
				}
				o.record(&o.rec, res.Attributes)
			case 3:
				if !utf8.Valid(v) {
					return errors.New("schema_url is not UTF-8")
				}
			}
			return nil
		})
	})
}

// eachField calls f with the number and value of every length-delimited
// field of the message b; other fields are checked and skipped.
func eachField(b []byte, f func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := f(num, v); err != nil {
			return err
		}
	}
	return nil
}

// The JSON envelope. encoding/json matches keys case-insensitively, so
// these take the lowerCamelCase keys of the OTLP JSON encoding; the
// original snake_case names are taken too (protojson accepts both).
type (
	otlpJSONRequest struct {
		ResourceLogs  []otlpJSONResourceLogs `json:"resourceLogs"`
		ResourceLogs_ []otlpJSONResourceLogs `json:"resource_logs"`
	}
	otlpJSONResourceLogs struct {
		Resource   json.RawMessage     `json:"resource"`
		ScopeLogs  []otlpJSONScopeLogs `json:"scopeLogs"`
		ScopeLogs_ []otlpJSONScopeLogs `json:"scope_logs"`
	}
	otlpJSONScopeLogs struct {
		LogRecords  []json.RawMessage `json:"logRecords"`
		LogRecords_ []json.RawMessage `json:"log_records"`
	}
)

// readJSON reads an ExportLogsServiceRequest in the OTLP JSON encoding.
// protojson reads every resource and record; it follows the OTLP rules
// (integer enums, int64 as strings or numbers, both key spellings) with
// unknown fields ignored, except for trace and span IDs, which OTLP
// encodes in hex and protojson would read as base64: hexIDs rewrites
// them first.
func (o *otlpReader) readJSON(b []byte) error {
	var req otlpJSONRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return err
	}
	un := protojson.UnmarshalOptions{DiscardUnknown: true}
	for _, rl := range append(req.ResourceLogs, req.ResourceLogs_...) {
		var res resourcepb.Resource
		if len(rl.Resource) > 0 && string(rl.Resource) != "null" {
			if err := un.Unmarshal(rl.Resource, &res); err != nil {
				return fmt.Errorf("resource: %w", err)
			}
		}
		for _, sl := range append(rl.ScopeLogs, rl.ScopeLogs_...) {
			for _, raw := range append(sl.LogRecords, sl.LogRecords_...) {
				o.rec.Reset()
				fixed, err := hexIDs(raw)
				if err == nil {
					err = un.Unmarshal(fixed, &o.rec)
				}
				if err != nil {
					return fmt.Errorf("log record %d: %w", o.records, err)
				}
				o.record(&o.rec, res.Attributes)
			}
		}
	}
	return nil
}

// hexIDs rewrites the hex traceId and spanId of a JSON log record as the
// base64 that protojson reads. Anything but a string of hex digits is an
// error (the OTLP JSON encoding allows nothing else).
func hexIDs(rec []byte) ([]byte, error) {
	type splice struct {
		at, n int
		with  []byte
	}
	var sp []splice
	for _, k := range []string{"traceId", "spanId", "trace_id", "span_id"} {
		r := gjson.GetBytes(rec, k)
		if !r.Exists() || r.Type == gjson.Null {
			continue
		}
		if r.Type != gjson.String || r.Index <= 0 {
			return nil, fmt.Errorf("%s must be a hex string", k)
		}
		id, err := hex.DecodeString(r.Str)
		if err != nil {
			return nil, fmt.Errorf("%s %q is not hex", k, r.Str)
		}
		sp = append(sp, splice{at: r.Index, n: len(r.Raw), with: []byte(strconv.Quote(base64.StdEncoding.EncodeToString(id)))})
	}
	if len(sp) == 0 {
		return rec, nil
	}
	out := make([]byte, 0, len(rec))
	last := 0
	for len(sp) > 0 {
		i := 0
		for j := range sp {
			if sp[j].at < sp[i].at {
				i = j
			}
		}
		s := sp[i]
		sp = append(sp[:i], sp[i+1:]...)
		if s.at < last || s.at+s.n > len(rec) || !bytes.Equal(rec[s.at:s.at+1], []byte{'"'}) {
			return nil, errors.New("trace or span id out of place")
		}
		out = append(out, rec[last:s.at]...)
		out = append(out, s.with...)
		last = s.at + s.n
	}
	return append(out, rec[last:]...), nil
}

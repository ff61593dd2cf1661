package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/loggen"
)

// TestHTTPShippers sends log lines through a running all-in-one the ways
// HTTP shippers do — OTLP/HTTP protobuf from the OpenTelemetry Go SDK's
// otlploghttp exporter, OTLP JSON, Fluent Bit's json_lines and Vector's
// NDJSON and JSON array — and checks every per-IP count, class and minute
// window against an oracle that applies the rules itself: an address
// attribute wins over the line's IP (and counts a line without one), a
// record time wins over the line's timestamp, rejected records and client
// errors store nothing.
func TestHTTPShippers(t *testing.T) {
	a := startApp(t, "shippers", newConfig(t, "-ingest.batch.max-bytes=16KiB", "-ingest.max-line-bytes=8KiB"))
	c := newClient(t, a)
	base := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Hour)
	g := loggen.New(10, 120, base, 90*time.Minute)
	ref := newReference()
	var wantDead uint64
	lo, hi := base, base
	count := func(l loggen.Line) {
		ref.add(l)
		if l.Time.Before(lo) {
			lo = l.Time
		}
		if l.Time.After(hi) {
			hi = l.Time
		}
	}
	attrIP := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i%50)}) }
	gen := func(i, n int) loggen.Line {
		if i%4 == 3 {
			return g.SSHD3164(i, n)
		}
		return g.Combined(i, n)
	}
	const perPart = 300

	// 1. OTLP protobuf from the real SDK exporter.
	sent := 0
	{
		var errMu sync.Mutex
		var exportErrs []error
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { errMu.Lock(); exportErrs = append(exportErrs, err); errMu.Unlock() }))
		ctx := context.Background()
		exp, err := otlploghttp.New(ctx, otlploghttp.WithEndpointURL(c.base+"/v1/logs"), otlploghttp.WithCompression(otlploghttp.GzipCompression))
		if err != nil {
			t.Fatal(err)
		}
		lp := sdklog.NewLoggerProvider(
			sdklog.WithResource(resource.NewSchemaless(attribute.String("service.name", "e2e"))),
			sdklog.WithProcessor(sdklog.NewBatchProcessor(exp, sdklog.WithExportMaxBatchSize(64))))
		logger := lp.Logger("e2e")
		for i := range perPart {
			l := gen(i, perPart)
			var r otellog.Record
			r.SetBody(attribute.StringValue(string(l.Text)))
			if i%3 == 0 { // the attribute wins over the line's IP
				r.AddAttributes(attribute.String("client.address", attrIP(i).String()))
				l.Addr = attrIP(i)
			}
			if i%5 == 0 { // the record's time wins over the line's
				l.Time = l.Time.Add(17 * time.Minute).Truncate(time.Second)
				r.SetTimestamp(l.Time)
			}
			logger.Emit(ctx, r)
			count(l)
			sent++
		}
		// Records without an IP in the body: counted under their attribute
		// (with no class), or a dead letter without one.
		for i := range 20 {
			var r otellog.Record
			r.SetBody(attribute.StringValue("user session started"))
			tm := base.Add(time.Duration(i) * 3 * time.Minute)
			r.SetTimestamp(tm)
			if i < 15 {
				r.AddAttributes(attribute.String("client.address", attrIP(100+i).String()))
				count(loggen.Line{Addr: attrIP(100 + i), Time: tm, Counters: counts.Counters{Requests: 1}})
			} else {
				wantDead++
			}
			logger.Emit(ctx, r)
			sent++
		}
		if err := lp.Shutdown(ctx); err != nil {
			t.Fatalf("sdk shutdown: %v", err)
		}
		errMu.Lock()
		if len(exportErrs) > 0 {
			t.Fatalf("exporter errors: %v", exportErrs)
		}
		errMu.Unlock()
	}

	// 2. OTLP JSON, built with the otlp types: resource and record
	// addresses, hex trace IDs, partial success for records without a body.
	{
		req := &collogspb.ExportLogsServiceRequest{}
		for k := range 3 {
			rl := &logspb.ResourceLogs{ScopeLogs: []*logspb.ScopeLogs{{}}}
			if k == 1 {
				rl.Resource = &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("client.address", attrIP(200).String())}}
			}
			req.ResourceLogs = append(req.ResourceLogs, rl)
		}
		for i := range perPart {
			l := gen(perPart+i, 3*perPart)
			rl := req.ResourceLogs[i%3]
			rec := &logspb.LogRecord{Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: string(l.Text)}},
				TraceId: []byte("0123456789abcdef"), SpanId: []byte("01234567"), SeverityNumber: logspb.SeverityNumber_SEVERITY_NUMBER_INFO,
				ObservedTimeUnixNano: uint64(time.Now().UnixNano())}
			if i%3 == 1 {
				l.Addr = attrIP(200) // the resource's address
			}
			if i%7 == 0 { // a record address wins over the resource's
				rec.Attributes = []*commonpb.KeyValue{kv("source.address", attrIP(201).String())}
				l.Addr = attrIP(201)
			}
			if i%4 == 0 {
				l.Time = l.Time.Add(-11 * time.Minute)
				rec.TimeUnixNano = uint64(l.Time.UnixNano())
			}
			rl.ScopeLogs[0].LogRecords = append(rl.ScopeLogs[0].LogRecords, rec)
			count(l)
			sent++
		}
		sl := req.ResourceLogs[0].ScopeLogs[0]
		sl.LogRecords = append(sl.LogRecords, &logspb.LogRecord{}, &logspb.LogRecord{Body: &commonpb.AnyValue{}})
		body, err := protojson.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(body, []byte(`"traceId":"`)) {
			t.Fatal("no trace ID in the JSON")
		}
		// The OTLP JSON encoding has hex IDs, not protojson's base64.
		body = bytes.ReplaceAll(body, []byte(`"MDEyMzQ1Njc4OWFiY2RlZg=="`), []byte(`"30313233343536373839616263646566"`))
		body = bytes.ReplaceAll(body, []byte(`"MDEyMzQ1Njc="`), []byte(`"3031323334353637"`))
		code, out := postOTLPJSON(t, c.base, body)
		var resp collogspb.ExportLogsServiceResponse
		if code != http.StatusOK || protojson.Unmarshal(out, &resp) != nil || resp.GetPartialSuccess().GetRejectedLogRecords() != 2 {
			t.Fatalf("OTLP JSON: %d %s", code, out)
		}
	}

	// 3. Client errors on the running pipeline: nothing is stored.
	{
		if code, out := postRaw(t, c.base+"/v1/logs", "application/x-protobuf", []byte("\x0a\xff\xff"), nil); code != http.StatusBadRequest {
			t.Fatalf("garbage protobuf: %d %s", code, out)
		}
		huge := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{
			{Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "198.51.100.1 " + strings.Repeat("x", 65<<20)}}}}}}}}}
		hb, _ := proto.Marshal(huge)
		if code, out := postRaw(t, c.base+"/v1/logs", "application/x-protobuf", hb, nil); code != http.StatusRequestEntityTooLarge {
			t.Fatalf("huge protobuf: %d %.200s", code, out)
		}
	}

	// 4. Fluent Bit (json_lines, "log") and Vector (NDJSON and array,
	// "message"), with the lines' own times.
	{
		var fb, vec, arr bytes.Buffer
		arr.WriteByte('[')
		for i := range 3 * perPart {
			l := gen(3*perPart+i, 6*perPart)
			q, _ := json.Marshal(string(l.Text))
			switch i % 3 {
			case 0:
				fmt.Fprintf(&fb, `{"date":%d.%06d,"log":%s}`+"\n", time.Now().Unix(), i, q)
			case 1:
				if vec.Len() > 0 {
					vec.WriteByte('\n')
				}
				fmt.Fprintf(&vec, `{"file":"/var/log/nginx/access.log","host":"web-1","message":%s,"source_type":"file","timestamp":%q}`, q, time.Now().UTC().Format(time.RFC3339Nano))
			case 2:
				if arr.Len() > 1 {
					arr.WriteByte(',')
				}
				fmt.Fprintf(&arr, `{"host":"web-2","message":%s,"source_type":"file","timestamp":%q}`, q, time.Now().UTC().Format(time.RFC3339Nano))
			}
			count(l)
			sent++
		}
		arr.WriteByte(']')
		// An object without a message field is its own line: with an IP
		// field it counts, without one it is a dead letter.
		tm := base.Add(33 * time.Minute)
		fmt.Fprintf(&fb, `{"date":1,"remote_addr":"198.51.100.77","time":%q}`+"\n", tm.Format(time.RFC3339))
		fmt.Fprintf(&fb, `{"date":2,"cpu_p":0.5}`+"\n")
		count(loggen.Line{Addr: netip.MustParseAddr("198.51.100.77"), Time: tm, Counters: counts.Counters{Requests: 1}})
		wantDead++
		sent += 2
		for _, p := range []struct {
			ct   string
			body []byte
			n    float64
		}{{"application/x-ndjson", fb.Bytes(), perPart + 2}, {"application/x-ndjson", vec.Bytes(), perPart}, {"application/json", arr.Bytes(), perPart}} {
			code, out := postRaw(t, c.base+"/api/v1/ingest", p.ct, p.body, nil)
			var r map[string]any
			if code != http.StatusOK || json.Unmarshal(out, &r) != nil || r["accepted"] != p.n || r["objects"] != p.n {
				t.Fatalf("%s: %d %s", p.ct, code, out)
			}
		}
	}

	from, to := lo.Truncate(time.Hour), hi.Truncate(time.Hour).Add(time.Hour)
	c.waitTotals(t, from, to, ref.total, wantDead, 60*time.Second)
	verify(t, c, ref, from, to, wantDead)
	t.Logf("%d records sent, %d counted in %d IPs, %d dead letters", sent, ref.total, len(ref.perIPMinute), wantDead)
	if got := metricValue(t, c.base, "logtally_ingest_otlp_rejected_log_records_total"); got != 2 {
		t.Errorf("rejected records metric %v, want 2", got)
	}
}

func kv(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func postOTLPJSON(t *testing.T, base string, body []byte) (int, []byte) {
	t.Helper()
	return postRaw(t, base+"/v1/logs", "application/json", body, nil)
}

func postRaw(t *testing.T, url, ct string, body []byte, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

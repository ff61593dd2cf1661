package ingest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func strBody(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

func postOTLP(t *testing.T, url, ct string, body []byte, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Content-Type"); got != ct && (ct == otlpProtobuf || ct == otlpJSON) {
		t.Fatalf("answer Content-Type %q, want the request's %q", got, ct)
	}
	return resp.StatusCode, resp.Header, b
}

// otlpRequest is a request of two resources exercising every rule.
func otlpRequest(t0 time.Time) *collogspb.ExportLogsServiceRequest {
	ns := func(t time.Time) uint64 { return uint64(t.UnixNano()) }
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{
		{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strAttr("service.name", "web"), strAttr("client.address", "192.0.2.200")}},
			ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{
				// 0: record attribute wins over the resource's and the line's
				{Body: strBody("198.51.100.1 GET /"), Attributes: []*commonpb.KeyValue{strAttr("client.address", "[2001:db8::7]:443")}, TimeUnixNano: ns(t0)},
				// 1: a domain name is skipped; source.address is next
				{Body: strBody("no ip"), Attributes: []*commonpb.KeyValue{strAttr("client.address", "example.com"), strAttr("source.address", "192.0.2.3")}, ObservedTimeUnixNano: ns(t0.Add(time.Minute))},
				// 2: the resource's address
				{Body: strBody("plain")},
				// 3, 4: rejected
				{},
				{Body: strBody("")},
				// 5: a map body becomes JSON
				{Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{
					strAttr("remote_addr", "203.0.113.5"), {Key: "status", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 404}}}}}}}},
				// 6: binary bytes: rejected
				{Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{0xff, 0xfe}}}},
			}}},
		},
		{
			ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{
				// 7: older attribute name, no resource address
				{Body: strBody("x"), Attributes: []*commonpb.KeyValue{strAttr("net.peer.ip", "::ffff:192.0.2.9")}},
				// 8: nothing: the line alone
				{Body: strBody("198.51.100.8 only")},
			}}},
		},
	}}
}

type metaOf struct {
	addr          string
	time, observe int64
}

func TestOTLPLogs(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.HTTPMaxBodyBytes = 64 << 10 })
	ts := httptest.NewServer(e.mux)
	defer ts.Close()
	url := ts.URL + OTLPLogsPath
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	req := otlpRequest(t0)

	check := func(enc string, body []byte, ct string, hdr ...string) {
		t.Helper()
		code, _, out := postOTLP(t, url, ct, body, hdr...)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", enc, code, out)
		}
		var resp collogspb.ExportLogsServiceResponse
		if ct == otlpJSON {
			if err := protojson.Unmarshal(out, &resp); err != nil {
				t.Fatalf("%s: answer %s: %v", enc, out, err)
			}
			if !strings.Contains(string(out), `"rejectedLogRecords":"3"`) {
				t.Errorf("%s: JSON answer %s", enc, out)
			}
		} else if err := proto.Unmarshal(out, &resp); err != nil {
			t.Fatal(err)
		}
		ps := resp.GetPartialSuccess()
		if ps.GetRejectedLogRecords() != 3 || !strings.Contains(ps.GetErrorMessage(), "3 of 9 log records rejected") {
			t.Fatalf("%s: partial success %v", enc, ps)
		}
		// Answered after the acks: the batch is in the stream.
		msgs := e.fetch(t)
		last := msgs[len(msgs)-1]
		if !strings.HasSuffix(last.subject, ".otlp") {
			t.Fatalf("%s: subject %s", enc, last.subject)
		}
		b := last.batch
		var lines []string
		for _, l := range b.Lines {
			lines = append(lines, string(l))
		}
		wantLines := `198.51.100.1 GET /|no ip|plain|{"remote_addr":"203.0.113.5","status":404}|x|198.51.100.8 only`
		if strings.Join(lines, "|") != wantLines {
			t.Fatalf("%s: lines\n%s\nwant\n%s", enc, strings.Join(lines, "|"), wantLines)
		}
		got := map[uint32]metaOf{}
		for _, m := range b.LineMeta {
			a, _ := netip.AddrFromSlice(m.ClientAddr)
			got[m.Line] = metaOf{a.String(), m.TimeUnixMs, m.ObservedUnixMs}
		}
		want := map[uint32]metaOf{
			0: {"2001:db8::7", t0.UnixMilli(), 0},
			1: {"192.0.2.3", 0, t0.Add(time.Minute).UnixMilli()},
			2: {"192.0.2.200", 0, 0},
			3: {"192.0.2.200", 0, 0},
			4: {"192.0.2.9", 0, 0},
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: meta %v, want %v", enc, got, want)
		}
	}
	pb, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	check("protobuf", pb, otlpProtobuf)
	check("gzip protobuf", gz(t, pb), otlpProtobuf, "Content-Encoding", "gzip")
	js, err := protojson.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	check("json", js, otlpJSON)

	// Bad data: 400 with a Status, nothing stored.
	before := len(e.fetch(t))
	for _, c := range []struct{ name, ct, body string }{
		{"truncated protobuf", otlpProtobuf, string(pb[:len(pb)-3])},
		{"garbage", otlpProtobuf, "\xff\xff\xff\xff"},
		{"not json", otlpJSON, "{"},
		{"bad trace id", otlpJSON, `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"198.51.100.1"},"traceId":"zz"}]}]}]}`},
		{"wrong type", otlpJSON, `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":5}}]}]}]}`},
	} {
		code, _, out := postOTLP(t, url, c.ct, []byte(c.body))
		if code != http.StatusBadRequest {
			t.Fatalf("%s: %d %s", c.name, code, out)
		}
		var st statuspb.Status
		if c.ct == otlpJSON {
			err = protojson.Unmarshal(out, &st)
		} else {
			err = proto.Unmarshal(out, &st)
		}
		if err != nil || !strings.Contains(st.Message, "invalid ExportLogsServiceRequest") {
			t.Fatalf("%s: status %v %v", c.name, &st, err)
		}
	}
	big := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{ScopeLogs: []*logspb.ScopeLogs{{}}}}}
	for range 2000 {
		sl := big.ResourceLogs[0].ScopeLogs[0]
		sl.LogRecords = append(sl.LogRecords, &logspb.LogRecord{Body: strBody(strings.Repeat("198.51.100.1 ", 4))})
	}
	bigPB, _ := proto.Marshal(big)
	if code, _, out := postOTLP(t, url, otlpProtobuf, bigPB); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("too large: %d %s", code, out)
	}
	if code, _, _ := postOTLP(t, url, otlpProtobuf, gz(t, bigPB), "Content-Encoding", "gzip"); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("too large after gunzip: %d", code)
	}
	if code, _, _ := postOTLP(t, url, "text/plain", []byte("x")); code != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: %d", code)
	}
	if n := len(e.fetch(t)); n != before {
		t.Fatalf("client errors stored %d batches", n-before)
	}

	// Hex trace ids as the OTLP JSON encoding has them; unknown fields are
	// ignored; an empty request is a full success.
	js2 := `{"resourceLogs":[{"resource":{"attributes":[{"key":"client.address","value":{"stringValue":"192.0.2.77"}}]},"futureField":1,
	  "scopeLogs":[{"scope":{"name":"x"},"logRecords":[{"timeUnixNano":"1764000000000000000","severityNumber":9,"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","body":{"stringValue":"hello"},"unknown":{"a":1}}]}]}]}`
	code, _, out := postOTLP(t, url, otlpJSON, []byte(js2))
	if code != http.StatusOK || string(out) != "{}" {
		t.Fatalf("hex ids: %d %s", code, out)
	}
	msgs := e.fetch(t)
	m := msgs[len(msgs)-1].batch
	if len(m.Lines) != 1 || string(m.Lines[0]) != "hello" || m.LineMeta[0].TimeUnixMs != 1764000000000 {
		t.Fatalf("hex-id record: %v", m)
	}
	if code, _, out := postOTLP(t, url, otlpProtobuf, nil); code != http.StatusOK || len(out) != 0 {
		t.Fatalf("empty request: %d %x", code, out)
	}
	if v := counterValue(e.svc.m.otlpRejected.WithLabelValues("binary_body")); v != 3 {
		t.Errorf("binary_body rejections %v, want 3", v)
	}
	if v := counterValue(e.svc.m.otlpRecords); v != 3*6+1 {
		t.Errorf("accepted records %v, want 19", v)
	}
}

// TestOTLPIdempotency: a retried request with the same key is stored once.
func TestOTLPIdempotency(t *testing.T) {
	e := newEnv(t, nil)
	ts := httptest.NewServer(e.mux)
	defer ts.Close()
	pb, _ := proto.Marshal(otlpRequest(time.Now()))
	for range 2 {
		if code, _, out := postOTLP(t, ts.URL+OTLPLogsPath, otlpProtobuf, pb, IdempotencyKeyHeader, "k1"); code != http.StatusOK {
			t.Fatalf("%d %s", code, out)
		}
	}
	msgs := e.fetch(t)
	if len(msgs) != 1 || msgs[0].msgID != "otlp-k1-0" {
		t.Fatalf("%d batches stored (%v), want one with ID otlp-k1-0", len(msgs), msgs)
	}
}

// TestOTLPRetryable: a stopping ingest answers 503 with Retry-After, in
// the request's encoding.
func TestOTLPRetryable(t *testing.T) {
	e := newEnv(t, nil)
	ts := httptest.NewServer(e.mux)
	defer ts.Close()
	e.svc.mu.Lock()
	e.svc.stopping = true
	e.svc.mu.Unlock()
	defer func() { e.svc.mu.Lock(); e.svc.stopping = false; e.svc.mu.Unlock() }()
	code, h, out := postOTLP(t, ts.URL+OTLPLogsPath, otlpJSON, []byte(`{}`))
	var st statuspb.Status
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || protojson.Unmarshal(out, &st) != nil || st.Code != 14 {
		t.Fatalf("%d %v %s", code, h, out)
	}
}

func TestHexIDs(t *testing.T) {
	in := `{"traceId":"0aFF","body":{"stringValue":"traceId"},"spanId":"01"}`
	out, err := hexIDs([]byte(in))
	if err != nil || string(out) != `{"traceId":"Cv8=","body":{"stringValue":"traceId"},"spanId":"AQ=="}` {
		t.Fatalf("%s %v", out, err)
	}
	for _, bad := range []string{`{"traceId":"xyz"}`, `{"spanId":1}`, `{"traceId":"abc"}`} {
		if _, err := hexIDs([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

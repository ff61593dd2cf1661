package format

import (
	"testing"
)

const (
	benchCombined = `203.0.113.7 - - [24/Nov/2026:10:00:00 +0100] "GET /index.html?utm_source=news HTTP/1.1" 200 5124 "https://www.example.com/start" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"`
	benchJSON     = `{"time":"2026-11-24T10:00:00+01:00","remote_addr":"203.0.113.7","request":"GET /index.html HTTP/1.1","status":200,"body_bytes_sent":5124,"http_referer":"-","http_user_agent":"Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0.0.0 Safari/537.36","request_time":0.003}`
	benchSyslog   = `<38>Nov 24 10:00:00 bastion sshd[4121]: Failed password for invalid user admin from 203.0.113.50 port 52144 ssh2`
)

func benchParse(b *testing.B, line string, f Format) {
	p := New(Options{})
	l := []byte(line)
	var rec Record
	if err := p.Parse(l, f, recv, &rec); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(l)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.Parse(l, f, recv, &rec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkParseCombined(b *testing.B) { benchParse(b, benchCombined, CLF) }
func BenchmarkParseAuto(b *testing.B)     { benchParse(b, benchCombined, Auto) }
func BenchmarkParseJSON(b *testing.B)     { benchParse(b, benchJSON, JSON) }
func BenchmarkParseSyslog(b *testing.B)   { benchParse(b, benchSyslog, Syslog) }

// BenchmarkParseAutoMixed is the realistic Auto case: a stream mixing all
// formats, so detection and every parser are exercised.
func BenchmarkParseAutoMixed(b *testing.B) {
	p := New(Options{})
	lines := [][]byte{[]byte(benchCombined), []byte(benchJSON), []byte(benchSyslog),
		[]byte(`example.com:443 203.0.113.7 - - [24/Nov/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 5 "-" "ua"`),
		[]byte(`2026-11-24 10:00:00,123 WARN rejected client 198.51.100.8 (rate limit)`)}
	var rec Record
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.Parse(lines[i%len(lines)], Auto, recv, &rec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

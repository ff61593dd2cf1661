package format

import (
	"errors"
	"testing"
	"time"
)

// Lines as real senders write them (captured from Debian 12's nginx 1.22,
// rsyslog 8.2302, HAProxy 2.6 and Caddy 2.6, and Caddy 2.7+'s documented
// access log); test/senders runs the programs themselves.
var senderCases = []tcase{
	{"nginx access_log syslog: (RFC 3164, combined inside)", Syslog,
		`<190>Dec  2 07:25:34 vm nginx: 127.0.0.9 - - [02/Dec/2026:07:25:34 +0000] "GET /login HTTP/1.1" 401 179 "-" "curl/7.88.1"`,
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{addr: "127.0.0.9", time: "2026-12-02T07:25:34Z", method: "GET", path: "/login", status: 401, size: 179, ua: "curl/7.88.1", auth: true}},
	{"combined inside: its own date and offset win over the zoneless 3164 header", Syslog,
		`<190>Dec  2 09:25:34 web nginx: 198.51.100.7 - - [02/Dec/2026:09:25:34 +0200] "GET /x HTTP/1.1" 503 0 "-" "-"`,
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{addr: "198.51.100.7", time: "2026-12-02T07:25:34Z", method: "GET", path: "/x", status: 503}},
	{"rsyslog imfile forwarded as RFC 5424", Syslog,
		`<190>1 2026-12-02T07:25:34.512345+00:00 vm nginx - - - 127.0.0.9 - - [02/Dec/2026:07:25:33 +0000] "GET /missing HTTP/1.1" 404 153 "-" "Go-http-client/1.1"`,
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{addr: "127.0.0.9", time: "2026-12-02T07:25:33Z", method: "GET", path: "/missing", status: 404, size: 153, ua: "Go-http-client/1.1"}},
	{"RFC 5424 with BOM before the access line", Syslog,
		"<190>1 2026-12-02T07:25:34Z vm nginx - - - \xef\xbb\xbf127.0.0.9 - - [02/Dec/2026:07:25:33 +0000] \"GET / HTTP/1.1\" 200 1",
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{addr: "127.0.0.9", time: "2026-12-02T07:25:33Z", method: "GET", path: "/", status: 200, size: 1}},
	{"malformed access line inside syslog: still counted by IP", Syslog,
		`<190>Dec  2 07:25:34 vm nginx: 127.0.0.9 - - [02/Dec/2026:07:25:34 +0000] "GET / HTTP/1.1" abc`,
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{addr: "127.0.0.9", time: "2026-12-02T07:25:34Z"}},
	{"sshd message starting with an IP is not an access log", Syslog,
		`<38>Dec  2 07:25:34 vm sshd[7]: 203.0.113.7 port 22: Failed password for root`,
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{addr: "203.0.113.7", time: "2026-12-02T07:25:34Z", auth: true}},
	{"haproxy httplog, RFC 3164 without hostname", Syslog,
		`<134>Dec  2 07:25:34 haproxy[19254]: 127.0.0.9:59884 [02/Dec/2026:07:25:34.692] web web/<NOSRV> 0/-1/-1/-1/0 404 56 - - LR-- 1/1/0/0/0 0/0 "GET /missing HTTP/1.1"` + "\n",
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{addr: "127.0.0.9", time: "2026-12-02T07:25:34Z", method: "GET", path: "/missing", status: 404, size: 56}},
	{"haproxy httplog, RFC 5424", Syslog,
		`<134>1 2026-12-02T07:25:34.700996+00:00 - haproxy 19254 - - 127.0.0.9:36728 [02/Dec/2026:07:25:34.700] web2 web2/<NOSRV> 0/-1/-1/-1/0 503 66 - - LR-- 1/1/0/0/0 0/0 "GET /busy HTTP/1.1"`,
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{addr: "127.0.0.9", time: "2026-12-02T07:25:34.700996Z", method: "GET", path: "/busy", status: 503, size: 66}},
	{"haproxy httplog 401, IPv6 client, logasap bytes", Syslog,
		`<134>Dec  2 07:25:34 lb haproxy[1]: [2001:db8::7]:4711 [02/Dec/2026:07:25:34.692] fe be/s1 0/0/1/2/3 401 +120 - - ---- 1/1/0/0/0 0/0 "POST /login HTTP/1.1"`,
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{addr: "2001:db8::7", time: "2026-12-02T07:25:34Z", method: "POST", path: "/login", status: 401, size: 120, auth: true}},
	{"haproxy httplog without response (-1)", Syslog,
		`<134>Dec  2 07:25:34 haproxy[1]: 192.0.2.4:4711 [02/Dec/2026:07:25:34.692] fe be/s1 -1/-1/-1/-1/5000 -1 0 - - CR-- 1/1/0/0/0 0/0 "<BADREQ>"`,
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{addr: "192.0.2.4", time: "2026-12-02T07:25:34Z"}},
	{"haproxy tcplog: no status, IP only", Syslog,
		`<134>Dec  2 07:25:34 haproxy[1]: 192.0.2.4:4711 [02/Dec/2026:07:25:34.692] fe be/s1 1/0/5 212 -- 1/1/0/0/0 0/0`,
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{addr: "192.0.2.4", time: "2026-12-02T07:25:34Z"}},
	{"caddy 2.6 access log: request.remote_ip, float ts", Auto,
		`{"level":"error","ts":1796196246.1362846,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"127.0.1.36","remote_port":"51385","proto":"HTTP/1.1","method":"GET","host":"127.0.0.1:43443","uri":"/busy","headers":{"User-Agent":["Go-http-client/1.1"],"X-Forwarded-For":["203.0.113.99"]}},"user_id":"","duration":0.000012,"size":0,"status":503,"resp_headers":{"Server":["Caddy"]}}`,
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{addr: "127.0.1.36", time: "2026-12-02T07:24:06.136284672Z", method: "GET", path: "/busy", status: 503}},
	{"caddy 2.7+ access log: request.client_ip wins over remote_ip", JSON,
		`{"level":"info","ts":1796196246.5,"logger":"http.log.access","msg":"handled request","request":{"remote_ip":"127.0.0.1","remote_port":"40000","client_ip":"198.51.100.20","proto":"HTTP/2.0","method":"POST","host":"example.com","uri":"/login","headers":{"X-Forwarded-For":["198.51.100.20"]}},"bytes_read":0,"user_id":"","duration":0.001,"size":12,"status":401}`,
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{addr: "198.51.100.20", time: "2026-12-02T07:24:06.5Z", method: "POST", path: "/login", status: 401, size: 12, auth: true}},
	{"flat dotted key", JSON,
		`{"request.remote_ip":"192.0.2.8","ts":1796196246}`,
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{addr: "192.0.2.8", time: "2026-12-02T07:24:06Z"}},
	{"nested IP object not configured is not read", JSON,
		`{"peer":{"ip":"192.0.2.8"},"ts":1796196246}`,
		time.Date(2026, 12, 2, 7, 25, 35, 0, time.UTC),
		want{err: ErrNoClientIP}},
}

func TestSenderLines(t *testing.T) {
	p := New(Options{})
	for _, tc := range senderCases {
		t.Run(tc.name, func(t *testing.T) {
			var rec Record
			err := p.Parse([]byte(tc.line), tc.f, tc.received, &rec)
			if tc.want.err != nil {
				if err == nil || !errors.Is(err, tc.want.err) {
					t.Fatalf("err = %v, want %v", err, tc.want.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			checkRecord(t, rec, tc.want, tc.received)
		})
	}
}

func TestJSONNestedFieldsConfigured(t *testing.T) {
	p := New(Options{JSONIPFields: []string{"source.address", "peer.ip"}, JSONTimeFields: []string{"event.created"}})
	var rec Record
	line := `{"peer":{"ip":"192.0.2.9"},"source":{"address":"203.0.113.5:443"},"event":{"created":"2026-12-02T07:00:00Z"}}`
	if err := p.Parse([]byte(line), JSON, recv.AddDate(0, 0, 8), &rec); err != nil {
		t.Fatal(err)
	}
	checkRecord(t, rec, want{addr: "203.0.113.5", time: "2026-12-02T07:00:00Z"}, recv)
}

package format

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

var recv = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

type want struct {
	addr   string
	time   string // RFC 3339; "" means the received time
	method string
	path   string
	status uint32
	size   uint64
	ua     string
	auth   bool
	err    error
}

type tcase struct {
	name     string
	f        Format
	line     string
	received time.Time // zero means recv
	want     want
}

var cases = []tcase{
	// --- CLF / combined ---
	{"combined apache doc", CLF,
		`203.0.113.7 - frank [10/Oct/2026:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"`, time.Time{},
		want{addr: "203.0.113.7", time: "2026-10-10T20:55:36Z", method: "GET", path: "/apache_pb.gif", status: 200, size: 2326, ua: "Mozilla/4.08 [en] (Win98; I ;Nav)"}},
	{"offset +0530", CLF,
		`198.51.100.23 - - [24/Nov/2026:10:00:00 +0530] "GET / HTTP/1.1" 200 612 "-" "curl/8.5.0"`, time.Time{},
		want{addr: "198.51.100.23", time: "2026-11-24T04:30:00Z", method: "GET", path: "/", status: 200, size: 612, ua: "curl/8.5.0"}},
	{"offset -0700", Auto,
		`198.51.100.24 - - [23/Nov/2026:22:15:01 -0700] "HEAD /health HTTP/1.1" 204 0 "-" "kube-probe/1.30"`, time.Time{},
		want{addr: "198.51.100.24", time: "2026-11-24T05:15:01Z", method: "HEAD", path: "/health", status: 204, ua: "kube-probe/1.30"}},
	{"401 is an auth failure", CLF,
		`192.0.2.1 - - [24/Nov/2026:10:00:00 +0000] "GET /admin HTTP/1.1" 401 12`, time.Time{},
		want{addr: "192.0.2.1", time: "2026-11-24T10:00:00Z", method: "GET", path: "/admin", status: 401, size: 12, auth: true}},
	{"407 is an auth failure", Auto,
		`192.0.2.1 - - [24/Nov/2026:10:00:00 +0000] "CONNECT example.com:443 HTTP/1.1" 407 0`, time.Time{},
		want{addr: "192.0.2.1", time: "2026-11-24T10:00:00Z", method: "CONNECT", path: "example.com:443", status: 407, auth: true}},
	{"common format dash size", CLF,
		`192.0.2.1 - - [24/Nov/2026:10:00:00 +0000] "POST /login HTTP/1.1" 302 -`, time.Time{},
		want{addr: "192.0.2.1", time: "2026-11-24T10:00:00Z", method: "POST", path: "/login", status: 302}},
	{"apache escaped quotes in UA", CLF,
		`203.0.113.9 - - [24/Nov/2026:10:00:00 +0000] "GET /x HTTP/1.1" 200 5 "-" "Mozilla/5.0 \"quoted\" agent \\"`, time.Time{},
		want{addr: "203.0.113.9", time: "2026-11-24T10:00:00Z", method: "GET", path: "/x", status: 200, size: 5, ua: `Mozilla/5.0 \"quoted\" agent \\`}},
	{"nginx x22 in UA", Auto,
		`203.0.113.10 - - [24/Nov/2026:10:00:00 +0000] "GET /y?q=\x22a\x22 HTTP/1.1" 404 153 "-" "sqlmap \x22x\x22"`, time.Time{},
		want{addr: "203.0.113.10", time: "2026-11-24T10:00:00Z", method: "GET", path: `/y?q=\x22a\x22`, status: 404, size: 153, ua: `sqlmap \x22x\x22`}},
	{"ipv6 bare", Auto,
		`2001:db8::1 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "ua"`, time.Time{},
		want{addr: "2001:db8::1", time: "2026-11-24T10:00:00Z", method: "GET", path: "/", status: 200, size: 5, ua: "ua"}},
	{"ipv6 bracketed", CLF,
		`[2001:db8::2] - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "ua"`, time.Time{},
		want{addr: "2001:db8::2", time: "2026-11-24T10:00:00Z", method: "GET", path: "/", status: 200, size: 5, ua: "ua"}},
	{"ipv4-mapped unmapped", Auto,
		`::ffff:192.0.2.5 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{addr: "192.0.2.5", time: "2026-11-24T10:00:00Z", method: "GET", path: "/", status: 200, size: 5}},
	{"ipv6 zone dropped", Auto,
		`fe80::1%eth0 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{addr: "fe80::1", time: "2026-11-24T10:00:00Z", method: "GET", path: "/", status: 200, size: 5}},
	{"tls handshake as request", CLF,
		`45.148.10.1 - - [24/Nov/2026:10:00:00 +0000] "\x16\x03\x01\x02\x00\x01\x00\x01\xFC\x03\x03\xB4\x9F\xE3" 400 157 "-" "-"`, time.Time{},
		want{addr: "45.148.10.1", time: "2026-11-24T10:00:00Z", status: 400, size: 157}},
	{"dash request", Auto,
		`192.0.2.1 - - [24/Nov/2026:10:00:00 +0000] "-" 408 0 "-" "-"`, time.Time{},
		want{addr: "192.0.2.1", time: "2026-11-24T10:00:00Z", status: 408}},
	{"chrome UA version not an IP", Auto,
		`192.0.2.77 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/2.0" 200 1 "-" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"`, time.Time{},
		want{addr: "192.0.2.77", time: "2026-11-24T10:00:00Z", method: "GET", path: "/", status: 200, size: 1, ua: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"}},
	{"path with space and extra nginx fields", CLF,
		`192.0.2.2 - - [24/Nov/2026:10:00:00 +0000] "GET /a b HTTP/1.1" 200 5 "https://r/" "ua" 0.003 "-"` + "\r\n", time.Time{},
		want{addr: "192.0.2.2", time: "2026-11-24T10:00:00Z", method: "GET", path: "/a b", status: 200, size: 5, ua: "ua"}},
	{"fractional seconds in CLF date", CLF,
		`192.0.2.3 - - [24/Nov/2026:10:00:00.250 +0100] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{addr: "192.0.2.3", time: "2026-11-24T09:00:00.25Z", method: "GET", path: "/", status: 200, size: 5}},
	{"iso date in brackets", Auto,
		`192.0.2.4 - - [2026-11-24T10:00:00+01:00] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{addr: "192.0.2.4", time: "2026-11-24T09:00:00Z", method: "GET", path: "/", status: 200, size: 5}},
	{"truncated after date", CLF,
		`192.0.2.5 - - [24/Nov/2026:10:00:00 +0000]`, time.Time{},
		want{addr: "192.0.2.5", time: "2026-11-24T10:00:00Z"}},
	{"no ident fields", Auto,
		`192.0.2.6 [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{addr: "192.0.2.6", time: "2026-11-24T10:00:00Z", method: "GET", path: "/", status: 200, size: 5}},
	{"leap day 2024", CLF,
		`192.0.2.1 - - [29/Feb/2024:23:59:59 +0000] "GET / HTTP/1.1" 200 5`, time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC),
		want{addr: "192.0.2.1", time: "2024-02-29T23:59:59Z", method: "GET", path: "/", status: 200, size: 5}},
	{"999.1.1.1 host", CLF,
		`999.1.1.1 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{err: ErrBadIP}},
	{"999.1.1.1 host auto has no IP", Auto,
		`999.1.1.1 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{err: ErrNoClientIP}},
	{"hostname host", CLF,
		`www.example.com - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{err: ErrBadIP}},
	{"31 Feb", CLF,
		`192.0.2.1 - - [31/Feb/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{err: ErrBadTimestamp}},
	{"29 Feb non-leap", Auto,
		`192.0.2.1 - - [29/Feb/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{err: ErrBadTimestamp}},
	{"hour 24", CLF,
		`192.0.2.1 - - [24/Nov/2026:24:00:00 +0000] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{err: ErrBadTimestamp}},
	{"bad month", CLF,
		`192.0.2.1 - - [24/Foo/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{err: ErrBadTimestamp}},
	{"bad offset", CLF,
		`192.0.2.1 - - [24/Nov/2026:10:00:00 +2500] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{err: ErrBadTimestamp}},
	{"future", Auto,
		`192.0.2.1 - - [26/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{err: ErrFutureTimestamp}},
	{"bad status", CLF,
		`192.0.2.1 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" abc 5`, time.Time{},
		want{err: ErrMalformed}},
	{"unterminated UA", CLF,
		`192.0.2.1 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "Mozilla`, time.Time{},
		want{err: ErrMalformed}},
	{"clf without date explicit", CLF,
		`192.0.2.1 hello there world`, time.Time{},
		want{err: ErrMalformed}},
	{"clf-ish without date auto falls back", Auto,
		`192.0.2.1 hello there world`, time.Time{},
		want{addr: "192.0.2.1"}},

	// --- vhost ---
	{"apache vhost_combined", VHostCombined,
		`example.com:443 203.0.113.7 - - [24/Nov/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 5 "-" "ua"`, time.Time{},
		want{addr: "203.0.113.7", time: "2026-11-24T09:00:00Z", method: "GET", path: "/", status: 200, size: 5, ua: "ua"}},
	{"vhost in CLF mode", CLF,
		`example.com:443 203.0.113.7 - - [24/Nov/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 5 "-" "ua"`, time.Time{},
		want{addr: "203.0.113.7", time: "2026-11-24T09:00:00Z", method: "GET", path: "/", status: 200, size: 5, ua: "ua"}},
	{"nginx vhost auto", Auto,
		`shop.example.org 2001:db8::8 - - [24/Nov/2026:10:00:00 +0000] "GET /cart HTTP/2.0" 200 5 "-" "ua"`, time.Time{},
		want{addr: "2001:db8::8", time: "2026-11-24T10:00:00Z", method: "GET", path: "/cart", status: 200, size: 5, ua: "ua"}},
	{"ip vhost auto", Auto,
		`10.0.0.5 203.0.113.7 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{addr: "203.0.113.7", time: "2026-11-24T10:00:00Z", method: "GET", path: "/", status: 200, size: 5}},
	{"vhost bad client", VHostCombined,
		`example.com:443 nope - - [24/Nov/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 5`, time.Time{},
		want{err: ErrBadIP}},

	// --- syslog ---
	{"rfc5424 sshd fraction offset", Syslog,
		`<34>1 2026-11-24T10:00:00.123+01:00 mymachine sshd 123 - - Failed password for root from 198.51.100.4 port 22 ssh2`, time.Time{},
		want{addr: "198.51.100.4", time: "2026-11-24T09:00:00.123Z", auth: true}},
	{"rfc5424 SD skipped", Auto,
		`<165>1 2026-11-24T10:00:00.000003Z 10.1.1.1 evntslog - ID47 [exampleSDID@32473 iut="3" ip="10.9.9.9" note="a \] b"][x@1 y="]"] ` + "\ufeff" + `An application event from 192.0.2.44`, time.Time{},
		want{addr: "192.0.2.44", time: "2026-11-24T10:00:00.000003Z"}},
	{"rfc5424 nil timestamp", Syslog,
		`<13>1 - host app - - - connection from 192.0.2.45`, time.Time{},
		want{addr: "192.0.2.45"}},
	{"rfc5424 truncated", Syslog,
		`<34>1 2026-11-24T10:00:00Z host`, time.Time{},
		want{err: ErrBadSyslog}},
	{"rfc5424 bad timestamp", Syslog,
		`<34>1 2026-02-30T10:00:00Z host app - - - from 192.0.2.1`, time.Time{},
		want{err: ErrBadTimestamp}},
	{"rfc3164 sshd", Syslog,
		`<38>Nov 24 10:00:00 bastion sshd[4121]: Failed password for invalid user admin from 203.0.113.50 port 52144 ssh2`, time.Time{},
		want{addr: "203.0.113.50", time: "2026-11-24T10:00:00Z", auth: true}},
	{"rfc3164 iptables SRC preferred", Auto,
		`<4>Nov 24 10:00:00 fw kernel: [12345.678] IN=eth0 OUT= MAC=00:16:3e:5e:6c:00:00:16:3e:1a:2b:3c:08:00 SRC=203.0.113.9 DST=10.0.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=50 ID=0 DF PROTO=TCP SPT=443 DPT=22 WINDOW=29200 RES=0x00 SYN URGP=0`, time.Time{},
		want{addr: "203.0.113.9", time: "2026-11-24T10:00:00Z"}},
	{"SRC preferred over earlier DST", Syslog,
		`<4>Nov 24 10:00:00 fw kernel: DST=10.0.0.1 SRC=203.0.113.19 PROTO=UDP`, time.Time{},
		want{addr: "203.0.113.19", time: "2026-11-24T10:00:00Z"}},
	{"rfc3164 hostname is an IP", Syslog,
		`<34>Nov  4 10:00:00 10.0.0.1 sshd[1]: Accepted publickey for git from 198.51.100.77 port 5555 ssh2`, time.Time{},
		want{addr: "198.51.100.77", time: "2026-11-04T10:00:00Z"}},
	{"rfc3164 year rollover", Syslog,
		`<34>Dec 31 23:59:58 host sshd[1]: Invalid user x from 198.51.100.4 port 4`, time.Date(2027, 1, 1, 0, 0, 5, 0, time.UTC),
		want{addr: "198.51.100.4", time: "2026-12-31T23:59:58Z", auth: true}},
	{"rfc3164 sender slightly ahead over new year", Syslog,
		`<34>Jan  1 00:00:01 host sshd[1]: Invalid user x from 198.51.100.4 port 4`, time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC),
		want{addr: "198.51.100.4", time: "2027-01-01T00:00:01Z", auth: true}},
	{"rfc3164 no PRI auto", Auto,
		`Nov 24 10:00:00 host sshd[1]: Received disconnect from 192.0.2.9: 11: Bye [preauth]`, time.Time{},
		want{addr: "192.0.2.9", time: "2026-11-24T10:00:00Z"}},
	{"rsyslog file format", Auto,
		`2026-11-24T10:00:00.123456+01:00 host sshd[1]: Connection closed by 2001:db8::dead port 22 [preauth]`, time.Time{},
		want{addr: "2001:db8::dead", time: "2026-11-24T09:00:00.123456Z"}},
	{"pam authentication failure takes rhost", Auto,
		`<86>Nov 24 10:00:00 host sshd[7]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.21  user=root`, time.Time{},
		want{addr: "198.51.100.21", time: "2026-11-24T10:00:00Z", auth: true}},
	{"sshd invalid user ipv6", Syslog,
		`<38>Nov 24 10:00:00 host sshd[7]: Invalid user oracle from 2001:db8::77 port 4242`, time.Time{},
		want{addr: "2001:db8::77", time: "2026-11-24T10:00:00Z", auth: true}},
	{"sshd closed by authenticating user", Syslog,
		`<38>Nov 24 10:00:00 host sshd[7]: Connection closed by authenticating user root 198.51.100.22 port 4242 [preauth]`, time.Time{},
		want{addr: "198.51.100.22", time: "2026-11-24T10:00:00Z", auth: true}},
	{"postfix", Auto,
		`<22>Nov 24 10:00:00 mail postfix/smtpd[123]: connect from unknown[203.0.113.66]`, time.Time{},
		want{addr: "203.0.113.66", time: "2026-11-24T10:00:00Z"}},
	{"rfc3164 with year", Syslog,
		`<190>Nov 24 2025 10:00:00 fw01 sshd[1]: Accepted password for x from 198.51.100.9 port 22 ssh2`, time.Time{},
		want{addr: "198.51.100.9", time: "2025-11-24T10:00:00Z"}},
	{"cisco-style address/port is not extracted", Syslog,
		`<190>Nov 24 2026 10:00:00: %ASA-6-302013: Built inbound TCP connection for outside:198.51.100.9/443`, time.Time{},
		want{err: ErrNoClientIP}},
	{"rfc3164 no IP", Syslog,
		`<78>Nov 24 10:00:00 host CRON[1]: (root) CMD (run-parts /etc/cron.hourly)`, time.Time{},
		want{err: ErrNoClientIP}},
	{"rfc3164 listening on 0.0.0.0", Syslog,
		`<38>Nov 24 10:00:00 host sshd[1]: Server listening on 0.0.0.0 port 22.`, time.Time{},
		want{err: ErrNoClientIP}},
	{"rfc3164 30 Feb", Syslog,
		`<38>Feb 30 10:00:00 host sshd[1]: from 192.0.2.1`, time.Time{},
		want{err: ErrBadTimestamp}},
	{"bad PRI", Auto,
		`<999>Nov 24 10:00:00 host sshd[1]: from 192.0.2.1`, time.Time{},
		want{err: ErrBadSyslog}},
	{"syslog mode plain text", Syslog,
		`hello from 192.0.2.1`, time.Time{},
		want{err: ErrBadSyslog}},
	{"PRI without header", Syslog,
		`<13>kernel: link up on 192.0.2.8`, time.Time{},
		want{addr: "192.0.2.8"}},

	// --- JSON ---
	{"json rfc3339", JSON,
		`{"remote_addr":"203.0.113.7","time":"2026-11-24T10:00:00+01:00","request":"GET / HTTP/1.1","status":200,"body_bytes_sent":12,"http_user_agent":"x"}`, time.Time{},
		want{addr: "203.0.113.7", time: "2026-11-24T09:00:00Z", method: "GET", path: "/", status: 200, size: 12, ua: "x"}},
	{"json 401 is an auth failure", JSON,
		`{"remote_addr":"203.0.113.8","time":"2026-11-24T10:00:00Z","request":"POST /login HTTP/1.1","status":401}`, time.Time{},
		want{addr: "203.0.113.8", time: "2026-11-24T10:00:00Z", method: "POST", path: "/login", status: 401, auth: true}},
	{"json epoch seconds", Auto,
		`{"ip":"192.0.2.1","ts":1795514400,"method":"POST","path":"/api","status":"201","bytes":"-"}`, time.Time{},
		want{addr: "192.0.2.1", time: "2026-11-24T10:00:00Z", method: "POST", path: "/api", status: 201}},
	{"json epoch millis", JSON,
		`{"client_ip":"192.0.2.2","timestamp":1795514400123}`, time.Time{},
		want{addr: "192.0.2.2", time: "2026-11-24T10:00:00.123Z"}},
	{"json epoch float", JSON,
		`{"client_ip":"192.0.2.2","ts":1795514400.5}`, time.Time{},
		want{addr: "192.0.2.2", time: "2026-11-24T10:00:00.5Z"}},
	{"json missing time", JSON,
		`{"src_ip":"192.0.2.3","uri":"/x"}`, time.Time{},
		want{addr: "192.0.2.3", path: "/x"}},
	{"json time_local", JSON,
		`{"remote_addr":"192.0.2.4","time_local":"24/Nov/2026:10:00:00 +0100","size":7}`, time.Time{},
		want{addr: "192.0.2.4", time: "2026-11-24T09:00:00Z", size: 7}},
	{"json @timestamp", Auto,
		` {"@timestamp":"2026-11-24T10:00:00.5Z","src_ip":"2001:db8::3"} `, time.Time{},
		want{addr: "2001:db8::3", time: "2026-11-24T10:00:00.5Z"}},
	{"json xff list with placeholder remote_addr", JSON,
		`{"remote_addr":"-","x_forwarded_for":"203.0.113.1, 10.0.0.1"}`, time.Time{},
		want{addr: "203.0.113.1"}},
	{"json priority order", JSON,
		`{"x_forwarded_for":"203.0.113.1","remote_addr":"192.0.2.9"}`, time.Time{},
		want{addr: "192.0.2.9"}},
	{"json ip with port", JSON,
		`{"remote_addr":"[2001:db8::1]:443","ua":"a \"b\" c"}`, time.Time{},
		want{addr: "2001:db8::1", ua: `a "b" c`}},
	{"json nested ignored", JSON,
		`{"http":{"ip":"192.0.2.1"},"remote_ip":"192.0.2.10"}`, time.Time{},
		want{addr: "192.0.2.10"}},
	{"json invalid", JSON,
		`{"ip":"1.2.3.4"`, time.Time{},
		want{err: ErrBadJSON}},
	{"json array", JSON,
		`[{"ip":"1.2.3.4"}]`, time.Time{},
		want{err: ErrBadJSON}},
	{"json trailing garbage", Auto,
		`{"ip":"1.2.3.4"} x`, time.Time{},
		want{err: ErrBadJSON}},
	{"json bad ip", JSON,
		`{"ip":"999.1.1.1"}`, time.Time{},
		want{err: ErrBadIP}},
	{"json no ip", JSON,
		`{"msg":"hello 192.0.2.1"}`, time.Time{},
		want{err: ErrNoClientIP}},
	{"json bad time", JSON,
		`{"ip":"192.0.2.1","time":"yesterday"}`, time.Time{},
		want{err: ErrBadTimestamp}},
	{"json future", JSON,
		`{"ip":"192.0.2.1","time":"2027-01-01T00:00:00Z"}`, time.Time{},
		want{err: ErrFutureTimestamp}},

	// --- fallback ---
	{"fallback skips UA version", Fallback,
		`app[1]: ua=Chrome/124.0.0.0 client=198.51.100.8 done`, time.Time{},
		want{addr: "198.51.100.8"}},
	{"fallback bracketed v6 with port", Auto,
		`WARN connect from [2001:db8::5]:443 refused`, time.Time{},
		want{addr: "2001:db8::5"}},
	{"fallback v4 port and sentence end", Fallback,
		`peer 999.1.1.1 rejected, retrying 192.0.2.200:8080.`, time.Time{},
		want{addr: "192.0.2.200"}},
	{"fallback v4 end of sentence", Fallback,
		`blocked 192.0.2.201.`, time.Time{},
		want{addr: "192.0.2.201"}},
	{"fallback version numbers", Fallback,
		`version 1.2.3 build 10.0 on host a:b`, time.Time{},
		want{err: ErrNoClientIP}},
	{"fallback cidr is not an IP", Fallback,
		`route 192.0.2.0/24 via gw`, time.Time{},
		want{err: ErrNoClientIP}},
	{"fallback unspecified skipped", Auto,
		`listening on 0.0.0.0:80 and [::]:80`, time.Time{},
		want{err: ErrNoClientIP}},

	// --- garbage ---
	{"empty", Auto, ``, time.Time{}, want{err: ErrEmptyLine}},
	{"blank", CLF, " \t\r\n", time.Time{}, want{err: ErrEmptyLine}},
	{"invalid utf8", Auto, "192.0.2.1 - - \xff\xfe", time.Time{}, want{err: ErrInvalidUTF8}},
	{"NUL byte", Fallback, "192.0.2.1\x00garbage", time.Time{}, want{err: ErrBinary}},
}

func TestParse(t *testing.T) {
	p := New(Options{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			received := tc.received
			if received.IsZero() {
				received = recv
			}
			var rec Record
			rec.Status = 777 // must be reset
			rec.AuthFailure = !tc.want.auth
			err := p.Parse([]byte(tc.line), tc.f, received, &rec)
			if tc.want.err != nil {
				if !errors.Is(err, tc.want.err) {
					t.Fatalf("err = %v, want %v", err, tc.want.err)
				}
				if len(err.Error()) > 300 {
					t.Errorf("error text too long (%d bytes): %v", len(err.Error()), err)
				}
				if rec.Addr.IsValid() || rec.Status != 0 || rec.AuthFailure {
					t.Errorf("record not zeroed on error: %+v", rec)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			checkRecord(t, rec, tc.want, received)
		})
	}
}

func checkRecord(t *testing.T, rec Record, w want, received time.Time) {
	t.Helper()
	if got := rec.Addr; got != netip.MustParseAddr(w.addr) {
		t.Errorf("Addr = %v, want %v", got, w.addr)
	}
	wt := received.UTC()
	if w.time != "" {
		wt = ts(w.time)
	}
	if !rec.Time.Equal(wt) || rec.Time.Location() != time.UTC {
		t.Errorf("Time = %v (%v), want %v UTC", rec.Time, rec.Time.Location(), wt)
	}
	if string(rec.Method) != w.method || (w.method == "") != (rec.Method == nil) {
		t.Errorf("Method = %q, want %q", rec.Method, w.method)
	}
	if string(rec.Path) != w.path || (w.path == "") != (rec.Path == nil) {
		t.Errorf("Path = %q, want %q", rec.Path, w.path)
	}
	if rec.Status != w.status {
		t.Errorf("Status = %d, want %d", rec.Status, w.status)
	}
	if rec.Size != w.size {
		t.Errorf("Size = %d, want %d", rec.Size, w.size)
	}
	if string(rec.UserAgent) != w.ua || (w.ua == "") != (rec.UserAgent == nil) {
		t.Errorf("UserAgent = %q, want %q", rec.UserAgent, w.ua)
	}
	if rec.AuthFailure != w.auth {
		t.Errorf("AuthFailure = %v, want %v", rec.AuthFailure, w.auth)
	}
}

func TestFormatNames(t *testing.T) {
	for _, f := range []Format{Auto, CLF, VHostCombined, Syslog, JSON, Fallback} {
		g, err := ParseFormat(f.String())
		if err != nil || g != f {
			t.Errorf("ParseFormat(%q) = %v, %v", f.String(), g, err)
		}
	}
	for name, want := range map[string]Format{"": Auto, "combined": CLF, "JSON": JSON, " vhost ": VHostCombined} {
		if g, err := ParseFormat(name); err != nil || g != want {
			t.Errorf("ParseFormat(%q) = %v, %v; want %v", name, g, err, want)
		}
	}
	if _, err := ParseFormat("ltsv"); err == nil {
		t.Error("ParseFormat(ltsv) succeeded")
	}
	if s := Format(42).String(); s != "Format(42)" {
		t.Errorf("String = %q", s)
	}
	var rec Record
	if err := New(Options{}).Parse([]byte("192.0.2.1"), Format(42), recv, &rec); err == nil {
		t.Error("unknown Format accepted")
	}
}

func TestOptions(t *testing.T) {
	p := New(Options{JSONIPFields: []string{"peer"}, JSONTimeFields: []string{"when"}, MaxFuture: time.Hour})
	var rec Record
	if err := p.Parse([]byte(`{"peer":"192.0.2.1","when":"2026-11-24T12:30:00Z","ip":"192.0.2.2"}`), JSON, recv, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Addr != netip.MustParseAddr("192.0.2.1") || !rec.Time.Equal(ts("2026-11-24T12:30:00Z")) {
		t.Errorf("got %v %v", rec.Addr, rec.Time)
	}
	err := p.Parse([]byte(`192.0.2.1 - - [24/Nov/2026:13:00:01 +0000] "GET / HTTP/1.1" 200 5`), CLF, recv, &rec)
	if !errors.Is(err, ErrFutureTimestamp) {
		t.Errorf("err = %v, want ErrFutureTimestamp", err)
	}
}

func TestErrorTextTruncated(t *testing.T) {
	line := "999.1.1.1 " + strings.Repeat("é", 5000)
	var rec Record
	err := New(Options{}).Parse([]byte(line), Fallback, recv, &rec)
	if !errors.Is(err, ErrNoClientIP) {
		t.Fatalf("err = %v", err)
	}
	if len(err.Error()) > 120 {
		t.Errorf("error text is %d bytes: %s", len(err.Error()), err)
	}
}

func TestHugeLine(t *testing.T) {
	big := strings.Repeat("Mozilla/5.0 \\\" 1.2.3 a:b:c ", 1<<20/27)
	lines := []string{
		`192.0.2.1 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "` + big + `"`,
		`192.0.2.1 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "` + big,
		`<34>Nov 24 10:00:00 host app: ` + big,
		`<34>1 2026-11-24T10:00:00Z h a - - [x y="` + big,
		`{"msg":"` + strings.ReplaceAll(big, `\`, `\\`) + `","ip":"192.0.2.1"}`,
		strings.Repeat("1.1 ", 1<<18),
		strings.Repeat("\\", 1<<20) + `"`,
		strings.Repeat(`\"`, 1<<19),
		"<1>Nov 24 10:00:00 h k: " + strings.Repeat("SRC=", 1<<18),
		strings.Repeat("SRC=", 1<<18),
		strings.Repeat("[", 1<<20),
		strings.Repeat("1 [", 1<<18),
		strings.Repeat("{", 1<<20),
		"{" + strings.Repeat(`"a":1,`, 1<<17) + `"ip":"1.2.3.4"}`,
		strings.Repeat("a:", 1<<19),
		strings.Repeat("1.1.1.1.", 1<<17),
		strings.Repeat("<1>1 ", 1<<17),
		"<1>1 - h a p m " + strings.Repeat(`[a="\`, 1<<17),
		strings.Repeat(`"`, 1<<20),
		strings.Repeat(" ", 1<<20) + "x",
	}
	p := New(Options{})
	for _, f := range []Format{Auto, CLF, VHostCombined, Syslog, JSON, Fallback} {
		for i, l := range lines {
			start := time.Now()
			var rec Record
			_ = p.Parse([]byte(l), f, recv, &rec)
			if d := time.Since(start); d > time.Second {
				t.Errorf("format %v line %d took %v", f, i, d)
			}
		}
	}
}

func TestConcurrent(t *testing.T) {
	p := New(Options{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rec Record
			for i := 0; i < 200; i++ {
				tc := cases[(g*31+i)%len(cases)]
				received := tc.received
				if received.IsZero() {
					received = recv
				}
				err := p.Parse([]byte(tc.line), tc.f, received, &rec)
				if (err == nil) != (tc.want.err == nil) {
					t.Errorf("%s: err = %v", tc.name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestZeroAllocsCLF(t *testing.T) {
	p := New(Options{})
	lines := [][]byte{
		[]byte(benchCombined),
		[]byte(`2001:db8::1 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "ua"`),
		[]byte(`example.com:443 203.0.113.7 - - [24/Nov/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 5 "-" "ua"`),
	}
	var rec Record
	for _, l := range lines {
		for _, f := range []Format{CLF, Auto} {
			n := testing.AllocsPerRun(100, func() {
				if err := p.Parse(l, f, recv, &rec); err != nil {
					t.Fatal(err)
				}
			})
			if n != 0 {
				t.Errorf("%v %q: %v allocs per line", f, l[:20], n)
			}
		}
	}
}

// TestParseAddrMatchesNetip pins the hand-written shape checks to netip on
// the spellings most likely to trip them.
func TestParseAddrMatchesNetip(t *testing.T) {
	for _, s := range []string{
		"1.2.3.4", "255.255.255.255", "256.1.1.1", "01.2.3.4", "0.0.0.0", "1.2.3", "1.2.3.4.5", "1..2.3",
		"::", "::1", "1::", "::ffff:192.168.100.200", "1:2:3:4:5:6:1.2.3.4", "::1.2.3.4", "1:2:3:4:5:6:7:8",
		"1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "0000:0000::00001", "2001:DB8::A",
		"fe80::1%eth0", "fe80::1%", "1.2.3.4%eth0", "10:00:00", "00:16:3e:5e:6c:00", "1:2:3:4:5:6:7", ":::",
		"1:2:3:4:5:6:7:1.2.3.4", "::ffff:1.2.3.04", "2001:db8:::1", "::ffff:0:1.2.3.4",
	} {
		a, ok := parseAddr([]byte(s))
		n, err := netip.ParseAddr(s)
		if (err == nil) != ok || (ok && n.WithZone("").Unmap() != a) {
			t.Errorf("%q: parseAddr = %v, %v; netip = %v, %v", s, a, ok, n, err)
		}
	}
}

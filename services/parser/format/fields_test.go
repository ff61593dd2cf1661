package format

import (
	"testing"
	"time"
)

// The fields beyond the IP that the dims windows count: virtual host,
// syslog program and login event.
func TestFieldsBeyondIP(t *testing.T) {
	p := New(Options{})
	recv := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		f                    Format
		line                 string
		vhost, program, path string
		event                Event
	}{
		{VHostCombined, `shop.example.com:443 203.0.113.7 - - [02/Dec/2026:11:59:00 +0000] "GET /cart?id=1 HTTP/1.1" 200 12 "-" "curl/8"`, "shop.example.com:443", "", "/cart?id=1", EventNone},
		{Auto, `shop.example.com 203.0.113.7 - - [02/Dec/2026:11:59:00 +0000] "GET / HTTP/1.1" 200 12`, "shop.example.com", "", "/", EventNone},
		{Auto, `203.0.113.7 - - [02/Dec/2026:11:59:00 +0000] "GET / HTTP/1.1" 200 12`, "", "", "/", EventNone},
		{Auto, `{"remote_addr":"203.0.113.7","time":"2026-12-02T11:59:00Z","request":"GET /x HTTP/1.1","status":200,"host":"api.example.com"}`, "api.example.com", "", "/x", EventNone},
		{Auto, `<38>Dec  2 11:59:00 host1 sshd[42]: Failed password for root from 203.0.113.7 port 22 ssh2`, "", "sshd", "", EventAuthFailure},
		{Auto, `<38>Dec  2 11:59:00 host1 sshd[42]: Invalid user admin from 203.0.113.7 port 22`, "", "sshd", "", EventInvalidUser},
		{Auto, `<38>Dec  2 11:59:00 host1 sshd[42]: Accepted publickey for deploy from 203.0.113.7 port 22 ssh2`, "", "sshd", "", EventAuthSuccess},
		{Auto, `<38>1 2026-12-02T11:59:00Z host1 sshd 42 - - Failed password for root from 203.0.113.7 port 22 ssh2`, "", "sshd", "", EventAuthFailure},
		{Auto, `<38>Dec  2 11:59:00 host1 kernel: IN=eth0 SRC=203.0.113.7 DST=192.0.2.1`, "", "kernel", "", EventNone},
		{Auto, `<190>Dec  2 11:59:00 web1 nginx: 203.0.113.7 - - [02/Dec/2026:11:59:00 +0000] "GET /a HTTP/1.1" 404 1`, "", "nginx", "/a", EventNone},
	} {
		var rec Record
		if err := p.Parse([]byte(tc.line), tc.f, recv, &rec); err != nil {
			t.Fatalf("%s: %v", tc.line, err)
		}
		if string(rec.VHost) != tc.vhost || string(rec.Program) != tc.program || string(rec.Path) != tc.path || rec.Event != tc.event {
			t.Fatalf("%s:\n got vhost %q program %q path %q event %v\nwant vhost %q program %q path %q event %v",
				tc.line, rec.VHost, rec.Program, rec.Path, rec.Event, tc.vhost, tc.program, tc.path, tc.event)
		}
	}
}

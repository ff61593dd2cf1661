package senders

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// HAProxy's HTTP log format ("option httplog") over syslog UDP, in both of
// the header formats HAProxy writes.
func TestHAProxyHTTPLog(t *testing.T) {
	requireRoot(t)
	bin := program(t, "haproxy", "/usr/sbin/haproxy")
	for _, format := range []string{"rfc3164", "rfc5424"} {
		t.Run(format, func(t *testing.T) {
			lt := startLogtally(t)
			dir := t.TempDir()
			addr := "127.0.0.1:" + freePort(t)
			conf := writeFile(t, dir, "haproxy.cfg", fmt.Sprintf(`global
    log %[1]s format %[2]s local0
    pidfile %[3]s

defaults
    mode http
    log global
    option httplog
    option dontlognull
    timeout connect 1s
    timeout client 5s
    timeout server 5s

frontend web
    bind %[4]s
    http-request return status 200 content-type text/plain string ok if { path /ok }
    http-request return status 404 if { path /missing }
    http-request return status 401 if { path /login }
    http-request return status 500 if { path /boom }
    http-request return status 503 if { path /busy }
`, lt.syslogUDP(), format, filepath.Join(dir, "haproxy.pid"), addr))
			p := start(t, nil, bin, "-db", "-f", conf)
			waitListening(t, p, addr)
			o := newOracle()
			reqs := mixedRequests(clientIPs(120))
			window(t, 10*time.Second, func(minute time.Time) { fire(t, o, minute, "http://"+addr, reqs) })
			checkClasses(t, o)
			lt.verify(t, o, 0)
			lt.checkSources(t, map[string]int{"syslog-udp": len(reqs)})
		})
	}
}

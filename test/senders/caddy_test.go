package senders

import (
	"fmt"
	"testing"
	"time"
)

// Caddy's JSON access log, written by its net writer to logtally's TCP
// listener: one JSON object a line, the client under "request"
// ("remote_ip"), "ts" in float seconds.
func TestCaddyJSONAccessLog(t *testing.T) {
	requireRoot(t)
	bin := program(t, "caddy", "/usr/bin/caddy")
	lt := startLogtally(t)
	dir := t.TempDir()
	addr := "127.0.0.1:" + freePort(t)
	conf := writeFile(t, dir, "Caddyfile", fmt.Sprintf(`{
	admin off
	auto_https off
	storage file_system %[1]s
}

http://%[2]s {
	log {
		output net %[3]s
		format json
	}
	respond /ok "ok" 200
	respond /missing 404
	respond /login 401
	respond /boom 500
	respond /busy 503
}
`, dir, addr, lt.tcp()))
	p := start(t, []string{"HOME=" + dir, "XDG_CONFIG_HOME=" + dir, "XDG_DATA_HOME=" + dir}, bin, "run", "--config", conf, "--adapter", "caddyfile")
	waitListening(t, p, addr)

	// Every client from its own address. Debian's Caddy (2.6) has no
	// trusted_proxies, so the client is the peer ("remote_ip"; 2.7 and
	// later also log "client_ip", which logtally prefers: the unit tests
	// of services/parser/format have such lines); an X-Forwarded-For
	// header a client sets is logged among the request headers and must
	// not be counted.
	reqs := mixedRequests(clientIPs(100))
	for i, src := range clientIPs(40) {
		reqs = append(reqs, request{src: src, ip: src, path: paths[i%len(paths)],
			header: map[string]string{"X-Forwarded-For": "203.0.113.99"}})
	}
	o := newOracle()
	window(t, 10*time.Second, func(minute time.Time) { fire(t, o, minute, "http://"+addr, reqs) })
	checkClasses(t, o)
	lt.verify(t, o, 0)
	lt.checkSources(t, map[string]int{"tcp": len(reqs)})
}

package senders

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// nginxConf is an nginx that answers every class of status on paths and
// logs each request with accessLog.
func nginxConf(dir, listen, accessLog string) string {
	return fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    %[3]s
    server {
        listen %[2]s;
        location = /ok      { return 200 "ok\n"; }
        location = /missing { return 404; }
        location = /login   { return 401; }
        location = /boom    { return 500; }
        location = /busy    { return 503; }
    }
}
`, dir, listen, accessLog)
}

func startNginx(t *testing.T, accessLog string) (base string) {
	t.Helper()
	bin := program(t, "nginx", "/usr/sbin/nginx")
	dir := t.TempDir()
	addr := "127.0.0.1:" + freePort(t)
	conf := writeFile(t, dir, "nginx.conf", nginxConf(dir, addr, accessLog))
	p := start(t, nil, bin, "-e", "stderr", "-p", dir, "-c", conf)
	waitListening(t, p, addr)
	return "http://" + addr
}

// nginx's syslog access log: one RFC 3164 datagram per request,
// "<190>Dec  2 07:30:00 host nginx: 127.0.0.5 - - [02/Dec/2026:07:30:00 +0000] "GET /ok HTTP/1.1" 200 3 "-" "Go-http-client/1.1"".
func TestNginxSyslogUDP(t *testing.T) {
	requireRoot(t)
	lt := startLogtally(t)
	base := startNginx(t, fmt.Sprintf("access_log syslog:server=%s,tag=nginx combined;", lt.syslogUDP()))
	o := newOracle()
	reqs := mixedRequests(clientIPs(120))
	window(t, 10*time.Second, func(minute time.Time) { fire(t, o, minute, base, reqs) })
	checkClasses(t, o)
	lt.verify(t, o, 0)
	lt.checkSources(t, map[string]int{"syslog-udp": len(reqs)})
}

// nginx writes its access log to a file; rsyslog's imfile follows it and
// omfwd forwards every line over TCP with octet-counted framing.
func TestNginxFileRsyslogOctetCounted(t *testing.T) {
	requireRoot(t)
	rsyslogd := program(t, "rsyslogd", "/usr/sbin/rsyslogd")
	lt := startLogtally(t)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "access.log")
	if err := os.WriteFile(logFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	base := startNginx(t, fmt.Sprintf("access_log %s combined;", logFile))
	conf := writeFile(t, dir, "rsyslog.conf", fmt.Sprintf(`global(workDirectory="%[1]s")
module(load="imfile")
input(type="imfile" file="%[2]s" tag="nginx:" severity="info" facility="local7")
if $programname == "nginx" then {
    action(type="omfwd" target="127.0.0.1" port="%[3]s" protocol="tcp"
           TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
}
stop
`, dir, logFile, port(lt.syslogTCP())))
	p := start(t, nil, rsyslogd, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	// imfile reads a file it has no state for from its start, so a line
	// written before it watches the file is not lost; the pid file only
	// shows that rsyslogd parsed its configuration and is running.
	waitFor(t, p, "rsyslogd pid file", 20*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(dir, "rsyslogd.pid"))
		return err == nil
	})
	o := newOracle()
	reqs := mixedRequests(clientIPs(120))
	window(t, 10*time.Second, func(minute time.Time) { fire(t, o, minute, base, reqs) })
	checkClasses(t, o)
	lt.verify(t, o, 0)
	lt.checkSources(t, map[string]int{"syslog-tcp": len(reqs)})
}

// checkClasses makes sure the workload exercised every class, so that a
// counter stuck at 0 cannot pass.
func checkClasses(t *testing.T, o *oracle) {
	t.Helper()
	sum, _ := o.total()
	if sum.Status4xx == 0 || sum.Status5xx == 0 || sum.AuthFailures == 0 || sum.Requests == sum.Status4xx+sum.Status5xx {
		t.Fatalf("the workload misses a class: %+v", sum)
	}
}

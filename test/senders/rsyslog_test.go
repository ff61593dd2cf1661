package senders

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// rsyslog receives sshd's messages on a unix socket (imuxsock, as from
// syslog(3)) and forwards those of 203.0.113.0/24 as RFC 5424 over TCP with
// octet-counted framing, the others as RFC 3164 over TCP with newline
// framing (omfwd's default). imuxsock keeps a message's own timestamp only
// with both IgnoreTimestamp="off" and UseSysTimeStamp="off".
func TestRsyslogSSHD(t *testing.T) {
	requireRoot(t)
	bin := program(t, "rsyslogd", "/usr/sbin/rsyslogd")
	lt := startLogtally(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "log.sock")
	conf := writeFile(t, dir, "rsyslog.conf", fmt.Sprintf(`global(workDirectory="%[1]s")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="%[2]s" IgnoreTimestamp="off" UseSysTimeStamp="off" RateLimit.Interval="0")
if $programname == "sshd" then {
    if $msg contains "203.0.113." then {
        action(type="omfwd" target="127.0.0.1" port="%[3]s" protocol="tcp"
               TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
    } else {
        action(type="omfwd" target="127.0.0.1" port="%[3]s" protocol="tcp"
               template="RSYSLOG_TraditionalForwardFormat")
    }
}
stop
`, dir, sock, port(lt.syslogTCP())))
	p := start(t, nil, bin, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	waitFor(t, p, "rsyslogd's socket "+sock, 20*time.Second, func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	n5424, n3164 := sshdWorkload(t, lt, sock)
	lt.checkSources(t, map[string]int{"syslog-tcp": n5424 + n3164})
}

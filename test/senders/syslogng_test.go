package senders

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// syslogNG finds syslog-ng: installed, or unpacked by .ci/run into .bin/
// when rsyslog is the installed system logger (Debian's two packages
// conflict), and returns it with the flags and environment that make an
// unpacked copy find its modules and library.
func syslogNG(t *testing.T) (bin string, args, env []string) {
	t.Helper()
	bin = program(t, "syslog-ng", "/usr/sbin/syslog-ng", "../../.bin/syslog-ng/usr/sbin/syslog-ng")
	if root, ok := strings.CutSuffix(bin, "/usr/sbin/syslog-ng"); ok && root != "" {
		lib := filepath.Join(root, "usr/lib/syslog-ng")
		mods, _ := filepath.Glob(filepath.Join(lib, "3.*"))
		if len(mods) == 1 {
			args = append(args, "--module-path="+mods[0])
		}
		env = append(env, "LD_LIBRARY_PATH="+lib)
	}
	return bin, args, env
}

// syslog-ng receives sshd's messages on a unix datagram socket and
// forwards those of 203.0.113.0/24 with its syslog() driver (RFC 5424 over
// TCP, octet-counted as RFC 6587 has it), the others with network() (RFC
// 3164 over UDP).
func TestSyslogNGSSHD(t *testing.T) {
	requireRoot(t)
	bin, args, env := syslogNG(t)
	lt := startLogtally(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "log.sock")
	conf := writeFile(t, dir, "syslog-ng.conf", fmt.Sprintf(`@version: 3.38
options { use-dns(no); dns-cache(no); keep-hostname(yes); stats_freq(0); };
source s_local { unix-dgram("%[1]s"); };
filter f_sshd { program("sshd"); };
filter f_5424 { message("203.0.113." type(string) flags(substring)); };
destination d_5424 { syslog("127.0.0.1" port(%[2]s) transport("tcp")); };
destination d_3164 { network("127.0.0.1" port(%[3]s) transport("udp")); };
log { source(s_local); filter(f_sshd); filter(f_5424); destination(d_5424); flags(final); };
log { source(s_local); filter(f_sshd); destination(d_3164); };
`, sock, port(lt.syslogTCP()), port(lt.syslogUDP())))
	args = append(args, "-F", "--no-caps", "--stderr", "-f", conf,
		"-R", filepath.Join(dir, "persist"), "-p", filepath.Join(dir, "pid"), "-c", filepath.Join(dir, "ctl"))
	p := start(t, env, bin, args...)
	waitFor(t, p, "syslog-ng's socket "+sock, 20*time.Second, func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	n5424, n3164 := sshdWorkload(t, lt, sock)
	lt.checkSources(t, map[string]int{"syslog-tcp": n5424, "syslog-udp": n3164})
}

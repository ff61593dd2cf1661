package ingest

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// udpRcvbufErrors is Udp RcvbufErrors of /proc/net/snmp: datagrams the
// kernel dropped at a full receive buffer, on every socket of the network
// namespace.
func udpRcvbufErrors(t testing.TB) (uint64, bool) {
	f, err := os.Open("/proc/net/snmp")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var head []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "Udp:" {
			continue
		}
		if head == nil {
			head = fields
			continue
		}
		for i, name := range head {
			if name == "RcvbufErrors" && i < len(fields) {
				n, err := strconv.ParseUint(fields[i], 10, 64)
				return n, err == nil
			}
		}
	}
	return 0, false
}

// TestUDPFloodNothingSilent floods the syslog UDP listener, whose receive
// buffer is as small as the kernel allows, far faster than it can read.
// Every datagram sent is accounted for: a line in the raw stream, or a
// drop counted with its reason. The kernel's drops come from the socket's
// own counter (SO_RXQ_OVFL); /proc/net/snmp RcvbufErrors, which counts
// every socket of the machine's network namespace, must have grown by at
// least as much.
func TestUDPFloodNothingSilent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("kernel drops are counted on Linux only")
	}
	e := newEnv(t, func(c *Config) { c.UDPRcvbuf = 4096; c.TCPAddr = "" })
	snmp0, snmpOK := udpRcvbufErrors(t)
	conn := dial(t, "udp", e.svc.SyslogUDPAddr())
	lines := e.svc.m.lines.WithLabelValues(SourceSyslogUDP)
	accounted := func() float64 { return counterValue(lines) + e.udpDropped("") }

	const burst = 20000
	sent := 0
	send := func(msg string) {
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatalf("send: %v", err)
		}
		sent++
	}
	t0 := time.Now()
	for i := range burst {
		send(fmt.Sprintf("<13>Jan  1 00:00:00 host sshd[1]: Failed password for root from 198.51.100.%d port 22 ssh2 #%d", i%250, i))
	}
	took := time.Since(t0)
	// The drops of a burst ride on the next datagram that gets in: send
	// one after another until everything sent is accounted for.
	deadline := time.Now().Add(20 * time.Second)
	for accounted() != float64(sent) {
		if time.Now().After(deadline) {
			t.Fatalf("sent %d, accounted for %.0f (lines %.0f, no slot %.0f, kernel %.0f)", sent, accounted(),
				counterValue(lines), e.udpDropped("no_batch_slot"), e.udpDropped("kernel_rcvbuf"))
		}
		send("<13>after the burst")
		// Until it is read, or another is needed (this one was dropped,
		// or the drops before it were counted already).
		for wait := time.Now().Add(200 * time.Millisecond); accounted() != float64(sent) && time.Now().Before(wait); {
			time.Sleep(time.Millisecond)
		}
	}
	kernel, noSlot, read := e.udpDropped("kernel_rcvbuf"), e.udpDropped("no_batch_slot"), counterValue(lines)
	if kernel == 0 {
		t.Fatalf("no kernel drops from %d datagrams in %s into a %v-byte buffer: the test did not test", burst, took,
			e.metricValue(t, "logtally_ingest_syslog_udp_rcvbuf_bytes"))
	}
	// Every line that was read is in the stream.
	msgs := e.waitEntries(t, SourceSyslogUDP, int(read), 20*time.Second)
	if l, o := entries(msgs, SourceSyslogUDP); float64(l+o) != read {
		t.Errorf("%d entries stored, %.0f lines read", l+o, read)
	}
	t.Logf("%d datagrams (%d in %s, then %d more): %.0f lines, %.0f dropped by the kernel, %.0f for want of a batch slot",
		sent, burst, took.Round(time.Millisecond), sent-burst, read, kernel, noSlot)
	if snmpOK {
		snmp1, _ := udpRcvbufErrors(t)
		if d := snmp1 - snmp0; float64(d) < kernel {
			t.Errorf("/proc/net/snmp RcvbufErrors grew by %d, less than the %.0f kernel drops counted", d, kernel)
		} else {
			t.Logf("/proc/net/snmp RcvbufErrors grew by %d (every socket of the namespace)", d)
		}
	}
}

// TestUDPRcvbuf: -ingest.syslog.udp-rcvbuf sizes the socket, and the
// gauge shows what the kernel granted: twice the request on Linux, capped
// at twice net.core.rmem_max (a capped request is logged).
func TestUDPRcvbuf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the size is read back on Linux only")
	}
	raw, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Skip(err)
	}
	rmemMax, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{64 << 10, 64 << 20} {
		e := newEnv(t, func(c *Config) { c.UDPRcvbuf = want; c.TCPAddr = "" })
		got := e.metricValue(t, "logtally_ingest_syslog_udp_rcvbuf_bytes")
		if exp := 2 * min(want, rmemMax); got != float64(exp) {
			t.Errorf("-ingest.syslog.udp-rcvbuf=%d with rmem_max %d: gauge %v, want %d", want, rmemMax, got, exp)
		}
		if granted := rcvbufGranted(int(got)); granted != min(want, rmemMax) {
			t.Errorf("-ingest.syslog.udp-rcvbuf=%d with rmem_max %d: granted %d", want, rmemMax, granted)
		}
	}
}

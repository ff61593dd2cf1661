package ingest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestTCPLines(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MaxLineBytes = 100
		c.Format = "combined"
	})
	before := time.Now().UnixMilli()
	c := dial(t, "tcp", e.svc.TCPAddr())
	long := strings.Repeat("L", 250)
	huge := strings.Repeat("H", 40000) // longer than the read buffer
	mustWrite(t, c, "alpha\nbeta\r\n\n"+long+"\ngamma\r\n"+huge+"\r\n"+strings.Repeat("m", 100)+"\ndelta")
	_ = c.Close() // EOF keeps the unterminated last line

	msgs := e.waitEntries(t, SourceTCP, 8, 10*time.Second)
	after := time.Now().UnixMilli()
	// The empty line travels as an empty entry (the parser dead-letters it).
	if got, want := strings.Join(linesOf(msgs, SourceTCP), "|"), "alpha|beta||gamma|"+strings.Repeat("m", 100)+"|delta"; got != want {
		t.Errorf("lines %q\nwant %q", got, want)
	}
	var lengths []uint64
	for _, m := range msgs {
		b := m.batch
		if m.subject != "logs.raw.tcp" || b.Source != SourceTCP || b.Format != "combined" {
			t.Errorf("message %d: subject %s source %q format %q", m.seq, m.subject, b.Source, b.Format)
		}
		if b.Peer != c.LocalAddr().String() {
			t.Errorf("peer %q, want %q", b.Peer, c.LocalAddr())
		}
		if b.ReceivedUnixMs < before || b.ReceivedUnixMs > after {
			t.Errorf("received_unix_ms %d not in [%d, %d]", b.ReceivedUnixMs, before, after)
		}
		if !hasPrefix(m.msgID, testInstance+"-tcp-") {
			t.Errorf("Nats-Msg-Id %q", m.msgID)
		}
		for _, o := range b.Oversized {
			lengths = append(lengths, o.Length)
			switch o.Length {
			case 250:
				if string(o.Prefix) != long {
					t.Errorf("prefix of the 250-byte line is %d bytes", len(o.Prefix))
				}
			case 40000:
				if string(o.Prefix) != strings.Repeat("H", oversizedPrefix) {
					t.Errorf("prefix of the 40000-byte line is %d bytes", len(o.Prefix))
				}
			}
		}
	}
	if fmt.Sprint(lengths) != "[250 40000]" {
		t.Errorf("oversized lengths %v, want [250 40000]", lengths)
	}
	if v := counterValue(e.svc.m.empty.WithLabelValues(SourceTCP)); v != 1 {
		t.Errorf("empty lines %v, want 1", v)
	}
	if v := counterValue(e.svc.m.lines.WithLabelValues(SourceTCP)); v != 6 {
		t.Errorf("lines_total %v, want 6", v)
	}
	if v := counterValue(e.svc.m.oversized.WithLabelValues(SourceTCP)); v != 2 {
		t.Errorf("oversized_lines_total %v, want 2", v)
	}
	if failed := e.health.Ready(); len(failed) > 0 {
		t.Errorf("not ready: %v", failed)
	}
}

func TestBatchingBatches(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BatchLinger = 50 * time.Millisecond })
	const n = 10000
	c := dial(t, "tcp", e.svc.TCPAddr())
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "203.0.113.%d - - [01/Jan/2025:00:00:00 +0000] \"GET /item/%d HTTP/1.1\" 200 512\n", i%250, i)
	}
	mustWrite(t, c, sb.String())
	msgs := e.waitEntries(t, SourceTCP, n, 20*time.Second)
	got := linesOf(msgs, SourceTCP)
	if len(got) != n {
		t.Fatalf("%d lines, want %d", len(got), n)
	}
	if len(msgs) > n/100 {
		t.Errorf("%d messages for %d lines: not batched", len(msgs), n)
	}
	seen := map[string]bool{}
	for _, l := range got {
		seen[l] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct lines, want %d", len(seen), n)
	}
	t.Logf("%d lines in %d messages", n, len(msgs))
}

func TestSyslog(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxLineBytes = 200 })
	u := dial(t, "udp", e.svc.SyslogUDPAddr())
	// Empty datagrams ("\n" and zero bytes) become empty entries.
	for _, m := range []string{"<13>Jan  1 00:00:00 host sshd[1]: udp one\n", "<13>udp two", "\n", "", "<13>" + strings.Repeat("u", 300)} {
		mustWrite(t, u, m)
	}

	oc := dial(t, "tcp", e.svc.SyslogTCPAddr())
	mustWrite(t, oc, octet("<13>oct one")+octet("<13>oct two\nsecond line of two")+octet("")+octet("<13>"+strings.Repeat("o", 500)))
	nc := dial(t, "tcp", e.svc.SyslogTCPAddr())
	mustWrite(t, nc, "<13>nl one\n\n<13>nl two\r\n")

	msgs := e.waitEntries(t, SourceSyslogUDP, 5, 10*time.Second)
	msgs = e.waitEntries(t, SourceSyslogTCP, 7, 10*time.Second)
	udp := linesOf(msgs, SourceSyslogUDP)
	sort.Strings(udp) // datagrams may be split over batches published concurrently
	if got, want := fmt.Sprintf("%q", udp), fmt.Sprintf("%q", []string{"", "", "<13>Jan  1 00:00:00 host sshd[1]: udp one", "<13>udp two"}); got != want {
		t.Errorf("udp lines %s, want %s", got, want)
	}
	tcp := linesOf(msgs, SourceSyslogTCP)
	want := map[string]int{"<13>oct one": 1, "<13>oct two\nsecond line of two": 1, "<13>nl one": 1, "<13>nl two": 1, "": 2}
	for _, l := range tcp {
		if want[l] == 0 {
			t.Errorf("unexpected syslog tcp line %q", l)
		}
		want[l]--
	}
	for l, n := range want {
		if n != 0 {
			t.Errorf("syslog tcp line %q: %d missing (got %q)", l, n, tcp)
		}
	}
	for src, n := range map[string]float64{SourceSyslogUDP: 2, SourceSyslogTCP: 2} {
		if v := counterValue(e.svc.m.empty.WithLabelValues(src)); v != n {
			t.Errorf("%s empty lines %v, want %v", src, v, n)
		}
	}
	for _, m := range msgs {
		if m.batch.Format != FormatSyslog || m.subject != "logs.raw."+m.batch.Source {
			t.Errorf("batch %d: format %q subject %s", m.seq, m.batch.Format, m.subject)
		}
		for _, o := range m.batch.Oversized {
			if m.batch.Source == SourceSyslogUDP && o.Length != 304 || m.batch.Source == SourceSyslogTCP && o.Length != 504 {
				t.Errorf("%s oversized length %d", m.batch.Source, o.Length)
			}
		}
	}
	if _, o := entries(msgs, ""); o != 2 {
		t.Errorf("%d oversized entries, want 2", o)
	}
}

// TestLogger sends with util-linux logger(1) when it is installed.
func TestLogger(t *testing.T) {
	path, err := exec.LookPath("logger")
	if err != nil {
		t.Skip("logger not installed")
	}
	e := newEnv(t, nil)
	msg := "sshd[1]: Failed password for root from 198.51.100.4 port 22 ssh2"
	for _, mode := range []struct {
		flag string
		addr net.Addr
	}{{"--udp", e.svc.SyslogUDPAddr()}, {"--tcp", e.svc.SyslogTCPAddr()}} {
		_, port, _ := net.SplitHostPort(mode.addr.String())
		out, err := exec.Command(path, "--server", "127.0.0.1", "--port", port, mode.flag, msg).CombinedOutput()
		if err != nil {
			t.Fatalf("logger %s: %v: %s", mode.flag, err, out)
		}
	}
	e.waitEntries(t, SourceSyslogUDP, 1, 10*time.Second)
	msgs := e.waitEntries(t, SourceSyslogTCP, 1, 10*time.Second)
	for _, src := range []string{SourceSyslogUDP, SourceSyslogTCP} {
		lines := linesOf(msgs, src)
		if len(lines) != 1 || !strings.HasSuffix(lines[0], msg) || !strings.HasPrefix(lines[0], "<") {
			t.Errorf("%s: lines %q", src, lines)
		}
	}
}

// TestStopFlushesPartialBatch: with a linger of an hour only Stop can
// seal the batch.
func TestStopFlushesPartialBatch(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BatchLinger = time.Hour })
	c := dial(t, "tcp", e.svc.TCPAddr())
	mustWrite(t, c, "one\ntwo\nthree\n")
	poll(t, 10*time.Second, "lines read", func() bool {
		return counterValue(e.svc.m.lines.WithLabelValues(SourceTCP)) == 3
	})
	if msgs := e.fetch(t); len(msgs) != 0 {
		t.Fatalf("%d messages before Stop", len(msgs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.svc.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	msgs := e.fetch(t)
	if got := strings.Join(linesOf(msgs, SourceTCP), "|"); got != "one|two|three" || len(msgs) != 1 {
		t.Errorf("after stop: %d messages, lines %q", len(msgs), got)
	}
	// The listener is closed and the connection ended.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("connection after stop: %v, want EOF", err)
	}
	if _, err := net.DialTimeout("tcp", e.svc.TCPAddr().String(), time.Second); err == nil {
		t.Error("listener still accepts after stop")
	}
	if failed := e.health.Ready(); len(failed) != 0 {
		t.Errorf("check not removed: %v", failed)
	}
}

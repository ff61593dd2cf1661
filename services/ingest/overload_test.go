package ingest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// metricValue is the sum of the series of name whose labels include every
// pair of labels (name=value), from the service's registry; -1 when there
// is none.
func (e *env) metricValue(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum, found := 0.0, false
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				if have[k] != v {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum, found = sum+m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				sum, found = sum+m.GetGauge().GetValue(), true
			}
		}
	}
	if !found {
		return -1
	}
	return sum
}

// udpDropped is logtally_ingest_udp_dropped_total of one reason, or of
// all with "".
func (e *env) udpDropped(reason string) float64 {
	if reason != "" {
		return counterValue(e.svc.m.udpDropped.WithLabelValues(reason))
	}
	return e.udpDropped("no_batch_slot") + e.udpDropped("kernel_rcvbuf")
}

// dialFrom connects from a local address (127.0.0.2 is a second peer on
// Linux loopback).
func dialFrom(t testing.TB, local string, addr net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, local, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// isClosedByPeer: a read that ended because the other side closed or reset.
func isClosedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// refusedConn connects to addr and expects the connection to be refused:
// reset during the connect, or closed before anything is read.
func refusedConn(addr net.Addr) error {
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ECONNRESET) {
			return nil
		}
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !isClosedByPeer(err) {
		return fmt.Errorf("read gave %v, want the connection refused", err)
	}
	return nil
}

// TestMaxConnectionsBackpressure fills a listener with idle connections
// beyond -ingest.max-connections. The listener stops accepting, the extra
// connections wait in the kernel's accept queue, and a sender that
// connects next is not closed: its lines are read, exactly once, as soon
// as the idle connections go away.
func TestMaxConnectionsBackpressure(t *testing.T) {
	const limit, idle, lines = 8, 12, 50
	e := newEnv(t, func(c *Config) { c.MaxConnections = limit; c.MaxConnsPerPeer = 0 })
	open := func() float64 { return e.metricValue(t, "logtally_ingest_open_connections", "listener=tcp") }
	queued := func() float64 { return e.metricValue(t, "logtally_ingest_accept_queue", "listener=tcp") }
	var held []net.Conn
	for range idle {
		held = append(held, dial(t, "tcp", e.svc.TCPAddr()))
	}
	poll(t, 10*time.Second, "the listener to be full", func() bool { return open() == limit })
	if acceptQueueSupported {
		poll(t, 10*time.Second, "the extra connections in the accept queue", func() bool { return queued() == idle-limit })
	}

	sender := dial(t, "tcp", e.svc.TCPAddr())
	var sb strings.Builder
	for i := range lines {
		fmt.Fprintf(&sb, "198.51.100.%d - - [01/Jan/2025:00:00:00 +0000] \"GET /waited/%d HTTP/1.1\" 200 1\n", i, i)
	}
	mustWrite(t, sender, sb.String())
	if err := sender.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if acceptQueueSupported {
		poll(t, 10*time.Second, "the sender in the accept queue", func() bool { return queued() == idle-limit+1 })
	}
	if v := counterValue(e.svc.m.lines.WithLabelValues(SourceTCP)); v != 0 {
		t.Fatalf("%v lines read while the sender waits", v)
	}
	if v := e.metricValue(t, "logtally_ingest_connections_limit_seconds_total", "listener=tcp"); v <= 0 {
		t.Errorf("connections_limit_seconds_total %v while at the limit", v)
	}
	for _, c := range held {
		_ = c.Close()
		if v := open(); v > limit {
			t.Fatalf("%v connections open, limit %d", v, limit)
		}
	}
	msgs := e.waitEntries(t, SourceTCP, lines, 10*time.Second)
	// The sender was served, not closed: ingest read to its end of stream
	// and then closed the connection normally.
	_ = sender.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := sender.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("sender after its lines: read %d, %v; want EOF", n, err)
	}
	poll(t, 10*time.Second, "every connection closed", func() bool { return open() == 0 })
	got := linesOf(e.fetch(t), SourceTCP)
	if len(got) != lines || len(msgs) == 0 {
		t.Fatalf("%d lines stored, want %d", len(got), lines)
	}
	seen := map[string]bool{}
	for _, l := range got {
		seen[l] = true
	}
	if len(seen) != lines {
		t.Errorf("%d distinct lines of %d", len(seen), lines)
	}
	if v := e.metricValue(t, "logtally_ingest_connections_rejected_total"); v > 0 {
		t.Errorf("%v connections rejected", v)
	}
	t.Logf("at the limit for %.3fs", e.metricValue(t, "logtally_ingest_connections_limit_seconds_total", "listener=tcp"))
}

// TestMaxConnsPerPeer: on both TCP listeners, a peer address gets at most
// -ingest.tcp.max-conns-per-peer connections; one more is refused (reset)
// and counted, the accepted ones and other peers are served.
func TestMaxConnsPerPeer(t *testing.T) {
	const perPeer = 3
	e := newEnv(t, func(c *Config) { c.MaxConnsPerPeer = perPeer })
	for _, l := range []struct {
		name, source string
		addr         net.Addr
		line         func(s string) string
	}{
		{"tcp", SourceTCP, e.svc.TCPAddr(), func(s string) string { return s + "\n" }},
		{"syslog-tcp", SourceSyslogTCP, e.svc.SyslogTCPAddr(), func(s string) string { return octet("<13>" + s) }},
	} {
		t.Run(l.name, func(t *testing.T) {
			open := func() float64 { return e.metricValue(t, "logtally_ingest_open_connections", "listener="+l.name) }
			refused := func() float64 {
				return e.metricValue(t, "logtally_ingest_connections_rejected_total", "listener="+l.name, "reason=per_peer")
			}
			var held []net.Conn
			for range perPeer {
				held = append(held, dial(t, "tcp", l.addr))
			}
			poll(t, 10*time.Second, "the peer's connections open", func() bool { return open() == perPeer })
			if err := refusedConn(l.addr); err != nil {
				t.Fatalf("connection %d of the peer: %v", perPeer+1, err)
			}
			if v := refused(); v != 1 {
				t.Errorf("refused %v, want 1", v)
			}
			want, others := 0, 0
			for i, c := range held {
				mustWrite(t, c, l.line(fmt.Sprintf("held %d", i)))
				want++
			}
			if runtime.GOOS == "linux" {
				// Another address is not affected by this one's limit.
				other := dialFrom(t, "127.0.0.2", l.addr)
				mustWrite(t, other, l.line("from 127.0.0.2"))
				want++
				others++
				poll(t, 10*time.Second, "the other peer's connection", func() bool { return open() == perPeer+1 })
			}
			// A freed connection can be taken again.
			_ = held[0].Close()
			poll(t, 10*time.Second, "the closed connection released", func() bool { return open() == float64(perPeer-1+others) })
			again := dial(t, "tcp", l.addr)
			mustWrite(t, again, l.line("again"))
			want++
			msgs := e.waitEntries(t, l.source, want, 10*time.Second)
			if got := linesOf(msgs, l.source); len(got) != want {
				t.Errorf("lines %q, want %d", got, want)
			}
			if v := refused(); v != 1 {
				t.Errorf("refused %v after a slot was freed, want 1", v)
			}
			for _, c := range append(held, again) {
				_ = c.Close()
			}
		})
	}
}

// TestIdleTimeout fills a listener (-ingest.max-connections=8) with 12
// connections that each send a complete and an unterminated line and then
// nothing. -ingest.tcp.idle-timeout closes them, keeping both lines as at
// a close by the peer; the 4 that waited in the accept queue are served
// and closed in turn, and a sender that connected after all of them (and
// sent 50 lines and its end of stream) is served, not closed, and has its
// lines counted exactly once.
func TestIdleTimeout(t *testing.T) {
	const limit, idle, lines, timeout = 8, 12, 50, 300 * time.Millisecond
	e := newEnv(t, func(c *Config) { c.MaxConnections = limit; c.TCPIdleTimeout = timeout })
	open := func() float64 { return e.metricValue(t, "logtally_ingest_open_connections", "listener=tcp") }
	closedIdle := func() float64 {
		return e.metricValue(t, "logtally_ingest_connections_idle_closed_total", "listener=tcp")
	}
	t0 := time.Now()
	var held []net.Conn
	for i := range idle {
		c := dial(t, "tcp", e.svc.TCPAddr())
		mustWrite(t, c, fmt.Sprintf("idle %d complete\npartial %d", i, i))
		held = append(held, c)
	}
	sender := dial(t, "tcp", e.svc.TCPAddr())
	var sb strings.Builder
	for i := range lines {
		fmt.Fprintf(&sb, "sender line %d\n", i)
	}
	mustWrite(t, sender, sb.String())
	if err := sender.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "the sender's lines", func() bool {
		if v := open(); v > limit {
			t.Fatalf("%v connections open, limit %d", v, limit)
		}
		n := 0
		for _, l := range linesOf(e.fetch(t), SourceTCP) {
			if strings.HasPrefix(l, "sender ") {
				n++
			}
		}
		return n == lines
	})
	// The sender was served to its end of stream, then closed normally.
	_ = sender.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := sender.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("sender: %v, want EOF after its close", err)
	}
	// Every idle connection was closed by ingest, normally (FIN, no reset).
	for i, c := range held {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Fatalf("idle connection %d: %v, want EOF", i, err)
		}
	}
	poll(t, 10*time.Second, "idle closes counted", func() bool { return closedIdle() == idle })
	took := time.Since(t0)
	if took < 2*timeout {
		t.Errorf("12 idle connections through 8 slots took %s, less than two idle timeouts", took)
	}
	want := map[string]int{}
	for i := range idle {
		want[fmt.Sprintf("idle %d complete", i)] = 1
		want[fmt.Sprintf("partial %d", i)] = 1
	}
	for i := range lines {
		want[fmt.Sprintf("sender line %d", i)] = 1
	}
	got := linesOf(e.waitEntries(t, SourceTCP, 2*idle+lines, 10*time.Second), SourceTCP)
	for _, l := range got {
		want[l]--
	}
	for l, n := range want {
		if n != 0 {
			t.Errorf("line %q: %d missing (negative: extra)", l, n)
		}
	}
	if len(got) != 2*idle+lines {
		t.Errorf("%d lines, want %d", len(got), 2*idle+lines)
	}
	t.Logf("%d idle connections closed after %s each, all lines in %s", idle, timeout, took.Round(time.Millisecond))
}

// TestIdleTimeoutResetByReads: a connection that sends a line every tenth
// of -ingest.tcp.idle-timeout stays open past the timeout.
func TestIdleTimeoutResetByReads(t *testing.T) {
	const timeout, lines = time.Second, 13
	e := newEnv(t, func(c *Config) { c.TCPIdleTimeout = timeout })
	var attempt int
	for attempt = 1; ; attempt++ {
		closedBefore := e.metricValue(t, "logtally_ingest_connections_idle_closed_total", "listener=tcp")
		trickle := dial(t, "tcp", e.svc.TCPAddr())
		t0, last := time.Now(), time.Now()
		var gap time.Duration // the longest pause of the sender
		var failed error
		for i := range lines {
			gap = max(gap, time.Since(last))
			if _, err := fmt.Fprintf(trickle, "trickle %d %d\n", attempt, i); err != nil {
				failed = fmt.Errorf("write %d, %s after the first: %w", i, time.Since(t0), err)
				break
			}
			last = time.Now()
			time.Sleep(timeout / 10) // the sender's pace, not a wait for ingest
		}
		if failed != nil && gap >= timeout/2 && attempt < 3 {
			// The machine stopped this process's sender for half the
			// timeout: the close may be right. Try again.
			t.Logf("attempt %d: %v after a pause of %s", attempt, failed, gap)
			_ = trickle.Close()
			poll(t, 10*time.Second, "the closed connection released", func() bool {
				return e.metricValue(t, "logtally_ingest_open_connections", "listener=tcp") == 0
			})
			continue
		}
		if failed != nil {
			t.Fatalf("%v (longest pause %s)", failed, gap)
		}
		if took := time.Since(t0); took <= timeout {
			t.Fatalf("the sender took %s, not longer than the timeout", took)
		}
		if err := trickle.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		_ = trickle.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := trickle.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Fatalf("trickle: %v, want EOF after its close", err)
		}
		// Closed by its own end of stream, not as idle.
		if v := e.metricValue(t, "logtally_ingest_connections_idle_closed_total", "listener=tcp"); v != closedBefore {
			t.Errorf("the trickling connection was closed as idle")
		}
		break
	}
	poll(t, 10*time.Second, "the trickled lines", func() bool {
		n := 0
		for _, l := range linesOf(e.fetch(t), SourceTCP) {
			if strings.HasPrefix(l, fmt.Sprintf("trickle %d ", attempt)) {
				n++
			}
		}
		return n == lines
	})
}

// TestTruncatedFrames: an octet-counted syslog frame cut short by the end
// of its connection — the peer's close or the idle timeout — travels as an
// oversized entry marked truncated, with what arrived, for the parser to
// dead-letter (reason truncated_frame); it is counted as a framing error,
// not as a line. So is a connection that ends inside an octet count.
func TestTruncatedFrames(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TCPIdleTimeout = 300 * time.Millisecond })
	cut := "<13>Nov 24 10:00:10 host sshd[1]: Failed password for root from 198.51.100.4"
	closed := dial(t, "tcp", e.svc.SyslogTCPAddr())
	mustWrite(t, closed, octet("<13>whole one")+"500 "+cut)
	_ = closed.(*net.TCPConn).CloseWrite()
	idle := dial(t, "tcp", e.svc.SyslogTCPAddr())
	mustWrite(t, idle, octet("<13>whole two")+"50 <13>idle")
	inCount := dial(t, "tcp", e.svc.SyslogTCPAddr())
	mustWrite(t, inCount, octet("<13>whole three")+"12")
	_ = inCount.(*net.TCPConn).CloseWrite()

	msgs := e.waitEntries(t, SourceSyslogTCP, 6, 10*time.Second)
	want := map[string]bool{"<13>whole one": true, "<13>whole two": true, "<13>whole three": true}
	for _, l := range linesOf(msgs, SourceSyslogTCP) {
		if !want[l] {
			t.Errorf("unexpected line %q", l)
		}
		delete(want, l)
	}
	if len(want) > 0 {
		t.Errorf("lines missing: %v", want)
	}
	got := map[string]bool{}
	for _, m := range msgs {
		for _, o := range m.batch.Oversized {
			got[fmt.Sprintf("%s/%d/%d/%v", o.Prefix, o.Length, o.Received, o.Truncated)] = true
		}
	}
	for _, w := range []string{fmt.Sprintf("%s/500/%d/true", cut, len(cut)), "<13>idle/50/8/true", "12/0/0/true"} {
		if !got[w] {
			t.Errorf("no truncated entry %q in %v", w, got)
		}
	}
	if v := e.metricValue(t, "logtally_ingest_syslog_framing_errors_total", "reason=truncated_frame"); v != 3 {
		t.Errorf("truncated_frame framing errors %v, want 3", v)
	}
	if v := counterValue(e.svc.m.lines.WithLabelValues(SourceSyslogTCP)); v != 3 {
		t.Errorf("lines_total %v, want 3", v)
	}
	if v := counterValue(e.svc.m.oversized.WithLabelValues(SourceSyslogTCP)); v != 0 {
		t.Errorf("oversized_lines_total %v, want 0", v)
	}
	if v := e.metricValue(t, "logtally_ingest_connections_idle_closed_total", "listener=syslog-tcp"); v != 1 {
		t.Errorf("idle closes %v, want 1", v)
	}
}

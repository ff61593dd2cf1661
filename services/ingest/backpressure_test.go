package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestBackpressureAndRestart stops JetStream while a TCP sender writes as
// fast as it can. The sender must stall (ingest stops reading instead of
// dropping), HTTP must answer 503, UDP must drop and count, and after the
// server restarts on the same port and store every TCP line must be in the
// stream exactly once.
func TestBackpressureAndRestart(t *testing.T) {
	rs := newRestartable(t)
	e := newEnvOn(t, rs.srv, func(c *Config) {
		c.BatchMaxBytes = 64 << 10
		c.MaxLineBytes = 4096
		c.PublishMaxInFlight = 2
		c.HTTPTimeout = time.Second
		c.PublishAckTimeout = time.Second
	})
	ts := httptest.NewServer(e.mux)
	defer ts.Close()

	const lineFmt = "line-%09d 203.0.113.7 - - \"GET /backpressure HTTP/1.1\" 200 1234\n"
	conn := dial(t, "tcp", e.svc.TCPAddr())
	var (
		armed   atomic.Bool // the server is down: detect the stall
		stalled = make(chan int, 1)
		resume  = make(chan struct{})
		done    = make(chan int, 1)
		failed  = make(chan error, 1)
	)
	go func() {
		const perWrite = 500
		var buf []byte
		next, end := 0, -1
		for end < 0 || next < end {
			buf = buf[:0]
			for i := next; i < next+perWrite; i++ {
				buf = fmt.Appendf(buf, lineFmt, i)
			}
			next += perWrite
			for p := buf; len(p) > 0; {
				if end < 0 && armed.Load() {
					_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
				}
				n, err := conn.Write(p)
				p = p[n:]
				var ne net.Error
				if err != nil && end < 0 && errors.As(err, &ne) && ne.Timeout() {
					end = next + 20000 // after the restart, 20000 more lines
					stalled <- next
					<-resume
					_ = conn.SetWriteDeadline(time.Time{})
					continue
				}
				if err != nil {
					failed <- err
					return
				}
			}
			if end < 0 && next > 20_000_000 {
				failed <- errors.New("wrote 20M lines without stalling")
				return
			}
		}
		_ = conn.(*net.TCPConn).CloseWrite()
		done <- next
	}()

	// Let lines flow, then take JetStream away while batches are in flight.
	poll(t, 20*time.Second, "batches published", func() bool {
		return counterValue(e.svc.m.batches.WithLabelValues(SourceTCP)) >= 5
	})
	rs.stop()
	armed.Store(true)
	// A write blocked since before arming gets a deadline too.
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))

	var stallAt int
	select {
	case stallAt = <-stalled:
	case err := <-failed:
		t.Fatalf("writer: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the TCP sender never stalled while JetStream was down")
	}
	readBefore := counterValue(e.svc.m.lines.WithLabelValues(SourceTCP))
	t.Logf("sender stalled after %d lines; ingest has read %.0f", stallAt, readBefore)

	// Readiness follows the connection.
	poll(t, 10*time.Second, "not ready", func() bool { return e.health.Ready()["ingest"] != "" })

	// HTTP cannot be acknowledged: 503 with Retry-After.
	code, hdr, out := post(t, ts.URL+"/api/v1/ingest", []byte("http line during outage\n"), "")
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "1" || out["error"] == nil {
		t.Errorf("http during outage: %d Retry-After %q %v", code, hdr.Get("Retry-After"), out)
	}

	// UDP cannot wait: datagrams beyond the free slots are dropped and counted.
	u := dial(t, "udp", e.svc.SyslogUDPAddr())
	datagram := "<13>udp during outage " + strings.Repeat("u", 1000)
	for i := 0; e.udpDropped("no_batch_slot") == 0; i++ {
		if i > 100000 {
			t.Fatal("no UDP datagram was dropped")
		}
		_, _ = u.Write([]byte(datagram))
		if i%100 == 99 {
			time.Sleep(time.Millisecond) // let the reader keep up with the socket
		}
	}
	if v := counterValue(e.svc.m.lines.WithLabelValues(SourceTCP)); v != readBefore {
		t.Errorf("ingest kept reading TCP while JetStream was down: %.0f -> %.0f lines", readBefore, v)
	}

	rs.start()
	close(resume)
	var total int
	select {
	case total = <-done:
	case err := <-failed:
		t.Fatalf("writer: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("writer did not finish after the restart")
	}
	poll(t, 10*time.Second, "ready again", func() bool { return len(e.health.Ready()) == 0 })

	// Every TCP line exactly once.
	msgs := e.waitEntries(t, SourceTCP, total, 60*time.Second)
	poll(t, 30*time.Second, "all batches acknowledged", func() bool {
		return counterValue(e.svc.m.batchesInFlight) == 0
	})
	msgs = e.fetch(t)
	seen := make([]uint8, total)
	extra := 0
	for _, l := range linesOf(msgs, SourceTCP) {
		i, err := strconv.Atoi(strings.TrimPrefix(strings.Fields(l)[0], "line-"))
		if err != nil || i >= total {
			extra++
			continue
		}
		seen[i]++
	}
	var missing, dup int
	for _, n := range seen {
		switch {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
	}
	if missing > 0 || dup > 0 || extra > 0 {
		t.Fatalf("of %d lines: %d missing, %d duplicated, %d unexpected", total, missing, dup, extra)
	}
	// Every UDP datagram that was accepted arrives as well.
	udpAccepted := int(counterValue(e.svc.m.lines.WithLabelValues(SourceSyslogUDP)))
	msgs = e.waitEntries(t, SourceSyslogUDP, udpAccepted, 30*time.Second)
	if l, _ := entries(msgs, SourceSyslogUDP); l != udpAccepted {
		t.Errorf("udp: %d lines stored, %d accepted", l, udpAccepted)
	}
	t.Logf("%d TCP lines in %d messages, %d publish errors, %d retries, %d duplicates, %.0f UDP datagrams dropped",
		total, len(msgs), int(counterValue(e.svc.m.publishErrors)), int(counterValue(e.svc.m.publishRetries)),
		int(counterValue(e.svc.m.duplicates)), e.udpDropped(""))
	if v := counterValue(e.svc.m.lostOnShutdown); v != 0 {
		t.Errorf("lines lost %v", v)
	}
}

// TestStopGivesUpAtDeadline: with JetStream down and a TCP reader blocked
// on backpressure, Stop returns at its deadline, reports the lost lines and
// counts them.
func TestStopGivesUpAtDeadline(t *testing.T) {
	rs := newRestartable(t)
	e := newEnvOn(t, rs.srv, func(c *Config) {
		c.BatchMaxBytes = 16 << 10
		c.MaxLineBytes = 1024
		c.PublishMaxInFlight = 1
	})
	rs.stop()
	conn := dial(t, "tcp", e.svc.TCPAddr())
	go func() {
		line := []byte(strings.Repeat("s", 99) + "\n")
		buf := make([]byte, 0, 100*len(line))
		for range 100 {
			buf = append(buf, line...)
		}
		for {
			if _, err := conn.Write(buf); err != nil {
				return
			}
		}
	}()
	// Wait until the reader is blocked: no more lines are read.
	var last float64 = -1
	poll(t, 20*time.Second, "reader blocked", func() bool {
		v := counterValue(e.svc.m.lines.WithLabelValues(SourceTCP))
		blocked := v > 0 && v == last
		last = v
		time.Sleep(100 * time.Millisecond)
		return blocked
	})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err := e.svc.Stop(ctx)
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("Stop took %s with a 500ms deadline", took)
	}
	if !errors.Is(err, ErrLinesLost) {
		t.Fatalf("Stop: %v, want ErrLinesLost", err)
	}
	read := counterValue(e.svc.m.lines.WithLabelValues(SourceTCP))
	if lost := counterValue(e.svc.m.lostOnShutdown); lost != read {
		t.Errorf("lost %.0f lines, read %.0f (none was acknowledged)", lost, read)
	}
}

package ingest

import (
	"fmt"
	"testing"
	"time"
)

// ackedLines is the number of lines in batches JetStream acknowledged.
func (e *env) ackedLines(t testing.TB) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "logtally_ingest_batch_lines" {
			return mf.GetMetric()[0].GetHistogram().GetSampleSum()
		}
	}
	return 0
}

// BenchmarkIngestTCP measures lines per second from a TCP sender to
// JetStream acks with the default batch settings (~100-byte lines).
func BenchmarkIngestTCP(b *testing.B) {
	for _, conns := range []int{1, 4} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			e := newEnv(b, func(c *Config) { c.BatchLinger = 20 * time.Millisecond; c.SyslogAddr = "" })
			const perWrite = 1000
			var chunk []byte
			for i := range perWrite {
				chunk = fmt.Appendf(chunk, "198.51.100.%d - - [01/Jan/2025:10:00:00 +0000] \"GET /bench/%06d HTTP/1.1\" 200 5120 \"-\" \"bench\"\n", i%250, i)
			}
			writes := (b.N + perWrite - 1) / perWrite
			total := float64(writes * perWrite)
			b.SetBytes(int64(len(chunk) / perWrite))
			b.ResetTimer()
			t0 := time.Now()
			errs := make(chan error, conns)
			for c := range conns {
				conn := dial(b, "tcp", e.svc.TCPAddr())
				go func() {
					for w := c; w < writes; w += conns {
						if _, err := conn.Write(chunk); err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
			}
			for range conns {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			for e.ackedLines(b) < total {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(total/time.Since(t0).Seconds(), "lines/s")
		})
	}
}

// BenchmarkIngestUDP measures syslog datagrams per second through the UDP
// reader into batches, in windows of 256 datagrams (the sender waits for
// each window to be read, so that the socket buffer never overflows and
// the figure is the read path, not the kernel dropping). allocs/op is per
// datagram, the sender's included.
func BenchmarkIngestUDP(b *testing.B) {
	e := newEnv(b, func(c *Config) { c.TCPAddr = "" })
	conn := dial(b, "udp", e.svc.SyslogUDPAddr())
	msg := []byte("<13>Jan  1 00:00:00 host sshd[1]: Failed password for root from 198.51.100.4 port 22 ssh2")
	lines := e.svc.m.lines.WithLabelValues(SourceSyslogUDP)
	read := func() float64 { return counterValue(lines) + e.udpDropped("") }
	const window = 256
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	t0 := time.Now()
	sent := 0
	for sent < b.N {
		n := min(window, b.N-sent)
		for range n {
			if _, err := conn.Write(msg); err != nil {
				b.Fatal(err)
			}
		}
		sent += n
		for read() < float64(sent) {
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "datagrams/s")
	if d := e.udpDropped(""); d > 0 {
		b.Logf("%.0f of %d datagrams dropped (no batch slot %.0f, kernel %.0f)", d, b.N, e.udpDropped("no_batch_slot"), e.udpDropped("kernel_rcvbuf"))
	}
}

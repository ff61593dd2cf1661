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

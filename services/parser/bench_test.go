package parser

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/services/parser/format"
)

// benchRawBatch is a 256 KiB RawBatch, the most ingest puts in one message.
// Clients are Zipf-distributed over a pool of 20k (a tenth IPv6), event
// times spread over two minutes (a live batch spans 20 ms, a replayed one
// the seconds its lines cover; either way one or two minutes). mixed
// interleaves sshd, iptables and JSON lines with the access log lines.
// The lines are made here rather than by internal/loggen so that the
// figures stay comparable when loggen changes.
func benchRawBatch(tb testing.TB, mixed bool) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	pool := make([]netip.Addr, 20000)
	for i := range pool {
		if i%10 == 9 {
			pool[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 4: byte(i >> 8), 5: byte(i), 15: byte(rng.IntN(256))})
		} else {
			pool[i] = netip.AddrFrom4([4]byte{byte(1 + rng.IntN(222)), byte(rng.IntN(256)), byte(i >> 8), byte(i)})
		}
	}
	zipf := rand.NewZipf(rng, 1.07, 2, uint64(len(pool)-1))
	base := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	statuses := []int{200, 200, 200, 304, 404, 401, 500}
	rb := &logtallyv1.RawBatch{Source: "tcp", ReceivedUnixMs: base.Add(time.Hour).UnixMilli()}
	size := 0
	for i := 0; ; i++ {
		a := pool[zipf.Uint64()]
		t := base.Add(time.Duration(i/16) * time.Second)
		var l string
		switch {
		case mixed && i%4 == 1:
			l = fmt.Sprintf("<38>%s web1 sshd[%d]: Failed password for root from %s port %d ssh2", t.Format(time.Stamp), 1000+i%9000, a, 1024+i)
		case mixed && i%4 == 2:
			l = fmt.Sprintf("<4>1 %s fw1 kernel - - - IN=eth0 OUT= SRC=%s DST=192.0.2.1 LEN=60 PROTO=TCP SPT=%d DPT=22", t.Format(time.RFC3339), a, 1024+i)
		case mixed && i%8 == 3:
			l = fmt.Sprintf(`{"remote_addr":%q,"time":%q,"request":"GET /x HTTP/1.1","status":%d,"body_bytes_sent":%d,"http_user_agent":"curl/8.5.0"}`,
				a.String(), t.Format(time.RFC3339), statuses[i%len(statuses)], rng.IntN(9000))
		default:
			l = fmt.Sprintf(`%s - - [%s] "GET /index.html?id=%d HTTP/1.1" %d %d "-" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"`,
				a, t.In(time.FixedZone("", 3600)).Format("02/Jan/2006:15:04:05 -0700"), i%100, statuses[i%len(statuses)], rng.IntN(50000))
		}
		if size+len(l)+4 > 256<<10 {
			break
		}
		size += len(l) + 4
		rb.Lines = append(rb.Lines, []byte(l))
	}
	data, err := proto.Marshal(rb)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// benchHandle measures what a worker does to a raw batch apart from
// talking to NATS: decode it, parse and combine its lines, and encode one
// record batch per partition.
func benchHandle(b *testing.B, mixed bool, dimsList string) {
	data := benchRawBatch(b, mixed)
	w := &worker{parser: format.New(format.Options{}), comb: newCombiner(32)}
	if dimsList != "none" {
		cfg := Config{Dims: dimsList}
		d, err := newDimmer(cfg.dimsConfig(), 32)
		if err != nil {
			b.Fatal(err)
		}
		w.dims = d
	}
	lines, groups := 0, 0
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := decodeRaw(data, &w.raw); err != nil {
			b.Fatal(err)
		}
		seq := uint64(i + 1)
		if n := w.combine(&w.raw, seq); n != len(w.raw.lines) {
			b.Fatalf("%d of %d lines counted", n, len(w.raw.lines))
		}
		lines, groups = len(w.raw.lines), 0
		for p := range w.comb.parts {
			pb := &w.comb.parts[p]
			groups += len(pb.groups)
			var dg []group
			if w.dims != nil {
				dg = w.dims.comb.parts[p].groups
			}
			pb.buf = appendRecordBatch(pb.buf[:0], pb, dg, seq, w.raw.receivedMS)
		}
		w.release()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(lines), "ns/line")
	b.ReportMetric(float64(lines)/float64(groups), "lines/group")
}

// The Dims variants count every field beyond the IP (-parser.dims=all, the
// default), the others the IP only (-parser.dims=none).
func BenchmarkHandle(b *testing.B)          { benchHandle(b, false, "none") }
func BenchmarkHandleMixed(b *testing.B)     { benchHandle(b, true, "none") }
func BenchmarkHandleDims(b *testing.B)      { benchHandle(b, false, "all") }
func BenchmarkHandleMixedDims(b *testing.B) { benchHandle(b, true, "all") }
func BenchmarkHandleDimsNoUA(b *testing.B) {
	benchHandle(b, false, "status,method,path,vhost,program,event")
}

// BenchmarkCombine is the combiner alone: adding the parsed records of a
// 256 KiB batch, sorting and encoding them.
func BenchmarkCombine(b *testing.B) {
	data := benchRawBatch(b, false)
	var rb rawBatch
	if err := decodeRaw(data, &rb); err != nil {
		b.Fatal(err)
	}
	p := format.New(format.Options{})
	recs := make([]format.Record, len(rb.lines))
	for i, l := range rb.lines {
		if err := p.Parse(l, format.Auto, time.UnixMilli(rb.receivedMS), &recs[i]); err != nil {
			b.Fatal(err)
		}
	}
	c := newCombiner(32)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.reset()
		for j := range recs {
			c.add(&recs[j])
		}
		c.finish()
		for p := range c.parts {
			c.parts[p].buf = appendRecordBatch(c.parts[p].buf[:0], &c.parts[p], nil, uint64(i+1), rb.receivedMS)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(recs)), "ns/line")
}

package bench

import (
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// highCardinality generates a scan or DDoS within one hour: n distinct
// client IPs with one line each (IPv4, and every fourth IPv6), plus heavy
// heavy hitters sending heavyLines lines between them, interleaved and
// spread evenly over [hour, hour+1h). Statuses mix 200, 404, 401 and 503.
// Lines are built by appending, on every core: fmt would take longer than
// the pipeline for 10M lines.
func highCardinality(n, heavy, heavyLines int, hour time.Time) [][]byte {
	total := n + heavy*heavyLines
	out := make([][]byte, total)
	stamps := make([]string, 3600)
	for s := range stamps {
		stamps[s] = hour.Add(time.Duration(s) * time.Second).Format("02/Jan/2006:15:04:05 -0700")
	}
	// Every k-th line is a heavy hitter's.
	every := total + 1
	if heavy > 0 {
		every = total / (heavy * heavyLines)
	}
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	per := (total + workers - 1) / workers
	for w := range workers {
		lo, hi := w*per, min((w+1)*per, total)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 1<<20)
			for i := lo; i < hi; i++ {
				var ip netip.Addr
				if heavy > 0 && i%every == every-1 && (i/every) < heavy*heavyLines {
					ip = heavyIP((i / every) % heavy)
				} else {
					// The distinct IP of this line: the count of non-heavy
					// lines before it.
					d := i
					if heavy > 0 {
						d = i - min((i+1)/every, heavy*heavyLines)
					}
					ip = distinctIP(d)
				}
				if cap(buf)-len(buf) < 256 {
					buf = make([]byte, 0, 1<<20)
				}
				start := len(buf)
				buf = ip.AppendTo(buf)
				buf = append(buf, " - - ["...)
				buf = append(buf, stamps[i*3600/total]...)
				buf = append(buf, `] "GET /item/`...)
				buf = strconv.AppendInt(buf, int64(i%977), 10)
				buf = append(buf, ` HTTP/1.1" `...)
				buf = strconv.AppendInt(buf, int64([]int{200, 200, 200, 404, 200, 401, 200, 503}[i%8]), 10)
				buf = append(buf, ' ')
				buf = strconv.AppendInt(buf, int64(200+i%3000), 10)
				buf = append(buf, ` "-" "bench/1.0"`...)
				out[i] = buf[start:len(buf):len(buf)]
			}
		}()
	}
	wg.Wait()
	return out
}

// distinctIP is the d-th distinct address: a bijection of d, so that
// addresses spread over partitions and never repeat.
func distinctIP(d int) netip.Addr {
	if d%4 == 3 {
		x := uint64(d) * 0x9e3779b97f4a7c15
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x0a, 8: byte(x >> 56), byte(x >> 48), byte(x >> 40), byte(x >> 32), byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
	}
	// Unicast 1.0.0.0–222.255.255.255: multiplying by a unit modulo the
	// size of that range is a bijection.
	const size = 222 << 24
	x := uint32((uint64(d)*2654435761)%size + 1<<24)
	return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
}

// heavyIP is heavy hitter h, outside the range distinctIP's IPv6 uses.
func heavyIP(h int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x0b, 15: byte(h)})
}

package counts

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/natstest"
	"github.com/logtally/logtally/internal/topology"
)

// BenchmarkCommitGrowth grows one window from nothing to 10M distinct IPs
// (IPv4 and IPv6 mixed) in commits of 15k changes each — what one
// partition sees per flush at about 1M lines/s — on a stock 1 MiB
// max_payload, and reports the KV bytes written per applied increment for
// each decade of the window's size. Flat figures are the point: a flush
// costs what changed, not what the window holds.
//
//	go test -run='^$' -bench=CommitGrowth -benchtime=1x ./internal/counts/
func BenchmarkCommitGrowth(b *testing.B) {
	const (
		target    = 10_000_000
		perCommit = 15_000
		repeat    = 5_000 // of them, IPs seen before (a Zipf head keeps coming back)
	)
	for range b.N {
		srv := natstest.RunBasicJetStreamServer(b)
		nc, js := natstest.Connect(b, srv)
		ctx := context.Background()
		if _, err := topology.Ensure(ctx, js, topology.Defaults()); err != nil {
			b.Fatal(err)
		}
		s, err := NewStore(ctx, js, "logtally_counts_1h", DefaultLayout(nc.MaxPayload(), 90*24*time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		key := "1795514400.0"
		var cur *Manifest
		var rev uint64
		distinct := 0
		milestone := 1000
		var segBytes, segIncr, totBytes, totIncr int
		kinds := map[WriteKind]int{}
		start := time.Now()
		for distinct < target {
			ch := make([]Entry, 0, perCommit)
			n := perCommit - repeat
			if distinct < repeat {
				n = perCommit
			}
			for i := 0; i < n; i++ {
				ch = append(ch, Entry{Addr: growthAddr(distinct + i), Counters: Counters{Requests: 1, Bytes: 512}})
			}
			if distinct >= repeat {
				for i := 0; i < repeat; i++ {
					ch = append(ch, Entry{Addr: growthAddr(i * (distinct / repeat)), Counters: Counters{Requests: 3, Status4xx: 1}})
				}
			}
			SortEntries(ch)
			ch = dedupe(ch)
			distinct += n
			var st Stats
			cur, rev, st, err = s.Commit(ctx, key, cur, rev, Change{Entries: ch, LastSeq: rev + 1}).Wait(ctx)
			if err != nil {
				b.Fatal(err)
			}
			kinds[st.Kind]++
			w := st.ManifestBytes + st.ChunkBytes
			segBytes += w
			segIncr += len(ch)
			totBytes += w
			totIncr += len(ch)
			if distinct >= milestone*10 || distinct >= target {
				b.Logf("window %9d → %9d distinct IPs: %6.1f bytes written per increment (%d commits so far, %s)",
					milestone, distinct, float64(segBytes)/float64(segIncr), kinds[WriteInline]+kinds[WriteSpill]+kinds[WriteMerge]+kinds[WriteFull], time.Since(start).Round(time.Second))
				b.ReportMetric(float64(segBytes)/float64(segIncr), fmt.Sprintf("B/incr@%d", distinct))
				milestone *= 10
				segBytes, segIncr = 0, 0
			}
		}
		b.ReportMetric(float64(totBytes)/float64(totIncr), "B/incr")
		b.Logf("kinds %v; %d runs, manifest %d bytes at the end", kinds, len(cur.Runs), mustSize(cur))
	}
}

func growthAddr(i int) [AddrLen]byte {
	if i%3 == 0 {
		return Pack(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 4: byte(i >> 24), 5: byte(i >> 16), 6: byte(i >> 8), 7: byte(i), 15: 1}))
	}
	return Pack(netip.AddrFrom4([4]byte{byte(11 + i>>24), byte(i >> 16), byte(i >> 8), byte(i)}))
}

func dedupe(es []Entry) []Entry {
	out := es[:0]
	for i, e := range es {
		if i > 0 && out[len(out)-1].Addr == e.Addr {
			out[len(out)-1].Add(e.Counters)
			continue
		}
		out = append(out, e)
	}
	return out
}

func mustSize(m *Manifest) int {
	b, _ := MarshalManifest(m)
	return len(b)
}

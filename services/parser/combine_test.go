package parser

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/services/parser/format"
)

func TestUnixMinute(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{
		{time.Unix(0, 0), 0},
		{time.Unix(59, 999999999), 0},
		{time.Unix(60, 0), 1},
		{time.Unix(-1, 0), -1},
		{time.Unix(-1, 999999999), -1}, // 1969-12-31T23:59:59.999999999
		{time.Unix(-60, 0), -1},
		{time.Unix(-61, 0), -2},
		{time.Date(2026, 11, 24, 10, 0, 59, 0, time.UTC), 1795514400 / 60},
		{time.Date(2026, 11, 24, 11, 0, 0, 0, time.FixedZone("+0100", 3600)), 1795514400 / 60},
		{time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), -62135596800 / 60},
	} {
		if got := unixMinute(tc.t); got != tc.want {
			t.Errorf("unixMinute(%v) = %d, want %d", tc.t, got, tc.want)
		}
	}
}

// The key's bytewise order, which sortGroups and keyLess use, must be the
// format's order: minute (negative ones first), then counts.CompareAddr.
func TestKeyOrderIsMinuteThenCompareAddr(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	minutes := []int64{math.MinInt64, -2, -1, 0, 1, 29425000, math.MaxInt64}
	rnd := func() (int64, [counts.AddrLen]byte) {
		var a [counts.AddrLen]byte
		for i := range a {
			// Few byte values, so that long shared prefixes occur.
			a[i] = []byte{0, 1, 0x7f, 0x80, 0xff}[rng.IntN(5)]
		}
		return minutes[rng.IntN(len(minutes))], a
	}
	for range 20000 {
		ma, aa := rnd()
		mb, ab := rnd()
		want := cmp.Compare(ma, mb)
		if want == 0 {
			want = counts.CompareAddr(&aa, &ab)
		}
		ka, kb := makeKey(ma, aa), makeKey(mb, ab)
		if ka.minute() != ma || ka.addr() != aa {
			t.Fatalf("key of %d %x reads back as %d %x", ma, aa, ka.minute(), ka.addr())
		}
		if got := bytes.Compare(ka[:], kb[:]); got != want {
			t.Fatalf("bytewise key order of (%d %x) and (%d %x) is %d, want %d", ma, aa, mb, ab, got, want)
		}
		if got := keyLess(&ka, &kb); got != (want < 0) {
			t.Fatalf("keyLess(%d %x, %d %x) = %v, want %v", ma, aa, mb, ab, got, want < 0)
		}
	}
}

func TestSortGroups(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2, 47, 48, 49, 200, 3000} {
		gs := make([]group, n)
		for i := range gs {
			gs[i].key = makeKey(int64(rng.IntN(4))-2, [counts.AddrLen]byte{15: byte(rng.IntN(256)), 14: byte(rng.IntN(4))})
			gs[i].c[counts.Requests] = uint64(i)
		}
		want := slices.Clone(gs)
		slices.SortStableFunc(want, func(a, b group) int { return bytes.Compare(a.key[:], b.key[:]) })
		sortGroups(gs)
		for i := range gs {
			if gs[i].key != want[i].key {
				t.Fatalf("n=%d: position %d holds %x, want %x", n, i, gs[i].key, want[i].key)
			}
		}
	}
}

func TestBytesSaturate(t *testing.T) {
	c := newCombiner(1)
	c.reset()
	rec := format.Record{Addr: netip.MustParseAddr("192.0.2.1"), Time: time.Unix(600, 0), Size: math.MaxUint64 - 1}
	c.add(&rec)
	rec.Size = 5
	c.add(&rec)
	c.add(&rec)
	if g := c.parts[0].groups[0]; g.c[counts.Bytes] != math.MaxUint64 || g.c[counts.Requests] != 3 {
		t.Fatalf("group %+v, want saturated bytes and 3 requests", g)
	}
}

// testRecord is a record as the oracle sees it.
type testRecord struct {
	addr   netip.Addr
	t      time.Time
	status uint32
	size   uint64
	auth   bool
}

// oracleKey and oracleCounts restate the format independently of the
// combiner: a map from (partition, minute, IP) to counters, computed one
// record at a time.
type oracleKey struct {
	p      int
	minute int64
	addr   netip.Addr
}

type oracleCounts struct{ requests, c4xx, c5xx, auth, bytes uint64 }

func floorMinute(t time.Time) int64 {
	s := t.Unix()
	if s >= 0 {
		return s / 60
	}
	return -((-s + 59) / 60)
}

func oracle(recs []testRecord, partitions int) map[oracleKey]oracleCounts {
	out := map[oracleKey]oracleCounts{}
	for _, r := range recs {
		k := oracleKey{counts.Partition(r.addr.Unmap().As16(), partitions), floorMinute(r.t), r.addr.Unmap()}
		c := out[k]
		c.requests++
		if r.status/100 == 4 {
			c.c4xx++
		}
		if r.status/100 == 5 {
			c.c5xx++
		}
		if r.auth {
			c.auth++
		}
		c.bytes += r.size
		out[k] = c
	}
	return out
}

// decodedGroups reads a published record batch back with the generated
// code, checks the shape rules of format 2 and adds its groups to into.
func decodedGroups(t *testing.T, p, partitions int, m *logtallyv1.RecordBatch, into map[oracleKey]oracleCounts) {
	t.Helper()
	n := len(m.Minutes)
	if m.Format != 2 || len(m.Addrs) != 0 || len(m.TimesMs) != 0 {
		t.Fatalf("partition %d: format %d with %d format 1 addresses", p, m.Format, len(m.Addrs))
	}
	if len(m.GroupAddrs) != 16*n || len(m.Requests) != n || len(m.Status_4Xx) != n || len(m.Status_5Xx) != n ||
		len(m.AuthFailures) != n || len(m.BytesSent) != n {
		t.Fatalf("partition %d: columns of unequal length: %v", p, m)
	}
	for i := 0; i < n; i++ {
		a := [counts.AddrLen]byte(m.GroupAddrs[16*i:])
		if i > 0 {
			prev := [counts.AddrLen]byte(m.GroupAddrs[16*(i-1):])
			if m.Minutes[i] < m.Minutes[i-1] || m.Minutes[i] == m.Minutes[i-1] && bytes.Compare(prev[:], a[:]) >= 0 {
				t.Fatalf("partition %d: group %d out of order or repeated", p, i)
			}
		}
		if got := counts.Partition(a, partitions); got != p {
			t.Fatalf("group %d of partition %d hashes to partition %d", i, p, got)
		}
		k := oracleKey{p, m.Minutes[i], netip.AddrFrom16(a).Unmap()}
		if _, dup := into[k]; dup {
			t.Fatalf("partition %d: group %v published twice", p, k)
		}
		into[k] = oracleCounts{m.Requests[i], m.Status_4Xx[i], m.Status_5Xx[i], m.AuthFailures[i], m.BytesSent[i]}
	}
}

func checkSameGroups(t *testing.T, got, want map[oracleKey]oracleCounts) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("group %v: got %+v (present %v), want %+v", k, g, ok, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected group %v: %+v", k, g)
		}
	}
}

// TestCombinerProperty feeds random records through the combiner and the
// encoder, decodes the messages with proto.Unmarshal and compares the groups
// with the oracle, over several batches on one combiner, as a worker reuses
// it.
func TestCombinerProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	pool := make([]netip.Addr, 300)
	for i := range pool {
		if i%3 == 0 {
			pool[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
		} else {
			pool[i] = netip.AddrFrom4([4]byte{byte(i), 2, 0, byte(i * 7)})
		}
	}
	base := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for _, partitions := range []int{1, 3, 32} {
		c := newCombiner(partitions)
		for batch := range 30 {
			n := rng.IntN(3000)
			if batch%7 == 0 {
				n = 0
			}
			recs := make([]testRecord, n)
			c.reset()
			for i := range recs {
				r := testRecord{
					addr:   pool[int(rng.ExpFloat64()*20)%len(pool)],
					t:      base.Add(time.Duration(rng.IntN(300)-60) * time.Second),
					status: []uint32{0, 200, 304, 400, 401, 404, 407, 499, 500, 503, 599, 600}[rng.IntN(12)],
					size:   uint64(rng.IntN(100000)),
					auth:   rng.IntN(5) == 0,
				}
				if batch%5 == 1 {
					r.t = time.Unix(int64(rng.IntN(240)-120), int64(rng.IntN(1e9))) // around 1970
				}
				recs[i] = r
				c.add(&format.Record{Addr: r.addr, Time: r.t, Status: r.status, Size: r.size, AuthFailure: r.auth})
			}
			c.finish()
			got := map[oracleKey]oracleCounts{}
			for p := range c.parts {
				var m logtallyv1.RecordBatch
				if err := proto.Unmarshal(appendRecordBatch(nil, &c.parts[p], nil, uint64(batch+1), base.UnixMilli()), &m); err != nil {
					t.Fatal(err)
				}
				if m.RawSeq != uint64(batch+1) {
					t.Fatalf("raw_seq %d", m.RawSeq)
				}
				decodedGroups(t, p, partitions, &m, got)
			}
			checkSameGroups(t, got, oracle(recs, partitions))
			if t.Failed() {
				t.Fatalf("P=%d batch %d", partitions, batch)
			}
		}
	}
}

func TestCombinerAddAllocatesNothing(t *testing.T) {
	c := newCombiner(32)
	recs := make([]format.Record, 2000)
	for i := range recs {
		recs[i] = format.Record{Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Time: time.Unix(int64(i), 0), Status: 200, Size: 1}
	}
	run := func() {
		c.reset()
		for i := range recs {
			c.add(&recs[i])
		}
		c.finish()
		for p := range c.parts {
			c.parts[p].buf = appendRecordBatch(c.parts[p].buf[:0], &c.parts[p], nil, 1, 1)
		}
	}
	run() // grow the map, slices and buffers once
	if n := testing.AllocsPerRun(20, run); n != 0 {
		t.Fatalf("%v allocations per batch once warm", n)
	}
}

// A redelivered raw batch may be combined by another worker, whose table has
// another hash seed, and some of its partitions' messages may already be
// stored from the first delivery: the output must not depend on either.
func TestCombineDeterministic(t *testing.T) {
	data := benchRawBatch(t, true)
	var outs [2][][]byte
	for k := range outs {
		w := &worker{parser: format.New(format.Options{}), comb: newCombiner(7)}
		if k == 1 {
			w.comb.add(&format.Record{Addr: netip.MustParseAddr("192.0.2.1"), Time: time.Unix(0, 0)}) // leftovers of an earlier batch
		}
		if err := decodeRaw(data, &w.raw); err != nil {
			t.Fatal(err)
		}
		w.raw.lines = append(w.raw.lines, []byte("garbage"))
		w.combine(&w.raw, 12345)
		for p := range w.comb.parts {
			outs[k] = append(outs[k], appendRecordBatch(nil, &w.comb.parts[p], nil, 12345, w.raw.receivedMS))
		}
	}
	for p := range outs[0] {
		if !bytes.Equal(outs[0][p], outs[1][p]) {
			t.Fatalf("partition %d encodes differently on two workers", p)
		}
	}
	var m logtallyv1.RecordBatch
	if err := proto.Unmarshal(outs[0][12345%7], &m); err != nil || m.DeadLetters != 1 {
		t.Fatalf("dead letters on partition seq mod P: %v %v", m.DeadLetters, err)
	}
}

// TestCombinerManyGroups grows the table far beyond its initial size, then
// checks that the next, small batch is still right and that the worker let
// go of the big table.
func TestCombinerManyGroups(t *testing.T) {
	c := newCombiner(4)
	for _, n := range []int{70000, 10} {
		c.reset()
		recs := make([]testRecord, 0, 2*n)
		for i := range n {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			for j := range 2 {
				r := testRecord{addr: a, t: time.Unix(int64(60*(i%3)+j), 0), status: 200 + uint32(i%4)*100, size: uint64(i)}
				recs = append(recs, r)
				c.add(&format.Record{Addr: r.addr, Time: r.t, Status: r.status, Size: r.size})
			}
		}
		c.finish()
		got := map[oracleKey]oracleCounts{}
		for p := range c.parts {
			var m logtallyv1.RecordBatch
			if err := proto.Unmarshal(appendRecordBatch(nil, &c.parts[p], nil, 1, 1), &m); err != nil {
				t.Fatal(err)
			}
			decodedGroups(t, p, len(c.parts), &m, got)
		}
		checkSameGroups(t, got, oracle(recs, len(c.parts)))
		if n == 70000 && len(c.slots) < 2*n {
			t.Fatalf("table of %d slots for %d groups", len(c.slots), n)
		}
	}
	c.reset()
	if len(c.slots) != minSlots {
		t.Errorf("table kept %d slots after a huge batch", len(c.slots))
	}
	for p := range c.parts {
		if cap(c.parts[p].groups) > maxKeptGroups {
			t.Errorf("partition %d kept %d groups of capacity", p, cap(c.parts[p].groups))
		}
	}
}

// The table's generation counter wraps after 2^32 batches; slots of the
// old generation 1 must not then look current.
func TestCombinerGenerationWrap(t *testing.T) {
	c := newCombiner(2)
	rec := format.Record{Addr: netip.MustParseAddr("192.0.2.1"), Time: time.Unix(0, 0)}
	c.add(&rec) // a new combiner's generation is 1
	c.gen = math.MaxUint32
	c.reset()
	c.add(&rec)
	n := 0
	for p := range c.parts {
		for _, g := range c.parts[p].groups {
			n++
			if g.c[counts.Requests] != 1 {
				t.Fatalf("group %+v after the wrap", g)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d groups after the wrap, want 1", n)
	}
}

// The field groups are deterministic too, also when the user-agent budget
// of a batch runs out: a worker whose caches are warm from other batches
// encodes the same bytes as a fresh one, and the decoded groups match.
func TestCombineDimsDeterministic(t *testing.T) {
	rb := &logtallyv1.RawBatch{Source: "tcp", ReceivedUnixMs: time.Date(2026, 11, 24, 11, 0, 0, 0, time.UTC).UnixMilli()}
	for i := range 600 {
		// 600 distinct user agents, more than the budget of 256 per batch.
		rb.Lines = append(rb.Lines, fmt.Appendf(nil, `203.0.113.%d - - [24/Nov/2026:10:00:%02d +0000] "GET /p/%d/%s HTTP/1.1" %d 10 "-" "Mozilla/5.0 (X11; Linux x86_64) Firefox/%d.0"`,
			i%250, i%60, i%40, strings.Repeat("z", i%30), []int{200, 404, 500}[i%3], i))
	}
	data, err := proto.Marshal(rb)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Dims: "all"}
	var outs [2][][]byte
	var skipped [2]uint64
	for k := range outs {
		d, err := newDimmer(cfg.dimsConfig(), 7)
		if err != nil {
			t.Fatal(err)
		}
		w := &worker{parser: format.New(format.Options{}), comb: newCombiner(7), dims: d}
		if k == 1 {
			// Warm the caches with the same user agents in reverse order.
			for i := 599; i >= 0; i-- {
				d.ua.classify(fmt.Appendf(nil, "Mozilla/5.0 (X11; Linux x86_64) Firefox/%d.0", i))
			}
		}
		if err := decodeRaw(data, &w.raw); err != nil {
			t.Fatal(err)
		}
		w.combine(&w.raw, 99)
		skipped[k] = d.uaSkipped
		for p := range w.comb.parts {
			outs[k] = append(outs[k], appendRecordBatch(nil, &w.comb.parts[p], d.comb.parts[p].groups, 99, w.raw.receivedMS))
		}
	}
	if skipped[0] != 600-256 || skipped[1] != skipped[0] {
		t.Fatalf("unparsed user agents: %v, want %d on both", skipped, 600-256)
	}
	var groups, requests uint64
	for p := range outs[0] {
		if !bytes.Equal(outs[0][p], outs[1][p]) {
			t.Fatalf("partition %d encodes differently on two workers", p)
		}
		var m logtallyv1.RecordBatch
		if err := proto.Unmarshal(outs[0][p], &m); err != nil {
			t.Fatal(err)
		}
		if g := m.GetDimGroups(); g != nil {
			groups += uint64(len(g.Minutes))
			for _, r := range g.Requests {
				requests += r
			}
			if len(g.Keys) != 16*len(g.Minutes) {
				t.Fatalf("partition %d: %d key bytes for %d groups", p, len(g.Keys), len(g.Minutes))
			}
		}
	}
	// Every line counts once under status, method, path, ua and os.
	if requests != 5*600 || groups == 0 {
		t.Fatalf("field groups count %d requests in %d groups, want %d", requests, groups, 5*600)
	}
}

package windows

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/counts"
)

// An expired manifest leaves a marker (the counts buckets keep subject
// delete markers) that the watch delivers: the index drops the key at once,
// without a query having to miss it first. Before, expired keys stayed in
// the index until a fetch found nothing.
func TestIndexDropsExpiredWindows(t *testing.T) {
	e := newEnv(t, envOpts{partitions: 2, resolutions: oneMinute(2 * time.Second)})
	var d data
	for i := range 50 {
		d.evs = append(d.evs, ev{ip: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), t: base, c: counts.Counters{Requests: 1}})
	}
	e.write(d, 1)
	x := e.r.indexes[0]
	if n := x.numKeys(); n != 2 {
		t.Fatalf("index has %d keys, want 2", n)
	}
	waitFor(t, "the expired windows to leave the index", func() bool { return x.numKeys() == 0 })
	if st := e.r.Stats(); st.KVGets != 0 {
		t.Fatalf("the index needed %d gets", st.KVGets)
	}
	got, err := e.r.Top(context.Background(), Range{base, base.Add(time.Minute)}, TopQuery{N: 5})
	if err != nil || len(got.Items) != 0 {
		t.Fatalf("after expiry: %+v %v", got, err)
	}
	if st := e.r.Stats(); st.KVGets != 0 {
		t.Fatalf("a query over expired windows made %d gets", st.KVGets)
	}
}

// The index watches manifests only: chunk writes (keys with three tokens)
// neither enter it nor wake it.
func TestIndexIgnoresChunks(t *testing.T) {
	e := newEnv(t, envOpts{partitions: 2, maxPayload: 64 << 10, layout: smallLayout, resolutions: oneMinute(0)})
	var d data
	for i := range 3000 {
		d.evs = append(d.evs, ev{ip: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), t: base.Add(time.Duration(i%3) * time.Minute), c: counts.Counters{Requests: 1}})
	}
	e.write(d, 3)
	_, _, _, chunks, _, _ := e.shape()
	if chunks < 10 {
		t.Fatalf("only %d chunks", chunks)
	}
	if n := e.r.indexes[0].numKeys(); n != 6 {
		t.Fatalf("index has %d keys, want the 6 manifests", n)
	}
	x := e.r.indexes[0]
	before := x.updates.Load()
	// A commit that spills a run: chunks, a head and the manifest in one batch.
	var ch counts.Change
	for i := range 2000 {
		ch.Entries = append(ch.Entries, counts.Entry{Addr: counts.Pack(netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)})), Counters: counts.Counters{Requests: 1}})
	}
	ctx := context.Background()
	rev, err := e.commit(ctx, 0, counts.Key(base, 0), ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.r.WaitRevision(ctx, "logtally_counts_1m", rev); err != nil {
		t.Fatal(err)
	}
	_, _, _, after, _, _ := e.shape()
	if after <= chunks {
		t.Fatalf("the commit wrote no chunks (%d → %d)", chunks, after)
	}
	if n := x.updates.Load() - before; n != 1 {
		t.Fatalf("the watch delivered %d entries for one manifest and %d chunks", n, after-chunks)
	}
}

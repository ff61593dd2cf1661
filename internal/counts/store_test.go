package counts

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/natstest"
	"github.com/logtally/logtally/internal/topology"
)

func testStore(t *testing.T, maxPayload int32, layout func(*Layout)) (*Store, jetstream.JetStream) {
	t.Helper()
	srv := natstest.RunBasicJetStreamServer(t, natstest.MaxPayload(maxPayload))
	nc, js := natstest.Connect(t, srv)
	ctx := context.Background()
	if _, err := topology.Ensure(ctx, js, topology.Defaults()); err != nil {
		t.Fatal(err)
	}
	l := DefaultLayout(nc.MaxPayload(), 48*time.Hour)
	if layout != nil {
		layout(&l)
	}
	s, err := NewStore(ctx, js, "logtally_counts_1m", l)
	if err != nil {
		t.Fatal(err)
	}
	return s, js
}

// commitAll commits ch and waits.
func commitAll(t *testing.T, s *Store, key string, cur *Manifest, rev uint64, ch Change) (*Manifest, uint64, Stats) {
	t.Helper()
	m, r, st, err := s.Commit(context.Background(), key, cur, rev, ch).Wait(context.Background())
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return m, r, st
}

// A window grows far past max_payload (64 KiB here) through commits of
// random changes; every value stays under it, the window always reads back
// as the reference sum, and the write kinds include spills, merges and
// full compactions.
func TestStoreKeepsLargeWindowsExact(t *testing.T) {
	const maxPayload = 64 << 10
	s, js := testStore(t, maxPayload, func(l *Layout) { l.MaxDeltas = 4 })
	ctx := context.Background()
	key := "1795514700.3"
	r := rand.New(rand.NewPCG(11, 12))
	ref := map[[AddrLen]byte]Counters{}
	pool := randomEntries(r, 60000)
	var cur *Manifest
	var rev uint64
	kinds := map[WriteKind]int{}
	var written, increments int
	for step := 0; step < 40; step++ {
		// Mostly new IPs, some repeats of earlier ones.
		var ch []Entry
		picked := map[[AddrLen]byte]bool{}
		n := 200 + r.IntN(3000)
		if step%7 == 6 {
			n = 3 // a trickle: stays inline or spills small
		}
		for len(ch) < n {
			e := pool[r.IntN(min(len(pool), 1500*(step+1)))]
			if picked[e.Addr] {
				continue
			}
			picked[e.Addr] = true
			e.Counters = Counters{Requests: 1 + r.Uint64N(5), Status4xx: r.Uint64N(2), Bytes: r.Uint64N(5000)}
			ch = append(ch, e)
			c := ref[e.Addr]
			c.Add(e.Counters)
			ref[e.Addr] = c
		}
		SortEntries(ch)
		var st Stats
		cur, rev, st = commitAll(t, s, key, cur, rev, Change{Entries: ch, LastSeq: uint64(step + 1), DeadLetters: 1})
		kinds[st.Kind]++
		written += st.ManifestBytes + st.ChunkBytes
		increments += len(ch)
		if st.ManifestBytes > maxPayload/2 {
			t.Fatalf("manifest of %d bytes", st.ManifestBytes)
		}
	}
	// Read back from scratch, as a new owner would.
	m, gotRev, err := s.Load(ctx, key)
	if err != nil || gotRev != rev || m.LastSeq != 40 || m.DeadLetters != 40 {
		t.Fatalf("load: rev %d (want %d) %+v %v", gotRev, rev, m, err)
	}
	all, err := s.ReadAll(ctx, key, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(ref) {
		t.Fatalf("%d entries read back, want %d", len(all), len(ref))
	}
	var total Counters
	for _, e := range all {
		if ref[e.Addr] != e.Counters {
			t.Fatalf("%s: %+v, want %+v", Unpack(e.Addr), e.Counters, ref[e.Addr])
		}
		total.Add(e.Counters)
	}
	if total != m.Totals {
		t.Fatalf("totals %+v, entries add up to %+v", m.Totals, total)
	}
	if kinds[WriteSpill] == 0 || kinds[WriteFull] == 0 || kinds[WriteMerge] == 0 {
		t.Fatalf("write kinds %v: want spills, merges and full compactions", kinds)
	}
	// Every stored value is below max_payload.
	kv, _ := js.KeyValue(ctx, s.Bucket())
	keys, _ := kv.ListKeys(ctx)
	nkeys := 0
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Value()) >= maxPayload {
			t.Fatalf("%s holds %d bytes", k, len(e.Value()))
		}
		nkeys++
	}
	if nkeys < 5 {
		t.Fatalf("only %d keys: the window was never split", nkeys)
	}
	t.Logf("%d entries in %d keys, kinds %v, %.1f bytes written per increment", len(all), nkeys, kinds, float64(written)/float64(increments))
}

// Two writers that start from the same revision: one wins, the other gets
// ErrConflict, and the window holds exactly the winner's change, also when
// the losing write is an atomic batch of chunks.
func TestStoreConflictLeavesWinnerIntact(t *testing.T) {
	s, _ := testStore(t, 64<<10, nil)
	ctx := context.Background()
	key := "1795514700.1"
	r := rand.New(rand.NewPCG(13, 14))
	base := randomEntries(r, 10)
	cur, rev, _ := commitAll(t, s, key, nil, 0, Change{Entries: base, LastSeq: 1})

	big := randomEntries(r, 8000) // spills: an atomic batch
	small := randomEntries(r, 5)  // inline: one message
	_, _, _ = commitAll(t, s, key, cur, rev, Change{Entries: small, LastSeq: 2})
	if _, _, _, err := s.Commit(ctx, key, cur, rev, Change{Entries: big, LastSeq: 2}).Wait(ctx); !errors.Is(err, ErrConflict) {
		t.Fatalf("second writer on the same revision: %v, want ErrConflict", err)
	}
	m, _, err := s.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.ReadAll(ctx, key, m)
	if err != nil {
		t.Fatal(err)
	}
	want := MergeSorted(nil, base, small)
	if len(all) != len(want) || len(m.Runs) != 0 {
		t.Fatalf("window holds %d entries in %d runs, want the winner's %d inline", len(all), len(m.Runs), len(want))
	}
	// The same the other way round: the batch wins, the inline write loses.
	cur, rev, _ = commitAll(t, s, key, m, mustRev(t, s, key), Change{Entries: big, LastSeq: 3})
	if len(cur.Runs) == 0 {
		t.Fatal("8000 entries did not spill into a run")
	}
	if _, _, _, err := s.Commit(ctx, key, m, rev-1, Change{Entries: small, LastSeq: 3}).Wait(ctx); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale inline write: %v", err)
	}
	m, _, _ = s.Load(ctx, key)
	all, err = s.ReadAll(ctx, key, m)
	if err != nil || len(all) != len(MergeSorted(nil, want, big)) {
		t.Fatalf("after the batch won: %d entries, %v", len(all), err)
	}
}

func mustRev(t *testing.T, s *Store, key string) uint64 {
	t.Helper()
	_, rev, err := s.Load(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

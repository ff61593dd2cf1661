package counts

import (
	"errors"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"

	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
)

// randomEntries returns n sorted entries with distinct addresses, IPv4 and
// IPv6 mixed, some counters zero.
func randomEntries(r *rand.Rand, n int) []Entry {
	seen := map[[AddrLen]byte]bool{}
	out := make([]Entry, 0, n)
	for len(out) < n {
		var a netip.Addr
		if r.IntN(3) == 0 {
			var b [16]byte
			b[0], b[1] = 0x20, 0x01
			for i := 2; i < 16; i++ {
				b[i] = byte(r.IntN(256))
			}
			a = netip.AddrFrom16(b)
		} else {
			a = netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
		}
		e := Entry{Addr: Pack(a)}
		if seen[e.Addr] {
			continue
		}
		seen[e.Addr] = true
		e.Requests = 1 + r.Uint64N(1000)
		if r.IntN(2) == 0 {
			e.Status4xx = r.Uint64N(e.Requests + 1)
		}
		if r.IntN(4) == 0 {
			e.Status5xx = r.Uint64N(e.Requests + 1)
		}
		if r.IntN(5) == 0 {
			e.AuthFailures = r.Uint64N(e.Requests + 1)
		}
		if r.IntN(2) == 0 {
			e.Bytes = r.Uint64()
		}
		out = append(out, e)
	}
	SortEntries(out)
	return out
}

func TestEntriesRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 100, 5000} {
		es := randomEntries(r, n)
		b := EncodeEntries(es)
		got, err := DecodeEntries(nil, b)
		if err != nil {
			t.Fatalf("%d entries: %v", n, err)
		}
		if len(got) != len(es) {
			t.Fatalf("%d entries decoded as %d", n, len(got))
		}
		for i := range es {
			if got[i] != es[i] {
				t.Fatalf("entry %d: %+v, want %+v", i, got[i], es[i])
			}
		}
		if m, _ := EntriesLen(b); m != n {
			t.Fatalf("EntriesLen %d, want %d", m, n)
		}
		if n > 100 && len(b) > n*20 {
			t.Errorf("%d entries take %d bytes: front coding should keep IPv4 entries far below 24 bytes", n, len(b))
		}
	}
}

func TestDecodeEntriesRejectsBadInput(t *testing.T) {
	good := EncodeEntries(randomEntries(rand.New(rand.NewPCG(3, 4)), 3))
	cases := map[string][]byte{
		"empty":         nil,
		"count too big": {0xff, 0x01},
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte{}, good...), 0),
		"shared > 16":   {1, 17},
		"first shares":  append([]byte{1, 3}, make([]byte, 18)...),
		"bad flags":     append(append([]byte{1, 0}, make([]byte, 16)...), 0x80, 1),
	}
	// Two equal addresses: out of order.
	e := Entry{Counters: Counters{Requests: 1}}
	b := AppendEntry([]byte{2}, nil, &e)
	cases["duplicate address"] = AppendEntry(b, &e.Addr, &e)
	for name, in := range cases {
		if _, err := DecodeEntries(nil, in); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", name, err)
		}
	}
}

func TestMergeSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	a, b := randomEntries(r, 300), randomEntries(r, 300)
	b = append(b, a[:50]...) // overlap
	SortEntries(b)
	ref := map[[AddrLen]byte]Counters{}
	for _, e := range append(append([]Entry{}, a...), b...) {
		c := ref[e.Addr]
		c.Add(e.Counters)
		ref[e.Addr] = c
	}
	got := MergeSorted(nil, a, b)
	if len(got) != len(ref) {
		t.Fatalf("%d merged entries, want %d", len(got), len(ref))
	}
	for i, e := range got {
		if i > 0 && CompareAddr(&got[i-1].Addr, &e.Addr) >= 0 {
			t.Fatal("merge output not sorted")
		}
		if ref[e.Addr] != e.Counters {
			t.Fatalf("%s: %+v, want %+v", Unpack(e.Addr), e.Counters, ref[e.Addr])
		}
	}
}

// A format 1 value (what releases before the class counters wrote) reads
// as a manifest whose entries are all inline, each count a request.
func TestManifestReadsFormat1(t *testing.T) {
	a, b := Pack(netip.MustParseAddr("203.0.113.7")), Pack(netip.MustParseAddr("2001:db8::1"))
	old, err := proto.Marshal(&logtallyv1.WindowState{
		LastSeq: 99, Addrs: append(append([]byte{}, b[:]...), a[:]...), Counts: []uint64{1, 5}, DeadLetters: 3, Late: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := UnmarshalManifest(old)
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != 1 || m.LastSeq != 99 || m.DeadLetters != 3 || m.Late != 2 || m.Totals.Requests != 6 || len(m.Inline) != 2 || len(m.Runs) != 0 {
		t.Fatalf("format 1 manifest: %+v", m)
	}
	if m.Inline[0].Addr != a || m.Inline[0].Requests != 5 || m.Inline[1].Addr != b {
		t.Fatalf("format 1 entries not sorted or wrong: %+v", m.Inline)
	}
	// Written again, it is format 2 and reads back the same.
	data, err := MarshalManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := UnmarshalManifest(data)
	if err != nil || m2.Format != Format || m2.Totals != m.Totals || len(m2.Inline) != 2 {
		t.Fatalf("rewritten: %+v %v", m2, err)
	}
	bad, _ := proto.Marshal(&logtallyv1.WindowState{Addrs: []byte{1, 2, 3}, Counts: []uint64{1}})
	if _, err := UnmarshalManifest(bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("3 address bytes for one count: %v", err)
	}
	future, _ := proto.Marshal(&logtallyv1.WindowState{Format: Format + 1})
	if _, err := UnmarshalManifest(future); err == nil {
		t.Fatal("a newer format must be refused, not misread")
	}
}

func TestParseClass(t *testing.T) {
	for c := Class(0); c < NumClasses; c++ {
		got, err := ParseClass(c.String())
		if err != nil || got != c {
			t.Errorf("ParseClass(%q) = %v, %v", c.String(), got, err)
		}
	}
	if _, err := ParseClass("404"); !errors.Is(err, ErrUnknownClass) {
		t.Fatalf("ParseClass(404): %v", err)
	}
}

func FuzzDecodeEntries(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 8))
	f.Add(EncodeEntries(randomEntries(r, 3)))
	f.Add(EncodeEntries(nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := DecodeEntries(nil, b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		// What decodes is sorted and re-encodes to the same entries.
		for i := 1; i < len(es); i++ {
			if CompareAddr(&es[i-1].Addr, &es[i].Addr) >= 0 {
				t.Fatal("decoded entries out of order")
			}
		}
		again, err := DecodeEntries(nil, EncodeEntries(es))
		if err != nil || len(again) != len(es) {
			t.Fatalf("re-encoding: %v", err)
		}
		for i := range es {
			if again[i] != es[i] {
				t.Fatal("re-encoding changed an entry")
			}
		}
	})
}

func FuzzUnmarshalManifest(f *testing.F) {
	r := rand.New(rand.NewPCG(9, 10))
	m := &Manifest{LastSeq: 5, Generation: 2, Inline: randomEntries(r, 4), Runs: []Run{{Generation: 1, Entries: 10, Bytes: 100, Slots: []uint32{1, 2}, Firsts: [][AddrLen]byte{{1}, {2}}, HeadSlot: 3}}}
	b, _ := MarshalManifest(m)
	f.Add(b)
	old, _ := proto.Marshal(&logtallyv1.WindowState{Addrs: make([]byte, 32), Counts: []uint64{1, 2}})
	f.Add(old)
	chunk, _ := MarshalChunk(3, EncodeEntries(randomEntries(r, 5)), make([]uint64, NumClasses))
	f.Add(chunk)
	f.Fuzz(func(t *testing.T, b []byte) {
		// Neither may panic; what a manifest accepts encodes again.
		if m, err := UnmarshalManifest(b); err == nil {
			if _, err := MarshalManifest(m); err != nil {
				t.Fatalf("re-encoding an accepted manifest: %v", err)
			}
			for i := 1; i < len(m.Inline); i++ {
				if CompareAddr(&m.Inline[i-1].Addr, &m.Inline[i].Addr) >= 0 && m.Format == Format {
					t.Fatal("inline entries out of order")
				}
			}
		}
		_, _ = UnmarshalChunk(b)
	})
}

func TestBytesSaturate(t *testing.T) {
	c := Counters{Requests: 1, Bytes: math.MaxUint64 - 5}
	c.Add(Counters{Requests: 1, Bytes: 10})
	if c.Bytes != math.MaxUint64 || c.Requests != 2 {
		t.Fatalf("%+v: bytes must saturate, not wrap", c)
	}
}

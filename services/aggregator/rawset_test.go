package aggregator

import (
	"math/rand/v2"
	"testing"
)

func TestRawSetDeduplicatesAndAdvances(t *testing.T) {
	var s rawSet
	r := rand.New(rand.NewPCG(1, 2))
	order := r.Perm(500)
	seen := map[uint64]bool{}
	for _, i := range order {
		q := uint64(i + 1)
		if s.has(q) {
			t.Fatalf("%d reported applied before it was", q)
		}
		s.add(q)
		seen[q] = true
		for _, j := range order[:10] {
			if seen[uint64(j+1)] != s.has(uint64(j+1)) {
				t.Fatalf("has(%d) = %v", j+1, s.has(uint64(j+1)))
			}
		}
	}
	if s.low != 500 || len(s.above) != 0 {
		t.Fatalf("after 1..500 in any order: low %d, above %v", s.low, s.above)
	}
	// Holes at 502, 505-506; 510 present.
	for _, q := range []uint64{501, 503, 504, 507, 508, 510} {
		s.add(q)
	}
	got := s.ranges()
	want := []uint64{503, 504, 507, 508, 510, 510}
	if len(got) != len(want) {
		t.Fatalf("ranges %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("ranges %v, want %v", got, want)
		}
	}
	var back rawSet
	if !back.setRanges(s.low, got) || back.low != s.low || len(back.above) != len(s.above) {
		t.Fatalf("restore: %+v", back)
	}
	missing, first := s.advance(509, 0)
	if missing != 4 || first != 502 { // 502, 505, 506, 509
		t.Fatalf("advance(509): %d missing from %d, want 4 from 502", missing, first)
	}
	if s.low != 510 || len(s.above) != 0 || !s.has(505) {
		t.Fatalf("after advance: %+v", s)
	}
	// A floor keeps legacy holes from counting.
	s.add(515)
	if m, _ := s.advance(520, 518); m != 2 { // 519 and 520; 511-514 and 516-518 are at or below the floor
		t.Fatalf("advance with floor: %d missing", m)
	}
	for _, bad := range [][]uint64{{5}, {3, 2}, {1, 4}} {
		var b rawSet
		if b.setRanges(2, bad) {
			t.Fatalf("setRanges accepted %v", bad)
		}
	}
}

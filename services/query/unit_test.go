package query

import (
	"slices"
	"testing"
	"time"
)

func TestDecompose(t *testing.T) {
	sizes := []int64{60, 3600}
	at := func(s string) int64 { return mustTime(s).Unix() }
	got := decompose(at("2026-11-24T09:57:00Z"), at("2026-11-24T12:03:00Z"), sizes)
	want := []segment{
		{0, at("2026-11-24T09:57:00Z"), at("2026-11-24T10:00:00Z")},
		{1, at("2026-11-24T10:00:00Z"), at("2026-11-24T12:00:00Z")},
		{0, at("2026-11-24T12:00:00Z"), at("2026-11-24T12:03:00Z")},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	if got := decompose(at("2026-11-24T10:13:00Z"), at("2026-11-24T11:00:00Z"), sizes); len(got) != 1 || got[0].res != 0 {
		t.Fatalf("within an hour: %v", got)
	}
	// Three levels: 1m, 1h, 1d.
	got = decompose(at("2026-11-23T23:58:00Z"), at("2026-11-26T01:02:00Z"), []int64{60, 3600, 86400})
	want = []segment{
		{0, at("2026-11-23T23:58:00Z"), at("2026-11-24T00:00:00Z")},
		{2, at("2026-11-24T00:00:00Z"), at("2026-11-26T00:00:00Z")},
		{1, at("2026-11-26T00:00:00Z"), at("2026-11-26T01:00:00Z")},
		{0, at("2026-11-26T01:00:00Z"), at("2026-11-26T01:02:00Z")},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("3 levels: got %v want %v", got, want)
	}
}

func TestParseRange(t *testing.T) {
	now := mustTime("2026-11-24T10:00:10Z")
	r, err := ParseRange("5m", "", "", now)
	if err != nil || !r.To.Equal(mustTime("2026-11-24T10:01:00Z")) || r.Duration() != 5*time.Minute {
		t.Fatalf("%v %v", r, err)
	}
	r, err = ParseRange("7d", "", "", mustTime("2026-11-24T10:00:00Z"))
	if err != nil || !r.To.Equal(mustTime("2026-11-24T10:00:00Z")) || r.Duration() != 7*24*time.Hour {
		t.Fatalf("%v %v", r, err)
	}
	r, err = ParseRange("", "", "", now)
	if err != nil || r.Duration() != DefaultLast {
		t.Fatalf("default: %v %v", r, err)
	}
	for _, bad := range [][3]string{{"90s", "", ""}, {"-1d", "", ""}, {"", "2026-11-24T10:00:00Z", ""}, {"x", "", ""}} {
		if _, err := ParseRange(bad[0], bad[1], bad[2], now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for in, want := range map[string]time.Duration{"1d": 24 * time.Hour, "1d12h": 36 * time.Hour, "90m": 90 * time.Minute, "-5m": -5 * time.Minute} {
		if d, err := parseDuration(in); err != nil || d != want {
			t.Errorf("parseDuration(%q) = %v, %v", in, d, err)
		}
	}
	if _, err := parseDuration("999999999d"); err == nil {
		t.Error("overflow accepted")
	}
	for d, want := range map[time.Duration]string{400 * 24 * time.Hour: "400d", time.Hour: "1h", 90 * time.Second: "1m30s", 5 * time.Minute: "5m", 90 * time.Minute: "1h30m"} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q want %q", d, got, want)
		}
	}
}

func TestLRUBound(t *testing.T) {
	c := newLRU(1000)
	w := &window{entries: make([]entry, 20)} // 576 bytes
	c.add(cacheKey{part: 1, rev: 1}, w)
	c.add(cacheKey{part: 2, rev: 2}, w)
	if _, ok := c.get(cacheKey{part: 1, rev: 1}); ok {
		t.Fatal("oldest not evicted")
	}
	if _, ok := c.get(cacheKey{part: 2, rev: 2}); !ok {
		t.Fatal("newest evicted")
	}
	if n, b := c.stats(); n != 1 || b > 1000 {
		t.Fatalf("%d entries, %d bytes", n, b)
	}
}

// TestLRUKeepsNewestRevision: a newer revision of a key replaces the older
// one at once, and a late add of an older revision is ignored, so steady
// writes to the same keys do not fill the cache with superseded windows.
func TestLRUKeepsNewestRevision(t *testing.T) {
	c := newLRU(1 << 20)
	w := &window{entries: make([]entry, 4)}
	for rev := uint64(1); rev <= 1000; rev++ {
		c.add(cacheKey{res: 0, start: 60, part: 3, rev: rev}, w)
		c.add(cacheKey{res: 1, start: 3600, part: 3, rev: rev + 5000}, w)
	}
	if n, b := c.stats(); n != 2 || b != 2*w.size() {
		t.Fatalf("%d entries, %d bytes; want 2 entries", n, b)
	}
	c.add(cacheKey{res: 0, start: 60, part: 3, rev: 999}, w)
	if _, ok := c.get(cacheKey{res: 0, start: 60, part: 3, rev: 999}); ok {
		t.Fatal("an older revision replaced the newest")
	}
	if _, ok := c.get(cacheKey{res: 0, start: 60, part: 3, rev: 1000}); !ok {
		t.Fatal("newest revision lost")
	}
	// Evicting by size also forgets the key's newest-revision entry.
	small := newLRU(w.size())
	small.add(cacheKey{part: 1, rev: 1}, w)
	small.add(cacheKey{part: 2, rev: 2}, w)
	small.add(cacheKey{part: 1, rev: 3}, w)
	if n, _ := small.stats(); n != 1 {
		t.Fatalf("%d entries in a cache with room for one", n)
	}
	if len(small.newest) != len(small.items) {
		t.Fatalf("newest index has %d entries, cache %d", len(small.newest), len(small.items))
	}
}

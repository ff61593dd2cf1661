package windows

import (
	"testing"

	"github.com/logtally/logtally/internal/counts"
)

func TestLRUBound(t *testing.T) {
	c := newLRU(1000)
	w := newChunk(&counts.Chunk{Entries: make([]counts.Entry, 10)}) // 768 bytes
	c.add(cacheKey{kind: kindChunk, winKey: winKey{part: 1}, ver: 1}, w, false)
	c.add(cacheKey{kind: kindChunk, winKey: winKey{part: 2}, ver: 2}, w, false)
	if _, ok := c.get(cacheKey{kind: kindChunk, winKey: winKey{part: 1}, ver: 1}); ok {
		t.Fatal("oldest not evicted")
	}
	if _, ok := c.get(cacheKey{kind: kindChunk, winKey: winKey{part: 2}, ver: 2}); !ok {
		t.Fatal("newest evicted")
	}
	if n, b := c.stats(); n != 1 || b > 1000 {
		t.Fatalf("%d entries, %d bytes", n, b)
	}
}

// A newer version of a place replaces the older one at once, and a late
// add of an older version is ignored, so steady writes to the same windows
// do not fill the cache with superseded values.
func TestLRUKeepsNewestVersion(t *testing.T) {
	c := newLRU(1 << 20)
	w := newChunk(&counts.Chunk{Entries: make([]counts.Entry, 4)})
	for v := uint64(1); v <= 1000; v++ {
		c.add(cacheKey{kind: kindManifest, winKey: winKey{0, 60, 3}, ver: v}, w, false)
		c.add(cacheKey{kind: kindChunk, winKey: winKey{0, 60, 3}, slot: 2, ver: v + 5000}, w, false)
	}
	if n, b := c.stats(); n != 2 || b != 2*w.size() {
		t.Fatalf("%d entries, %d bytes; want 2 entries", n, b)
	}
	c.add(cacheKey{kind: kindManifest, winKey: winKey{0, 60, 3}, ver: 999}, w, false)
	if _, ok := c.get(cacheKey{kind: kindManifest, winKey: winKey{0, 60, 3}, ver: 999}); ok {
		t.Fatal("an older version replaced the newest")
	}
	if len(c.newest) != len(c.items) {
		t.Fatalf("newest index has %d entries, cache %d", len(c.newest), len(c.items))
	}
}

// Scans add at the cold end: once the cache is full they evict each other,
// not what point lookups keep hot.
func TestLRUColdAdds(t *testing.T) {
	w := newChunk(&counts.Chunk{Entries: make([]counts.Entry, 4)})
	c := newLRU(3 * w.size())
	hot := cacheKey{kind: kindChunk, slot: 1, ver: 1}
	c.add(hot, w, false)
	for i := range 10 {
		c.add(cacheKey{kind: kindChunk, slot: uint32(10 + i), ver: 1}, w, true)
	}
	if _, ok := c.get(hot); !ok {
		t.Fatal("a scan evicted a hot chunk")
	}
	if n, _ := c.stats(); n != 3 {
		t.Fatalf("%d entries", n)
	}
}

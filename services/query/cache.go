package query

import (
	"bytes"
	"container/list"
	"slices"
	"sync"

	"github.com/logtally/logtally/internal/counts"
)

// entry is one IP and its count in a decoded window.
type entry struct {
	addr  [counts.AddrLen]byte
	count uint64
}

// window is a decoded window value in the form queries use: entries sorted
// by packed address (byte order), so windows merge linearly.
type window struct {
	entries []entry
	total   uint64
	dead    uint64
	late    uint64
}

// emptyWindow stands for a missing key.
var emptyWindow = &window{}

func newWindow(w *counts.Window) *window {
	out := &window{entries: make([]entry, 0, len(w.Counts)), dead: w.DeadLetters, late: w.Late}
	for a, c := range w.Counts {
		if c == 0 {
			continue
		}
		out.entries = append(out.entries, entry{addr: a, count: c})
		out.total += c
	}
	slices.SortFunc(out.entries, func(a, b entry) int { return bytes.Compare(a.addr[:], b.addr[:]) })
	return out
}

// size estimates the memory of the window in bytes.
func (w *window) size() int64 { return int64(len(w.entries))*24 + 96 }

// lookup returns the count of one address.
func (w *window) lookup(a [counts.AddrLen]byte) uint64 {
	i, ok := slices.BinarySearchFunc(w.entries, a, func(e entry, t [counts.AddrLen]byte) int {
		return bytes.Compare(e.addr[:], t[:])
	})
	if !ok {
		return 0
	}
	return w.entries[i].count
}

// cacheKey names one revision of one window key. The revision alone is
// unique within a bucket; the rest keeps keys readable and safe.
type cacheKey struct {
	res   int
	start int64
	part  int
	rev   uint64
}

// slot is a window key without its revision.
type slot struct {
	res   int
	start int64
	part  int
}

func (k cacheKey) slot() slot { return slot{res: k.res, start: k.start, part: k.part} }

type cacheItem struct {
	key cacheKey
	w   *window
}

// lru is a byte-bounded LRU cache of decoded windows. Values of a given
// key+revision never change, so entries need no invalidation. It holds at
// most one revision per key, the newest it has seen: queries ask for the
// revision the index holds, which only moves forward, so an older revision
// is dead weight. (Keeping them until LRU pressure pushed them out filled
// the whole bound with superseded windows under steady load.)
type lru struct {
	mu     sync.Mutex
	max    int64
	bytes  int64
	ll     *list.List
	items  map[cacheKey]*list.Element
	newest map[slot]*list.Element
}

func newLRU(maxBytes int64) *lru {
	return &lru{max: maxBytes, ll: list.New(), items: map[cacheKey]*list.Element{}, newest: map[slot]*list.Element{}}
}

func (c *lru) get(k cacheKey) (*window, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*cacheItem).w, true
}

func (c *lru) add(k cacheKey, w *window) {
	sz := w.size()
	if sz > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		c.ll.MoveToFront(el)
		return
	}
	if el, ok := c.newest[k.slot()]; ok {
		if el.Value.(*cacheItem).key.rev > k.rev {
			return // a slow fetch of a revision already superseded
		}
		c.remove(el)
	}
	el := c.ll.PushFront(&cacheItem{key: k, w: w})
	c.items[k] = el
	c.newest[k.slot()] = el
	c.bytes += sz
	for c.bytes > c.max {
		c.remove(c.ll.Back())
	}
}

func (c *lru) remove(el *list.Element) {
	it := el.Value.(*cacheItem)
	c.ll.Remove(el)
	delete(c.items, it.key)
	if c.newest[it.key.slot()] == el {
		delete(c.newest, it.key.slot())
	}
	c.bytes -= it.w.size()
}

// stats returns the number of entries and their estimated bytes.
func (c *lru) stats() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items), c.bytes
}

package windows

import (
	"container/list"
	"sync"
)

// What the cache holds.
const (
	kindManifest uint8 = iota + 1
	kindChunk
)

// cacheKey names one decoded value: a manifest at a revision (slot 0), or
// a chunk or head at a generation. Neither ever changes, so entries need no
// invalidation.
type cacheKey struct {
	kind uint8
	winKey
	slot uint32
	ver  uint64 // manifest revision or chunk generation
}

// place is a cache key without its version: where newer versions replace
// older ones.
type place struct {
	kind uint8
	winKey
	slot uint32
}

func (k cacheKey) place() place { return place{kind: k.kind, winKey: k.winKey, slot: k.slot} }

// sized is a cached value.
type sized interface{ size() int64 }

type cacheItem struct {
	key cacheKey
	v   sized
	sz  int64
}

// lru is a byte-bounded LRU cache of decoded manifests and chunks. It holds
// at most one version per place, the newest it has seen: readers ask for
// the revision the index holds (and the generations its manifest names),
// which only move forward, so older versions are dead weight.
//
// Values read by a scan (a whole run read in address order) are added at
// the cold end: while the cache has room they stay like any other value,
// but once it is full a scan evicts what earlier scans added before it
// touches the heads and chunks that point lookups keep hot.
type lru struct {
	mu     sync.Mutex
	max    int64
	bytes  int64
	ll     *list.List
	items  map[cacheKey]*list.Element
	newest map[place]*list.Element
}

func newLRU(maxBytes int64) *lru {
	return &lru{max: maxBytes, ll: list.New(), items: map[cacheKey]*list.Element{}, newest: map[place]*list.Element{}}
}

func (c *lru) get(k cacheKey) (sized, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*cacheItem).v, true
}

// add caches v under k; cold adds go to the end that is evicted first.
func (c *lru) add(k cacheKey, v sized, cold bool) {
	sz := v.size()
	if sz > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		if !cold {
			c.ll.MoveToFront(el)
		}
		return
	}
	if el, ok := c.newest[k.place()]; ok {
		if el.Value.(*cacheItem).key.ver > k.ver {
			return // a slow fetch of a version already superseded
		}
		c.remove(el)
	}
	it := &cacheItem{key: k, v: v, sz: sz}
	c.bytes += sz
	for c.bytes > c.max && c.ll.Len() > 0 {
		c.remove(c.ll.Back())
	}
	var el *list.Element
	if cold {
		el = c.ll.PushBack(it)
	} else {
		el = c.ll.PushFront(it)
	}
	c.items[k] = el
	c.newest[k.place()] = el
}

func (c *lru) remove(el *list.Element) {
	it := el.Value.(*cacheItem)
	c.ll.Remove(el)
	delete(c.items, it.key)
	if c.newest[it.key.place()] == el {
		delete(c.newest, it.key.place())
	}
	c.bytes -= it.sz
}

// stats returns the number of entries and their estimated bytes.
func (c *lru) stats() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items), c.bytes
}

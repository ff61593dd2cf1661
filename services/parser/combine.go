package parser

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"math"
	"slices"
	"time"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/services/parser/format"
)

// The parser combines before it publishes: the lines of one raw batch that
// share a minute and a client IP become one group with class counters, so
// the parsed stream stores and the aggregator applies fewer, smaller
// entries. Combining is exact: the window of a line is its minute (every
// window size is a multiple of a minute), and the counters only add up.

// groupKey is a group's unix minute and client IP in one array, so that
// it hashes as one block of bytes and sorts as one: the minute comes first,
// big-endian with the sign bit flipped (bytewise order is then numeric
// order, negative minutes first), then the 16 bytes of counts.Pack.
type groupKey [8 + counts.AddrLen]byte

func makeKey(minute int64, addr [counts.AddrLen]byte) groupKey {
	var k groupKey
	binary.BigEndian.PutUint64(k[:8], uint64(minute)^(1<<63))
	copy(k[8:], addr[:])
	return k
}

func (k *groupKey) minute() int64 { return int64(binary.BigEndian.Uint64(k[:8]) ^ (1 << 63)) }

func (k *groupKey) addr() [counts.AddrLen]byte { return [counts.AddrLen]byte(k[8:]) }

// group is one (minute, IP) of a raw batch and the classes of its lines,
// indexed by counts.Class.
type group struct {
	key groupKey
	c   [counts.NumClasses]uint64
}

// partBatch is what one raw batch contributes to one partition.
type partBatch struct {
	groups      []group
	deadLetters uint64
	// buf holds the partition's last encoded message. It is reused only
	// after JetStream acknowledged that message: until then the client may
	// publish it again (retries on "no responders").
	buf []byte
}

// slot is an entry of the combiner's hash table: where key's group is.
type slot struct {
	key  groupKey
	gen  uint32 // the slot is in use only if gen is the combiner's
	part uint32
	idx  uint32 // in parts[part].groups
}

// combiner groups the records of one raw batch by partition and (minute,
// IP). A worker keeps one and reuses it batch after batch; once its table
// and slices have grown, adding a line allocates nothing.
//
// The table is an open-addressing hash table rather than a Go map: one probe
// finds a key's group or the slot for a new one (a map needs a lookup and
// then an assignment), and emptying it for the next batch is one increment
// of gen instead of a clear that costs its whole capacity. The hash is
// maphash with a random seed per combiner, as Go maps use: client IPs can
// be chosen by whoever writes the logs (X-Forwarded-For), and a fixed hash
// would let them pick colliding ones.
type combiner struct {
	parts []partBatch
	seed  maphash.Seed
	slots []slot // length a power of two, at most half in use
	used  int
	gen   uint32
	// last is the slot of the previous line: consecutive lines of one
	// client in one minute are common (a page and its assets, a brute
	// force run) and skip the hash.
	last *slot
}

// Beyond these sizes a pathological batch's table, groups or buffers are
// dropped after it rather than kept: a worker should not hold megabytes
// for one batch of 30k one-line clients. Ordinary 256 KiB batches of
// access logs stay far below.
const (
	minSlots        = 1 << 10
	maxKeptSlots    = 1 << 15
	maxKeptGroups   = 1 << 14
	maxKeptBufBytes = 1 << 20
)

func newCombiner(partitions int) *combiner {
	return &combiner{parts: make([]partBatch, partitions), seed: maphash.MakeSeed(), slots: make([]slot, minSlots), gen: 1}
}

// reset empties the combiner for the next raw batch. Message buffers are
// kept: the caller acknowledged their publishes or dropped them.
func (c *combiner) reset() {
	c.last = nil
	c.used = 0
	if len(c.slots) > maxKeptSlots {
		c.slots = make([]slot, minSlots)
		c.gen = 1
	} else if c.gen++; c.gen == 0 {
		clear(c.slots) // gen wrapped: old slots would look current
		c.gen = 1
	}
	for i := range c.parts {
		pb := &c.parts[i]
		if cap(pb.groups) > maxKeptGroups {
			pb.groups = nil
		}
		pb.groups = pb.groups[:0]
		pb.deadLetters = 0
		if cap(pb.buf) > maxKeptBufBytes {
			pb.buf = nil
		}
	}
}

// dropBuffers forgets every message buffer, for when publishes may still
// be in flight and their data must not be overwritten.
func (c *combiner) dropBuffers() {
	for i := range c.parts {
		c.parts[i].buf = nil
	}
}

// unixMinute is floor(unix seconds / 60), also before 1970 (Go's integer
// division truncates toward zero).
func unixMinute(t time.Time) int64 {
	s := t.Unix()
	m := s / 60
	if s%60 < 0 {
		m--
	}
	return m
}

// lookup returns key's slot, creating its group if it is new.
func (c *combiner) lookup(key *groupKey) *slot {
	mask := uint64(len(c.slots) - 1)
	for i := maphash.Bytes(c.seed, key[:]) & mask; ; i = (i + 1) & mask {
		s := &c.slots[i]
		if s.gen != c.gen {
			if 2*(c.used+1) > len(c.slots) {
				c.grow()
				return c.lookup(key)
			}
			c.used++
			a := key.addr()
			p := counts.Partition(a, len(c.parts))
			pb := &c.parts[p]
			*s = slot{key: *key, gen: c.gen, part: uint32(p), idx: uint32(len(pb.groups))}
			pb.groups = append(pb.groups, group{key: *key})
			return s
		}
		if s.key == *key {
			return s
		}
	}
}

// grow doubles the table and moves the current slots into it.
func (c *combiner) grow() {
	old := c.slots
	c.slots = make([]slot, 2*len(old))
	mask := uint64(len(c.slots) - 1)
	for j := range old {
		if old[j].gen != c.gen {
			continue
		}
		i := maphash.Bytes(c.seed, old[j].key[:]) & mask
		for c.slots[i].gen == c.gen {
			i = (i + 1) & mask
		}
		c.slots[i] = old[j]
	}
	c.last = nil
}

// add counts one record.
func (c *combiner) add(r *format.Record) {
	c.addAt(makeKey(unixMinute(r.Time), counts.Pack(r.Addr)), r)
}

// addAt counts r under key (the dims combiner's keys are field values).
func (c *combiner) addAt(key groupKey, r *format.Record) {
	c.addHinted(key, r, &c.last)
}

// addHinted counts r under key, trying the slot *hint first and leaving
// key's slot there. Slots stay valid until reset; a grow leaves copies
// whose part and index are still right.
func (c *combiner) addHinted(key groupKey, r *format.Record, hint **slot) {
	s := *hint
	if s == nil || s.key != key || s.gen != c.gen {
		s = c.lookup(&key)
		*hint = s
	}
	g := &c.parts[s.part].groups[s.idx]
	g.c[counts.Requests]++
	if format.Status4xx(r.Status) {
		g.c[counts.Status4xx]++
	}
	if format.Status5xx(r.Status) {
		g.c[counts.Status5xx]++
	}
	if r.AuthFailure {
		g.c[counts.AuthFailures]++
	}
	// Sizes come from the log and can be anything up to 2^64-1: a forged
	// line must not wrap a client's sum around to a small number.
	if sum := g.c[counts.Bytes] + r.Size; sum >= r.Size {
		g.c[counts.Bytes] = sum
	} else {
		g.c[counts.Bytes] = math.MaxUint64
	}
}

// finish sorts every partition's groups into the order of the format:
// minute, then address bytewise (counts.CompareAddr), which is the bytewise
// order of their keys. The slots' indices are stale afterwards, which is
// fine: reset empties the table before the next batch.
func (c *combiner) finish() {
	for i := range c.parts {
		sortGroups(c.parts[i].groups)
	}
}

// sortGroups sorts by key. Partitions of a batch hold a few dozen groups
// each, where a plain insertion sort with the comparison inlined beats
// slices.SortFunc, whose comparison is an indirect call that copies two
// groups; long ones go to slices.SortFunc.
func sortGroups(gs []group) {
	if len(gs) > 48 {
		slices.SortFunc(gs, func(a, b group) int { return bytes.Compare(a.key[:], b.key[:]) })
		return
	}
	for i := 1; i < len(gs); i++ {
		if !keyLess(&gs[i].key, &gs[i-1].key) {
			continue
		}
		g := gs[i]
		j := i
		for ; j > 0 && keyLess(&g.key, &gs[j-1].key); j-- {
			gs[j] = gs[j-1]
		}
		gs[j] = g
	}
}

// keyLess compares keys as three big-endian words, the bytewise order.
func keyLess(a, b *groupKey) bool {
	for o := 0; o < len(a); o += 8 {
		x, y := binary.BigEndian.Uint64(a[o:]), binary.BigEndian.Uint64(b[o:])
		if x != y {
			return x < y
		}
	}
	return false
}

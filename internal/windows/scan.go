package windows

import (
	"github.com/logtally/logtally/internal/counts"
)

// Scans read sources in address order, chunk by chunk: a merge of the
// sources of one partition holds one chunk per source (and the next one,
// fetched ahead), never a whole run.

// cursor reads one source in address order from the first address ≥ lo to
// the last ≤ hi (nil: from the start, to the end).
type cursor struct {
	q    *query
	src  source
	hi   *[counts.AddrLen]byte
	es   []counts.Entry
	i    int
	next int // index of the next chunk to read
	last int // index of the last chunk to read
	pre  *prefetch
	cold bool
	done bool
	key  addrKey // of the current entry
}

// prefetch is a chunk being read ahead.
type prefetch struct {
	done chan struct{}
	ch   *chunk
	err  error
}

func (q *query) newCursor(s source, lo, hi *[counts.AddrLen]byte, cold bool) *cursor {
	c := &cursor{q: q, src: s, hi: hi, cold: cold}
	if s.run == nil {
		c.es = s.w.m.Inline
		if lo != nil {
			c.i, _ = search(c.es, lo)
		}
		c.next, c.last = 0, -1
		return c
	}
	c.last = len(s.run.Slots) - 1
	if lo != nil {
		c.next = max(chunkIndex(s, lo), 0)
	}
	if hi != nil {
		if ci := chunkIndex(s, hi); ci < 0 {
			c.done = true
		} else {
			c.last = ci
		}
	}
	return c
}

// start reads the cursor's first entry (and so its first chunk).
func (c *cursor) start(lo *[counts.AddrLen]byte) error {
	if c.done || c.src.run == nil {
		c.check()
		return nil
	}
	if err := c.load(); err != nil {
		return err
	}
	if lo != nil && !c.done {
		c.i, _ = search(c.es, lo)
		for c.i >= len(c.es) && !c.done {
			if err := c.load(); err != nil {
				return err
			}
		}
	}
	c.check()
	return nil
}

// load reads the next chunk (ending the cursor after the last one) and
// starts reading the one after it.
func (c *cursor) load() error {
	if c.next > c.last {
		c.done, c.es = true, nil
		return nil
	}
	var ch *chunk
	var err error
	if p := c.pre; p != nil {
		c.pre = nil
		select {
		case <-p.done:
			ch, err = p.ch, p.err
		case <-c.q.ctx.Done():
			return Unavailable("query timed out", c.q.ctx.Err())
		}
	} else {
		ch, err = c.q.chunk(c.src.w, c.src.run.Slots[c.next], c.src.run.Generation, c.cold)
	}
	if err != nil {
		return err
	}
	c.es, c.i = ch.Entries, 0
	c.next++
	if c.next <= c.last {
		p := &prefetch{done: make(chan struct{})}
		c.pre = p
		s, slot := c.src, c.src.run.Slots[c.next]
		go func() {
			defer close(p.done)
			p.ch, p.err = c.q.chunk(s.w, slot, s.run.Generation, c.cold)
		}()
	}
	return nil
}

// check ends the cursor past hi or past its entries.
func (c *cursor) check() {
	if c.i >= len(c.es) && (c.src.run == nil || c.next > c.last) {
		c.done = true
	}
	if c.done {
		return
	}
	c.key = keyOf(&c.es[c.i].Addr)
	if c.hi != nil && counts.CompareAddr(&c.es[c.i].Addr, c.hi) > 0 {
		c.done = true
	}
}

func (c *cursor) cur() *counts.Entry { return &c.es[c.i] }

// advance moves to the next entry.
func (c *cursor) advance() error {
	c.i++
	for c.i >= len(c.es) && !c.done {
		if c.src.run == nil || c.next > c.last {
			c.done = true
			break
		}
		if err := c.load(); err != nil {
			return err
		}
	}
	c.check()
	return nil
}

// merger merges cursors by address, adding the counters of equal
// addresses: a min-heap of the live cursors.
type merger struct {
	h []*cursor
}

// newMerger starts every cursor (their first chunks are read concurrently)
// and merges them.
func (q *query) newMerger(srcs []source, lo, hi *[counts.AddrLen]byte, cold bool) (*merger, error) {
	cs := make([]*cursor, len(srcs))
	for i, s := range srcs {
		cs[i] = q.newCursor(s, lo, hi, cold)
	}
	if err := q.each(len(cs), func(i int) error { return cs[i].start(lo) }); err != nil {
		return nil, err
	}
	m := &merger{}
	for _, c := range cs {
		if !c.done {
			m.h = append(m.h, c)
		}
	}
	for i := len(m.h)/2 - 1; i >= 0; i-- {
		m.down(i)
	}
	return m, nil
}

func (m *merger) less(i, j int) bool { return m.h[i].key.less(m.h[j].key) }

func (m *merger) down(i int) {
	n := len(m.h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		s := l
		if r := l + 1; r < n && m.less(r, l) {
			s = r
		}
		if !m.less(s, i) {
			return
		}
		m.h[i], m.h[s] = m.h[s], m.h[i]
		i = s
	}
}

// next returns the next address and its summed counters; ok is false at
// the end.
func (m *merger) next(e *counts.Entry) (bool, error) {
	if len(m.h) == 0 {
		return false, nil
	}
	*e = *m.h[0].cur()
	if err := m.pop(); err != nil {
		return false, err
	}
	k := keyOf(&e.Addr)
	for len(m.h) > 0 && m.h[0].key == k {
		e.Add(m.h[0].cur().Counters)
		if err := m.pop(); err != nil {
			return false, err
		}
	}
	return true, nil
}

// pop advances the smallest cursor and restores the heap.
func (m *merger) pop() error {
	c := m.h[0]
	if err := c.advance(); err != nil {
		return err
	}
	if c.done {
		n := len(m.h) - 1
		m.h[0] = m.h[n]
		m.h = m.h[:n]
	}
	if len(m.h) > 0 {
		m.down(0)
	}
	return nil
}

package aggregator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/dims"
)

// Dims windows are bounded: once a window closed (its end plus
// -aggregator.dims.grace is behind the partition's event-time watermark),
// each field keeps its top -aggregator.dims.top-k values by requests and
// the rest is summed into the field's other entry (dims.OtherKey). Later
// lines for a kept value add to it; a new value is kept while the field
// holds fewer than K, else it adds to other. Every stored count stays
// exact and the totals do not change; what a cut fixes is which values are
// listed. Values hash to partitions, so the union of every partition's top
// K holds the global top K: a global top-N with N ≤ K is exact.

// maxCutsPerFlush bounds the closed windows one flush cuts, so that a
// backlog of them does not hold up the partition.
const maxCutsPerFlush = 4

// keptSet is what a cut window holds: its values, and per field how many.
type keptSet struct {
	values map[[counts.AddrLen]byte]struct{}
	n      [256]int
}

func newKeptSet(es []counts.Entry) *keptSet {
	k := &keptSet{values: make(map[[counts.AddrLen]byte]struct{}, len(es))}
	for i := range es {
		if !dims.IsOther(es[i].Addr) {
			k.values[es[i].Addr] = struct{}{}
			k.n[es[i].Addr[0]]++
		}
	}
	return k
}

// route returns the key a group of a cut window is counted under.
func (k *keptSet) route(key [counts.AddrLen]byte, topK int) [counts.AddrLen]byte {
	if _, ok := k.values[key]; ok || dims.IsOther(key) {
		return key
	}
	if k.n[key[0]] < topK {
		k.values[key] = struct{}{}
		k.n[key[0]]++
		return key
	}
	return dims.OtherKey(dims.Dim(key[0]))
}

// cutEntries keeps the topK entries per field by requests (ties: key
// order) and sums the others, with any other entry already there, into
// one other entry per field. es is sorted by key; so is the result.
func cutEntries(es []counts.Entry, topK int) []counts.Entry {
	var out []counts.Entry
	for start := 0; start < len(es); {
		end := start
		for end < len(es) && es[end].Addr[0] == es[start].Addr[0] {
			end++
		}
		field := slices.Clone(es[start:end])
		var rest counts.Counters
		hasRest := false
		vals := field[:0]
		for _, e := range field {
			if dims.IsOther(e.Addr) {
				rest.Add(e.Counters)
				hasRest = true
				continue
			}
			vals = append(vals, e)
		}
		if len(vals) > topK {
			slices.SortFunc(vals, func(a, b counts.Entry) int {
				if c := cmp.Compare(b.Requests, a.Requests); c != 0 {
					return c
				}
				return counts.CompareAddr(&a.Addr, &b.Addr)
			})
			for _, e := range vals[topK:] {
				rest.Add(e.Counters)
			}
			hasRest = true
			vals = vals[:topK]
			slices.SortFunc(vals, func(a, b counts.Entry) int { return counts.CompareAddr(&a.Addr, &b.Addr) })
		}
		out = append(out, vals...)
		if hasRest {
			out = append(out, counts.Entry{Addr: dims.OtherKey(dims.Dim(es[start].Addr[0])), Counters: rest})
		}
		start = end
	}
	return out
}

// loadKept reads the values of a cut window into w.kept.
func (pt *partition) loadKept(ctx context.Context, r int, w *window) error {
	if r < pt.s.nIP || w.m == nil || w.m.TopK == 0 {
		return nil
	}
	es, err := pt.s.stores[r].ReadAll(ctx, w.key, w.m)
	if err != nil {
		return fmt.Errorf("read kept values of %s: %w", w.key, err)
	}
	w.kept = newKeptSet(es)
	return nil
}

// maxToCut bounds the closed-later windows a partition remembers after
// evicting them; past it they are left uncut (logtally_aggregator_dims_cuts_skipped_total).
const maxToCut = 4096

// closed reports whether the dims window k is past its grace.
func (pt *partition) closed(k windowKey) bool {
	end := (k.start + int64(pt.s.res[k.res].Size.Seconds())) * 1000
	return end+pt.s.cfg.DimsGrace.Milliseconds() <= pt.wm
}

// remember notes an evicted dims window that is not cut yet, so that it
// is cut once it closes.
func (pt *partition) remember(k windowKey, w *window) {
	if pt.s.cfg.DimsTopK <= 0 || k.res < pt.s.nIP || w.m == nil || w.m.TopK != 0 {
		return
	}
	if len(pt.toCut) >= maxToCut {
		pt.s.m.dimsCutSkipped.Inc()
		return
	}
	pt.toCut[k] = struct{}{}
}

// cutClosed cuts up to maxCutsPerFlush closed dims windows: clean ones in
// memory, and evicted ones it remembered. A cut changes no count and no
// LastSeq, so it is not part of the exactly-once bookkeeping; it is a
// compare-and-swap like every commit, and losing it fences the partition
// like a lost commit.
func (pt *partition) cutClosed(ctx context.Context) error {
	if pt.s.cfg.DimsTopK <= 0 {
		return nil
	}
	done := 0
	for k, w := range pt.windows {
		if done >= maxCutsPerFlush {
			return nil
		}
		if k.res < pt.s.nIP || w.dirty || w.m == nil || w.m.TopK != 0 || !pt.closed(k) {
			continue
		}
		if err := pt.cut(ctx, k, w); err != nil {
			return err
		}
		done++
	}
	for k := range pt.toCut {
		if done >= maxCutsPerFlush {
			return nil
		}
		if _, open := pt.windows[k]; open {
			delete(pt.toCut, k) // the loop above has it
			continue
		}
		if !pt.closed(k) {
			continue
		}
		key := counts.Key(time.Unix(k.start, 0), pt.p)
		m, rev, err := pt.s.stores[k.res].Load(ctx, key)
		if err != nil {
			return err
		}
		delete(pt.toCut, k)
		if m == nil || m.TopK != 0 {
			continue
		}
		if err := pt.cut(ctx, k, &window{key: key, m: m, rev: rev}); err != nil {
			return err
		}
		done++
	}
	return nil
}

// cut rewrites window w with its top values per field.
func (pt *partition) cut(ctx context.Context, k windowKey, w *window) error {
	topK := pt.s.cfg.DimsTopK
	st := pt.s.stores[k.res]
	es, err := st.ReadAll(ctx, w.key, w.m)
	if err != nil {
		return fmt.Errorf("read closed window %s: %w", w.key, err)
	}
	cut := cutEntries(es, topK)
	// Committing the cut entries onto an empty manifest with the window's
	// revision replaces the window in one atomic write.
	base := &counts.Manifest{Format: counts.Format, LastSeq: w.m.LastSeq, Generation: w.m.Generation,
		DeadLetters: w.m.DeadLetters, Late: w.m.Late, TopK: uint32(topK)}
	next, rev, _, err := st.Commit(ctx, w.key, base, w.rev, counts.Change{Entries: cut, LastSeq: w.m.LastSeq}).Wait(ctx)
	if err != nil {
		if errors.Is(err, counts.ErrConflict) {
			err = fmt.Errorf("%w: %w", ErrFenced, err)
		}
		return fmt.Errorf("cut closed window %s: %w", w.key, err)
	}
	if next.Totals != w.m.Totals {
		return fmt.Errorf("cut closed window %s: totals changed from %+v to %+v", w.key, w.m.Totals, next.Totals)
	}
	pt.s.m.dimsCut.Inc()
	pt.s.m.dimsCutValues.Add(float64(len(es) - len(cut)))
	w.m, w.rev = next, rev
	w.kept = newKeptSet(cut)
	return nil
}

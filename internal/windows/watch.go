package windows

import (
	"context"
	"errors"
	"sync"
	"time"
)

// MinWatchInterval is the shortest time between two answers of one Watch:
// bursts of window changes coalesce into one recomputation.
const MinWatchInterval = 250 * time.Millisecond

// watchSub is one Watch loop: the windows its current range reads and a
// one-slot signal that one of them changed.
type watchSub struct {
	mu    sync.Mutex
	segs  []segment
	dirty chan struct{}
}

func (w *watchSub) setSegments(segs []segment) {
	w.mu.Lock()
	w.segs = segs
	w.mu.Unlock()
}

func (w *watchSub) covers(res int, start int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, seg := range w.segs {
		if seg.res == res && start >= seg.from && start < seg.to {
			return true
		}
	}
	return false
}

func (w *watchSub) signal() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

// notify is called by a bucket's watch after a live change of a window.
func (r *Reader) notify(res int, start int64) {
	r.subsMu.RLock()
	defer r.subsMu.RUnlock()
	for w := range r.subs {
		if w.covers(res, start) {
			w.signal()
		}
	}
}

// notifyAll marks every loop dirty (after a watch replaced its index).
func (r *Reader) notifyAll() {
	r.subsMu.RLock()
	defer r.subsMu.RUnlock()
	for w := range r.subs {
		w.signal()
	}
}

// WatchSpec is the range a Watch follows.
type WatchSpec struct {
	Range RangeSpec
	// DefaultLast is the range when Range is empty.
	DefaultLast time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Watch sends compute's answer for the range at once and again whenever a
// window the range reads changes (as the counts watch reports it), at most
// every MinWatchInterval; a relative range is also recomputed when it
// slides to the next window. Identical answers (same) are not sent twice.
// It returns nil when ctx ends, send's error, or ErrUnavailable when the
// reader stops.
func Watch[T any](ctx context.Context, r *Reader, spec WatchSpec, compute func(context.Context, Range) (T, error), same func(a, b T) bool, send func(T) error) error {
	now := spec.Now
	if now == nil {
		now = time.Now
	}
	rg, err := spec.Range.Resolve(now(), r.finest, spec.DefaultLast)
	if err != nil {
		return err
	}
	if err := r.CheckRange(rg); err != nil {
		return err
	}
	if r.stopped.Load() || !r.started {
		return Unavailable("window reader is stopped", nil)
	}
	sub := &watchSub{dirty: make(chan struct{}, 1)}
	sub.setSegments(decompose(rg.From.Unix(), rg.To.Unix(), r.sizes))
	r.subsMu.Lock()
	r.subs[sub] = struct{}{}
	r.subsMu.Unlock()
	defer func() {
		r.subsMu.Lock()
		delete(r.subs, sub)
		r.subsMu.Unlock()
	}()

	var (
		last     T
		haveLast bool
		lastSent time.Time
	)
	relative := spec.Range.Relative()
	for {
		ans, err := compute(ctx, rg)
		switch {
		case err == nil:
			if !haveLast || !same(last, ans) {
				if err := send(ans); err != nil {
					return err
				}
				last, haveLast, lastSent = ans, true, time.Now()
			}
		case ctx.Err() != nil:
			return nil
		case r.ctx.Err() != nil:
			return Unavailable("window reader is stopping", nil)
		case errors.Is(err, ErrUnavailable):
			// Transient: try again shortly.
			r.log.Warn("watch: query failed; retrying", "error", err)
			time.AfterFunc(time.Second, sub.signal)
		default:
			return err
		}

		var slide <-chan time.Time
		var timer *time.Timer
		if relative {
			// The range slides once now passes its end.
			d := rg.To.Sub(now()) + time.Millisecond
			if d <= 0 {
				d = time.Second
			}
			timer = time.NewTimer(d)
			slide = timer.C
		}
		select {
		case <-ctx.Done():
			stopTimer(timer)
			return nil
		case <-r.ctx.Done():
			stopTimer(timer)
			return Unavailable("window reader is stopping", nil)
		case <-sub.dirty:
		case <-slide:
		}
		stopTimer(timer)
		// Coalesce: wait out the rest of the interval; further changes
		// meanwhile land in the one-slot signal and are covered by this
		// recomputation.
		if wait := MinWatchInterval - time.Since(lastSent); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-r.ctx.Done():
				return Unavailable("window reader is stopping", nil)
			case <-time.After(wait):
			}
		}
		select {
		case <-sub.dirty:
		default:
		}
		if relative {
			nr, err := spec.Range.Resolve(now(), r.finest, spec.DefaultLast)
			if err != nil {
				return err
			}
			if !nr.From.Equal(rg.From) || !nr.To.Equal(rg.To) {
				rg = nr
				sub.setSegments(decompose(rg.From.Unix(), rg.To.Unix(), r.sizes))
			}
		}
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

package query

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// MinWatchInterval is the shortest time between two updates of one WatchTop
// stream: bursts of window changes coalesce into one update.
const MinWatchInterval = 250 * time.Millisecond

// watchSub is one WatchTop stream: the windows its current range reads and a
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
func (s *Service) notify(res int, start int64) {
	s.subsMu.RLock()
	defer s.subsMu.RUnlock()
	for w := range s.subs {
		if w.covers(res, start) {
			w.signal()
		}
	}
}

// notifyAll marks every stream dirty (after a watch replaced its index).
func (s *Service) notifyAll() {
	s.subsMu.RLock()
	defer s.subsMu.RUnlock()
	for w := range s.subs {
		w.signal()
	}
}

// WatchTop sends the top n of the range to send at once and again whenever
// a window that the answer reads changes (as the counts watch reports it),
// at most every MinWatchInterval; a last range (or the default one) is also
// recomputed when it slides to the next window. Identical answers are not
// sent twice. It returns when ctx ends (nil), send fails, or the service
// stops (ErrUnavailable).
func (s *Service) WatchTop(ctx context.Context, spec RangeSpec, n int, send func(TopResult) error) error {
	r, err := spec.Resolve(s.now(), s.finest, s.cfg.DefaultLast)
	if err != nil {
		return err
	}
	if n < 1 || n > s.cfg.MaxN {
		return invalidf("n must be between 1 and %d, got %d", s.cfg.MaxN, n)
	}
	return watchLoop(ctx, s, spec, r, func(ctx context.Context, r Range) (TopResult, error) { return s.Top(ctx, r, n) }, sameTop, send)
}

// watchLoop is the push loop behind WatchTop and the SSE streams: it sends
// compute's answer at once and again whenever a window of the range changes
// (the counts watch signals it), at most every MinWatchInterval, re-resolving
// a relative range when it slides; identical answers are not sent twice.
func watchLoop[T any](ctx context.Context, s *Service, spec RangeSpec, r Range, compute func(context.Context, Range) (T, error), same func(a, b T) bool, send func(T) error) error {
	if err := s.checkRange(r); err != nil {
		return err
	}
	sub := &watchSub{dirty: make(chan struct{}, 1)}
	sub.setSegments(s.decompose(r))
	s.subsMu.Lock()
	s.subs[sub] = struct{}{}
	s.subsMu.Unlock()
	defer func() {
		s.subsMu.Lock()
		delete(s.subs, sub)
		s.subsMu.Unlock()
	}()

	var (
		last     T
		haveLast bool
		lastSent time.Time
	)
	relative := spec.Relative()
	for {
		ans, err := compute(ctx, r)
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
		case s.ctx.Err() != nil:
			return unavailable("query service is stopping", nil)
		case errors.Is(err, ErrUnavailable):
			// Transient: try again shortly.
			s.log.Warn("watch: query failed; retrying", "error", err)
			time.AfterFunc(time.Second, sub.signal)
		default:
			return err
		}

		var slide <-chan time.Time
		var timer *time.Timer
		if relative {
			// The range slides once now passes r.To.
			d := r.To.Sub(s.now()) + time.Millisecond
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
		case <-s.ctx.Done():
			stopTimer(timer)
			return unavailable("query service is stopping", nil)
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
			case <-s.ctx.Done():
				return unavailable("query service is stopping", nil)
			case <-time.After(wait):
			}
		}
		select {
		case <-sub.dirty:
		default:
		}
		if relative {
			nr, err := spec.Resolve(s.now(), s.finest, s.cfg.DefaultLast)
			if err != nil {
				return err
			}
			if !nr.From.Equal(r.From) || !nr.To.Equal(r.To) {
				r = nr
				sub.setSegments(s.decompose(r))
			}
		}
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

func sameTop(a, b TopResult) bool {
	return a.Range.From.Equal(b.Range.From) && a.Range.To.Equal(b.Range.To) && slices.Equal(a.Items, b.Items)
}

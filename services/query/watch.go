package query

import (
	"context"
	"slices"
	"time"

	"github.com/logtally/logtally/internal/windows"
)

// watchTop sends the top answer of the range at once and again whenever a
// window the answer reads changes (windows.Watch), identical answers once.
// It returns when ctx ends (nil), send fails, or the service stops
// (ErrUnavailable).
func (s *Service) watchTop(ctx context.Context, spec windows.RangeSpec, tq windows.TopQuery, send func(windows.TopResult) error) error {
	if tq.N < 1 || tq.N > s.cfg.MaxN {
		return windows.Invalidf("n must be between 1 and %d, got %d", s.cfg.MaxN, tq.N)
	}
	return windows.Watch(ctx, s.reader, s.watchSpec(spec), func(ctx context.Context, r windows.Range) (windows.TopResult, error) {
		return s.reader.Top(ctx, r, tq)
	}, sameTop, send)
}

// watchSpec is spec resolved with the service's clock and default range.
func (s *Service) watchSpec(spec windows.RangeSpec) windows.WatchSpec {
	return windows.WatchSpec{Range: spec, DefaultLast: s.cfg.DefaultLast, Now: func() time.Time { return s.now() }}
}

func sameTop(a, b windows.TopResult) bool {
	return a.Range.From.Equal(b.Range.From) && a.Range.To.Equal(b.Range.To) && a.Class == b.Class && slices.Equal(a.Items, b.Items)
}

package windows

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/counts"
)

// Watch sends at once, again after a change of a window in the range (and
// not for one outside it), identical answers once, and ends with
// ErrUnavailable when the reader stops.
func TestWatch(t *testing.T) {
	e := newEnv(t, envOpts{partitions: 2})
	var d data
	d.evs = append(d.evs, ev{ip: netip.MustParseAddr("192.0.2.1"), t: base.Add(5 * time.Minute), c: counts.Counters{Requests: 3}})
	e.write(d, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan TopResult, 10)
	done := make(chan error, 1)
	spec := WatchSpec{Range: RangeSpec{From: base, To: base.Add(time.Hour)}}
	go func() {
		done <- Watch(ctx, e.r, spec, func(ctx context.Context, rg Range) (TopResult, error) {
			return e.r.Top(ctx, rg, TopQuery{N: 2})
		}, func(a, b TopResult) bool { return slices.Equal(a.Items, b.Items) }, func(res TopResult) error {
			got <- res
			return nil
		})
	}()
	first := <-got
	if len(first.Items) != 1 || first.Items[0].Count != 3 {
		t.Fatalf("first %+v", first)
	}
	waitFor(t, "the subscription", func() bool { return e.r.Stats().Subscribers == 1 })
	// Outside the range: nothing. Inside: one answer.
	e.write(data{evs: []ev{{ip: netip.MustParseAddr("192.0.2.9"), t: base.Add(2 * time.Hour), c: counts.Counters{Requests: 50}}}}, 1)
	e.write(data{evs: []ev{{ip: netip.MustParseAddr("2001:db8::1"), t: base.Add(7 * time.Minute), c: counts.Counters{Requests: 9}}}}, 1)
	next := <-got
	if len(next.Items) != 2 || next.Items[0].IP != netip.MustParseAddr("2001:db8::1") {
		t.Fatalf("next %+v", next)
	}
	select {
	case extra := <-got:
		t.Fatalf("an answer for a change outside the range, or twice the same: %+v", extra)
	case <-time.After(600 * time.Millisecond):
	}
	if err := e.r.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after stop: %v", err)
	}
}

package windows

import (
	"context"
	"sync"
)

// flightGroup shares one fetch of a key among every caller that wants it
// at the same time. The fetch runs on its own context (the reader's, with
// the query timeout), not on the context of whoever asked first: a caller
// that gives up (its timeout, a client that disconnected) leaves, and the
// fetch is cancelled only when every caller has left. A caller that finds
// the fetch cancelled that way while its own context is fine fetches
// again itself.
type flightGroup struct {
	mu sync.Mutex
	m  map[cacheKey]*flight
}

type flight struct {
	done    chan struct{}
	v       sized
	err     error
	waiters int
	cancel  context.CancelFunc
	// left: every caller left before the fetch ended, and it was
	// cancelled; abandoned: it failed for that reason.
	left, abandoned bool
}

// do returns fetch's value for key, shared with concurrent callers.
func (g *flightGroup) do(ctx, base context.Context, key cacheKey, fetch func(context.Context) (sized, error)) (sized, error) {
	for {
		g.mu.Lock()
		f, ok := g.m[key]
		if ok {
			f.waiters++
		} else {
			fctx, cancel := context.WithCancel(base)
			f = &flight{done: make(chan struct{}), waiters: 1, cancel: cancel}
			g.m[key] = f
			go g.run(fctx, key, f, fetch)
		}
		g.mu.Unlock()
		select {
		case <-f.done:
			g.leave(f)
			if f.err != nil && f.abandoned && ctx.Err() == nil {
				continue // cancelled for others who left, not for us
			}
			return f.v, f.err
		case <-ctx.Done():
			g.leave(f)
			return nil, Unavailable("query timed out", ctx.Err())
		}
	}
}

func (g *flightGroup) run(ctx context.Context, key cacheKey, f *flight, fetch func(context.Context) (sized, error)) {
	v, err := fetch(ctx)
	g.mu.Lock()
	f.v, f.err = v, err
	f.abandoned = err != nil && f.left
	if g.m[key] == f {
		delete(g.m, key)
	}
	g.mu.Unlock()
	f.cancel()
	close(f.done)
}

// leave drops one caller; the last one to leave a fetch in progress
// cancels it.
func (g *flightGroup) leave(f *flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f.waiters--
	if f.waiters == 0 {
		select {
		case <-f.done:
		default:
			f.left = true
			f.cancel()
		}
	}
}

package detector

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// auditQueue writes decision events to the audit stream away from the
// decisions watch, in order, retrying each until it is written: the watch
// never waits for the stream, and no event is given up. It holds at most
// one event per decision seen, as the index holds the decisions.
type auditQueue struct {
	mu     sync.Mutex
	items  []func(context.Context) error
	signal chan struct{}
}

func newAuditQueue() *auditQueue { return &auditQueue{signal: make(chan struct{}, 1)} }

func (q *auditQueue) add(f func(context.Context) error) {
	q.mu.Lock()
	q.items = append(q.items, f)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *auditQueue) run(ctx context.Context, log hclog.Logger, failures prometheus.Counter) {
	for {
		q.mu.Lock()
		items := q.items
		q.items = nil
		q.mu.Unlock()
		for _, f := range items {
			for wait := 100 * time.Millisecond; ; wait = min(2*wait, 10*time.Second) {
				err := f(ctx)
				if err == nil || ctx.Err() != nil {
					break
				}
				failures.Inc()
				log.Warn("record decision event", "error", err, "retry_in", wait)
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-q.signal:
		}
	}
}

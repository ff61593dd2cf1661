package windows

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/topology"
)

// lostBatches follows the aggregators' checkpoints and sums the raw
// batches they found lost (Checkpoint.lost_batches), so that totals can
// show a gap that retention caused instead of hiding it.
type lostBatches struct {
	kv  jetstream.KeyValue
	log hclog.Logger

	mu  sync.Mutex
	per map[string]uint64 // checkpoint key → lost batches
}

func (l *lostBatches) total() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n uint64
	for _, v := range l.per {
		n += v
	}
	return n
}

func (l *lostBatches) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if err := l.watch(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("checkpoint watch failed; restarting", "error", err, "backoff", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (l *lostBatches) watch(ctx context.Context) error {
	w, err := l.kv.Watch(ctx, "cp.*")
	if err != nil {
		return err
	}
	defer StopWatch(w)
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errWatchClosed
			}
			if e == nil || !strings.HasPrefix(e.Key(), "cp.") {
				continue
			}
			var cp logtallyv1.Checkpoint
			if e.Operation() == jetstream.KeyValuePut && proto.Unmarshal(e.Value(), &cp) != nil {
				continue
			}
			l.mu.Lock()
			if l.per == nil {
				l.per = map[string]uint64{}
			}
			l.per[e.Key()] = cp.LostBatches
			l.mu.Unlock()
		}
	}
}

func openLostBatches(ctx context.Context, js jetstream.JetStream, log hclog.Logger) (*lostBatches, error) {
	kv, err := js.KeyValue(ctx, topology.StateBucket)
	if err != nil {
		return nil, err
	}
	return &lostBatches{kv: kv, log: log}, nil
}

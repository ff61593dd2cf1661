package windows

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/dims"
	"github.com/logtally/logtally/internal/topology"
)

// Names turns the keys of field values (internal/dims) back into their
// text: inline values decode from the key, hashed ones are read from the
// names bucket, with a bounded cache of the texts read.
type Names struct {
	kv  jetstream.KeyValue
	log hclog.Logger

	mu   sync.Mutex
	text map[[counts.AddrLen]byte]string
}

// maxNames bounds the cached texts of hashed values.
const maxNames = 1 << 16

// OpenNames opens the names bucket.
func OpenNames(ctx context.Context, js jetstream.JetStream, log hclog.Logger) (*Names, error) {
	kv, err := js.KeyValue(ctx, topology.NamesBucket)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", topology.NamesBucket, err)
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Names{kv: kv, log: log, text: map[[counts.AddrLen]byte]string{}}, nil
}

// Text returns the text of key k. Known is false for a hashed value whose
// text is not (or no longer) in the names bucket: the text is then "#"
// and the hex of its key.
func (n *Names) Text(ctx context.Context, k [counts.AddrLen]byte) (text string, known bool) {
	_, text, hashed := dims.Decode(k)
	if !hashed {
		return text, true
	}
	n.mu.Lock()
	t, ok := n.text[k]
	n.mu.Unlock()
	if ok {
		return t, true
	}
	e, err := n.kv.Get(ctx, dims.NameKey(k))
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			n.log.Warn("read name of a hashed value", "key", dims.NameKey(k), "error", err)
		}
		return "#" + dims.NameKey(k), false
	}
	t = string(e.Value())
	n.mu.Lock()
	if len(n.text) >= maxNames {
		clear(n.text)
	}
	n.text[k] = t
	n.mu.Unlock()
	return t, true
}

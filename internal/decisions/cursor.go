package decisions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// cursorKey is the KV key of a bouncer's cursor: a hash of its API key, so
// the bucket never holds the key itself.
func cursorKey(bouncer string) string {
	h := sha256.Sum256([]byte(bouncer))
	return "c." + hex.EncodeToString(h[:16])
}

// Cursor returns the revision a bouncer's last poll was answered at, by
// whichever process answered it; ok is false for a bouncer never seen.
// There is one cursor per configured bouncer key, a few bytes each.
func (s *Store) Cursor(ctx context.Context, bouncer string) (rev uint64, ok bool, err error) {
	e, err := s.kv.Get(ctx, cursorKey(bouncer))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read bouncer cursor: %w", err)
	}
	rev, err = strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("bouncer cursor %q: %w", e.Value(), err)
	}
	return rev, true, nil
}

// SetCursor records that a bouncer's poll was answered at rev.
func (s *Store) SetCursor(ctx context.Context, bouncer string, rev uint64) error {
	if _, err := s.kv.Put(ctx, cursorKey(bouncer), []byte(strconv.FormatUint(rev, 10))); err != nil {
		return fmt.Errorf("write bouncer cursor: %w", err)
	}
	return nil
}

// WaitRev waits until the index has applied revision rev (written by
// another process's answer), at most until ctx ends; it reports whether it
// has.
func (s *Store) WaitRev(ctx context.Context, rev uint64) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.Rev() < rev {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

package decisions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/topology"
)

// Store reads and writes decisions. Its index (Watch) follows the bucket,
// so every process that serves decisions sees the same set.
type Store struct {
	js jetstream.JetStream
	kv jetstream.KeyValue

	mu      sync.RWMutex
	active  map[string]*Decision // KV key → decision
	byID    map[uint64]string
	deleted []Deletion // in revision order, the newest maxDeletions
	rev     uint64     // newest revision applied
	base    uint64     // rev at the end of the initial replay: deletions before it are not known
	ready   chan struct{}
	changed chan struct{}

	subs        map[*Subscription]struct{}
	stopped     bool
	slowDropped uint64
}

// Deletion is a decision that left: deleted by hand or expired.
type Deletion struct {
	Rev      uint64    // revision of the delete or expiry marker
	At       time.Time // when the bucket recorded it
	Decision Decision
	Expired  bool
}

// Event is one entry of the audit stream.
type Event struct {
	Event    string    `json:"event"` // new, deleted, expired
	At       time.Time `json:"at"`
	By       string    `json:"by,omitempty"`
	Decision Decision  `json:"decision"`
}

// maxDeletions bounds the deletions kept for bouncers that poll for
// changes; a bouncer further behind than that starts over (startup).
const maxDeletions = 100_000

// Open binds the decisions bucket, which topology.Ensure created.
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	kv, err := js.KeyValue(ctx, topology.DecisionsBucket)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", topology.DecisionsBucket, err)
	}
	return &Store{js: js, kv: kv, active: map[string]*Decision{}, byID: map[uint64]string{}, ready: make(chan struct{}), changed: make(chan struct{}, 1), subs: map[*Subscription]struct{}{}}, nil
}

// Create stores d as the active decision of (d.Rule, key) for ttl, unless
// one is active already: then it returns ErrActive. The creating revision
// becomes the decision's ID; the audit stream gets a "new" event.
func (s *Store) Create(ctx context.Context, d Decision, ttl time.Duration) (Decision, error) {
	p, err := netip.ParsePrefix(d.Key)
	if err != nil {
		return Decision{}, fmt.Errorf("decision key %q: %w", d.Key, err)
	}
	d.ID = 0
	data, err := json.Marshal(d)
	if err != nil {
		return Decision{}, fmt.Errorf("encode decision: %w", err)
	}
	rev, err := s.kv.Create(ctx, kvKey(d.Rule, p), data, jetstream.KeyTTL(ttl))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return Decision{}, ErrActive
	}
	if err != nil {
		return Decision{}, fmt.Errorf("create decision %s for %s: %w", d.Rule, d.Key, err)
	}
	d.ID = rev
	return d, s.RecordNew(ctx, d)
}

// Delete removes the active decision id. ErrNotFound when no active
// decision has that id.
func (s *Store) Delete(ctx context.Context, id uint64, by string) (Decision, error) {
	s.mu.RLock()
	key, ok := s.byID[id]
	var d Decision
	if ok {
		d = *s.active[key]
	}
	s.mu.RUnlock()
	if !ok {
		return Decision{}, ErrNotFound
	}
	if err := s.kv.Delete(ctx, key, jetstream.LastRevision(id)); err != nil {
		if isWrongLastSeq(err) {
			return Decision{}, ErrNotFound // replaced or expired meanwhile
		}
		return Decision{}, fmt.Errorf("delete decision %d: %w", id, err)
	}
	err := s.audit(ctx, "deleted-"+strconv.FormatUint(id, 10), Event{Event: "deleted", At: time.Now().UTC(), By: by, Decision: d})
	return d, err
}

func (s *Store) audit(ctx context.Context, id string, ev Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode decision event: %w", err)
	}
	// One subject per event of a decision, which must be empty: the event
	// is recorded once whoever writes it and however late (a restarted
	// detector recording what its predecessor could not), not only within
	// the stream's duplicate window.
	subject := topology.DecisionsHistoryPrefix + ev.Event + "." + ev.Decision.Rule + "." + strconv.FormatUint(ev.Decision.ID, 10)
	_, err = s.js.Publish(ctx, subject, data, jetstream.WithMsgID(id), jetstream.WithExpectLastSequencePerSubject(0))
	if err != nil && !isWrongLastSeq(err) {
		return fmt.Errorf("record decision event %s: %w", id, err)
	}
	return nil
}

// RecordNew writes a decision to the audit stream (once, whoever calls):
// the detector that made it does, and every detector's watch does again
// for the decisions it sees, so that a crash between the decision and its
// record loses neither.
func (s *Store) RecordNew(ctx context.Context, d Decision) error {
	return s.audit(ctx, "new-"+strconv.FormatUint(d.ID, 10), Event{Event: "new", At: d.Created, By: d.By, Decision: d})
}

// Offences returns how many offences of (rule, key) happened within
// lookback before now.
func (s *Store) Offences(ctx context.Context, rule string, key netip.Prefix, now time.Time, lookback time.Duration) (int, error) {
	times, _, err := s.offences(ctx, rule, key)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range times {
		if now.Sub(t) < lookback {
			n++
		}
	}
	return n, nil
}

func (s *Store) offences(ctx context.Context, rule string, key netip.Prefix) ([]time.Time, uint64, error) {
	e, err := s.kv.Get(ctx, offenceKey(rule, key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read offences of %s %s: %w", rule, key, err)
	}
	var times []time.Time
	if err := json.Unmarshal(e.Value(), &times); err != nil {
		return nil, 0, fmt.Errorf("decode offences of %s %s: %w", rule, key, err)
	}
	return times, e.Revision(), nil
}

// RecordOffence adds an offence at now, keeping those within lookback.
func (s *Store) RecordOffence(ctx context.Context, rule string, key netip.Prefix, now time.Time, lookback time.Duration) error {
	for range 5 {
		times, rev, err := s.offences(ctx, rule, key)
		if err != nil {
			return err
		}
		times = slices.DeleteFunc(times, func(t time.Time) bool { return now.Sub(t) >= lookback })
		times = append(times, now)
		data, _ := json.Marshal(times)
		if rev == 0 {
			_, err = s.kv.Create(ctx, offenceKey(rule, key), data, jetstream.KeyTTL(lookback))
		} else {
			_, err = s.kv.Update(ctx, offenceKey(rule, key), data, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongLastSeq(err) {
			return fmt.Errorf("record offence of %s %s: %w", rule, key, err)
		}
	}
	return fmt.Errorf("record offence of %s %s: %w", rule, key, ErrContended)
}

// Watch keeps the index of active decisions and recent deletions current
// until ctx ends, and tells the subscribers (Subscribe) of every change.
// onExpired, when set, is called for each expiry seen (after the initial
// state), onNew for each decision seen (also in the initial state), e.g.
// to write them to the audit stream. Both are called from the watch: they
// must not block for long.
func (s *Store) Watch(ctx context.Context, onExpired func(Deletion), onNew func(Decision)) error {
	w, err := s.kv.Watch(ctx, "d.>", jetstream.IncludeHistory())
	if err != nil {
		return fmt.Errorf("watch bucket %s: %w", topology.DecisionsBucket, err)
	}
	go func() {
		defer s.stop()
		defer w.Stop()
		initial := true
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					if initial {
						initial = false
						s.mu.Lock()
						s.base = s.rev
						s.mu.Unlock()
						close(s.ready)
					}
					continue
				}
				del, deleted, added := s.apply(e)
				if deleted && !initial && del.Expired && onExpired != nil {
					onExpired(del)
				}
				if added != nil && onNew != nil {
					onNew(*added)
				}
				select {
				case s.changed <- struct{}{}:
				default:
				}
			}
		}
	}()
	return nil
}

// Changed receives after the index changed (one receiver; coalesced).
func (s *Store) Changed() <-chan struct{} { return s.changed }

// Ready is closed once the index holds the bucket's state at Watch.
func (s *Store) Ready() <-chan struct{} { return s.ready }

// apply updates the index with e: the deletion it was, or the decision it
// added.
func (s *Store) apply(e jetstream.KeyValueEntry) (Deletion, bool, *Decision) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev = max(s.rev, e.Revision())
	old := s.active[e.Key()]
	if e.Operation() == jetstream.KeyValuePut {
		var d Decision
		if err := json.Unmarshal(e.Value(), &d); err != nil {
			return Deletion{}, false, nil
		}
		d.ID = e.Revision()
		if old != nil && old.ID == d.ID {
			return Deletion{}, false, nil // seen already
		}
		var del Deletion
		if old != nil {
			// Replaced without a marker seen (a create succeeds only
			// once the key has none live): the old one left all the same.
			del = s.remove(e, old)
		}
		s.active[e.Key()] = &d
		s.byID[d.ID] = e.Key()
		s.publish(Change{Op: OpNew, Rev: d.ID, At: e.Created(), Decision: d})
		return del, old != nil, &d
	}
	if old == nil {
		return Deletion{}, false, nil
	}
	return s.remove(e, old), true, nil
}

// remove takes old, the decision of e's key, out of the index because of
// e: a delete by hand is a DEL; an expiry is the server's marker (a purge
// with a reason), also when it reports it as DEL. s.mu is held.
func (s *Store) remove(e jetstream.KeyValueEntry, old *Decision) Deletion {
	delete(s.active, e.Key())
	delete(s.byID, old.ID)
	del := Deletion{Rev: e.Revision(), At: e.Created(), Decision: *old, Expired: e.Operation() == jetstream.KeyValuePurge || !old.Until.After(time.Now())}
	s.deleted = append(s.deleted, del)
	if len(s.deleted) > maxDeletions {
		s.deleted = slices.Delete(s.deleted, 0, len(s.deleted)-maxDeletions)
	}
	s.publish(del.change())
	return del
}

// Active returns the active decisions, newest first; with simulated
// false, those of simulate mode are left out.
func (s *Store) Active(simulated bool) []Decision {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Decision, 0, len(s.active))
	now := time.Now()
	for _, d := range s.active {
		if (simulated || !d.Simulated) && d.Until.After(now) {
			out = append(out, *d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out
}

// Since returns what changed after revision rev for a bouncer: decisions
// created after it that are still active, and decisions it may have been
// served (created at or before rev) that left after it; and the revision
// the answer is current to. ok is false when rev is older than the
// deletions kept: the caller then serves a startup answer.
func (s *Store) Since(rev uint64) (added, deleted []Decision, cur uint64, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.deleted) == maxDeletions && s.deleted[0].Rev > rev {
		return nil, nil, s.rev, false
	}
	now := time.Now()
	for _, d := range s.active {
		if d.ID > rev && !d.Simulated && d.Until.After(now) {
			added = append(added, *d)
		}
	}
	i := sort.Search(len(s.deleted), func(i int) bool { return s.deleted[i].Rev > rev })
	for _, del := range s.deleted[i:] {
		if del.Decision.ID <= rev && !del.Decision.Simulated {
			deleted = append(deleted, del.Decision)
		}
	}
	sort.Slice(added, func(i, j int) bool { return added[i].ID < added[j].ID })
	return added, deleted, s.rev, true
}

// Rev is the newest revision the index applied.
func (s *Store) Rev() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// Lookup returns the active, served decisions covering addr.
func (s *Store) Lookup(addr netip.Addr) []Decision {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Decision
	now := time.Now()
	for _, d := range s.active {
		if !d.Simulated && d.Until.After(now) && d.Prefix().Contains(addr.Unmap()) {
			out = append(out, *d)
		}
	}
	return out
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// RecordExpiry writes an expiry to the audit stream (once, whoever calls).
func (s *Store) RecordExpiry(ctx context.Context, del Deletion) error {
	return s.audit(ctx, "expired-"+strconv.FormatUint(del.Decision.ID, 10), Event{Event: "expired", At: time.Now().UTC(), Decision: del.Decision})
}

// HasActive reports whether (rule, key) has an active decision in the index.
func (s *Store) HasActive(rule string, key netip.Prefix) bool {
	_, ok := s.ActiveFor(rule, key)
	return ok
}

// ActiveFor returns the active decision of (rule, key) in the index.
func (s *Store) ActiveFor(rule string, key netip.Prefix) (Decision, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d := s.active[kvKey(rule, key)]
	if d == nil || !d.Until.After(time.Now()) {
		return Decision{}, false
	}
	return *d, true
}

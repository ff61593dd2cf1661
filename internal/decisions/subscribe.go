package decisions

import (
	"cmp"
	"errors"
	"slices"
	"sort"
	"sync"
	"time"
)

// Op is what happened to a decision.
type Op uint8

const (
	// OpNew is a decision made.
	OpNew Op = iota + 1
	// OpDeleted is a decision removed by hand.
	OpDeleted
	// OpExpired is a decision whose ban ended.
	OpExpired
)

func (o Op) String() string {
	switch o {
	case OpNew:
		return "new"
	case OpDeleted:
		return "deleted"
	case OpExpired:
		return "expired"
	}
	return "unknown"
}

// Change is one change of the index, as a subscriber receives it.
type Change struct {
	Op Op
	// Rev is the revision of the change: the decision's ID for OpNew, the
	// revision of the delete or expiry marker otherwise.
	Rev uint64
	// At is when the bucket recorded the change (for a catch-up OpNew, the
	// decision's Created).
	At       time.Time
	Decision Decision
}

var (
	// ErrSlow ends a subscription whose receiver fell further behind than
	// its buffer: the index never waits for a subscriber.
	ErrSlow = errors.New("subscriber fell behind the decisions index by more than its buffer")
	// ErrStopped ends the subscriptions when the index stops.
	ErrStopped = errors.New("decisions index stopped")
	// ErrRevisionTooOld means SubscribeSince cannot tell what changed since
	// the revision: it is older than this process's index (which began
	// later, or kept fewer deletions).
	ErrRevisionTooOld = errors.New("revision is older than this index can resume from")
)

// Subscription receives every change of the index after the state it was
// taken with, in revision order, until Close, until the index stops
// (ErrStopped) or until it falls more than its buffer behind (ErrSlow).
type Subscription struct {
	s    *Store
	ch   chan Change
	done chan struct{}
	once sync.Once
	err  error // set before done is closed
}

// Changes delivers the changes. It is never closed: select on Done too.
func (sub *Subscription) Changes() <-chan Change { return sub.ch }

// Done is closed when the subscription ends; Err tells why.
func (sub *Subscription) Done() <-chan struct{} { return sub.done }

// Err is why the subscription ended (nil before Done is closed, and after
// Close).
func (sub *Subscription) Err() error {
	select {
	case <-sub.done:
		return sub.err
	default:
		return nil
	}
}

// Close ends the subscription; it is safe to call more than once.
func (sub *Subscription) Close() {
	sub.s.mu.Lock()
	defer sub.s.mu.Unlock()
	sub.end(nil)
}

// end removes the subscription with err; s.mu is held.
func (sub *Subscription) end(err error) {
	sub.once.Do(func() {
		delete(sub.s.subs, sub)
		sub.err = err
		close(sub.done)
	})
}

// subscribe registers a subscription; s.mu is held.
func (s *Store) subscribe(buffer int) *Subscription {
	sub := &Subscription{s: s, ch: make(chan Change, max(buffer, 1)), done: make(chan struct{})}
	if s.stopped {
		sub.end(ErrStopped)
		return sub
	}
	s.subs[sub] = struct{}{}
	return sub
}

// Subscribe returns every decision in the index (the simulated ones too;
// one whose ban just ended may still be there, its expiry follows), newest
// first, the revision they are current to, and a subscription to every
// change after that revision: taken at one instant, so that a change is
// either in the state or delivered, never both and never neither. The
// subscription holds at most buffer undelivered changes. Call it after
// Ready.
func (s *Store) Subscribe(buffer int) ([]Decision, uint64, *Subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Decision, 0, len(s.active))
	for _, d := range s.active {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out, s.rev, s.subscribe(buffer)
}

// SubscribeSince is Subscribe for a subscriber that already knows the
// index up to revision rev: instead of the state it returns what changed
// after rev, in revision order — the decisions made since that are still
// in the index, and the decisions made up to rev that left since —, then
// the revision that is current to. Decisions made and gone after rev are
// left out. ErrRevisionTooOld when rev is older than the index began
// (history before it is not kept) or than the deletions it keeps. A rev
// newer than the index means it is behind the caller: the changes up to
// rev will still be delivered, and the caller skips them.
func (s *Store) SubscribeSince(rev uint64, buffer int) ([]Change, uint64, *Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev < s.base || (len(s.deleted) == maxDeletions && s.deleted[0].Rev > rev) {
		return nil, 0, nil, ErrRevisionTooOld
	}
	var out []Change
	for _, d := range s.active {
		if d.ID > rev {
			out = append(out, Change{Op: OpNew, Rev: d.ID, At: d.Created, Decision: *d})
		}
	}
	i := sort.Search(len(s.deleted), func(i int) bool { return s.deleted[i].Rev > rev })
	for _, del := range s.deleted[i:] {
		if del.Decision.ID <= rev {
			out = append(out, del.change())
		}
	}
	slices.SortFunc(out, compareChanges)
	return out, max(s.rev, rev), s.subscribe(buffer), nil
}

// compareChanges orders by revision; at the same revision (a decision that
// replaced another) the one that left comes first, as apply publishes them.
func compareChanges(a, b Change) int {
	switch {
	case a.Rev != b.Rev:
		return cmp.Compare(a.Rev, b.Rev)
	case a.Op == b.Op:
		return 0
	case a.Op == OpNew:
		return 1
	}
	return -1
}

func (del Deletion) change() Change {
	op := OpDeleted
	if del.Expired {
		op = OpExpired
	}
	return Change{Op: op, Rev: del.Rev, At: del.At, Decision: del.Decision}
}

// publish hands c to every subscriber without waiting: one whose buffer
// is full is ended with ErrSlow. s.mu is held.
func (s *Store) publish(c Change) {
	for sub := range s.subs {
		select {
		case sub.ch <- c:
		default:
			s.slowDropped++
			sub.end(ErrSlow)
		}
	}
}

// stop ends every subscription with ErrStopped, when the index stops.
func (s *Store) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for sub := range s.subs {
		sub.end(ErrStopped)
	}
}

// Subscribers is the number of open subscriptions.
func (s *Store) Subscribers() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.subs)
}

// SlowDropped counts the subscriptions ended with ErrSlow.
func (s *Store) SlowDropped() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.slowDropped
}

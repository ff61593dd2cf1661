package decisions_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/decisions"
	"github.com/logtally/logtally/internal/natstest"
	"github.com/logtally/logtally/internal/topology"
)

// bucket is a JetStream server with the decisions bucket.
func bucket(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv := natstest.RunBasicJetStreamServer(t)
	_, js := natstest.Connect(t, srv)
	if _, err := topology.Ensure(context.Background(), js, topology.Defaults()); err != nil {
		t.Fatal(err)
	}
	return js
}

// open opens a store and its index; the index stops when the test ends
// or cancel is called.
func open(t *testing.T, js jetstream.JetStream) (*decisions.Store, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := decisions.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Watch(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-st.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("index not ready")
	}
	return st, cancel
}

func ban(t *testing.T, st *decisions.Store, key string, ttl time.Duration) decisions.Decision {
	t.Helper()
	now := time.Now().UTC()
	d, err := st.Create(context.Background(), decisions.Decision{Rule: decisions.ManualRule, Key: key, Origin: "manual", By: "test", Created: now, Until: now.Add(ttl)}, ttl)
	if err != nil {
		t.Fatalf("ban %s: %v", key, err)
	}
	return d
}

// next receives the next change, failing after timeout.
func next(t *testing.T, sub *decisions.Subscription, timeout time.Duration) decisions.Change {
	t.Helper()
	select {
	case c := <-sub.Changes():
		return c
	case <-sub.Done():
		t.Fatalf("subscription ended: %v", sub.Err())
	case <-time.After(timeout):
		t.Fatal("no change within", timeout)
	}
	return decisions.Change{}
}

func quiet(t *testing.T, sub *decisions.Subscription, d time.Duration) {
	t.Helper()
	select {
	case c := <-sub.Changes():
		t.Fatalf("unexpected change %s %d (rev %d)", c.Op, c.Decision.ID, c.Rev)
	case <-time.After(d):
	}
}

// The state comes with the subscription; then a ban, an unban and an
// expiry arrive in revision order, once each.
func TestSubscribeStateThenChanges(t *testing.T) {
	js := bucket(t)
	st, _ := open(t, js)
	a := ban(t, st, "203.0.113.1/32", time.Hour)
	waitRev(t, st, a.ID)

	state, rev, sub := st.Subscribe(16)
	defer sub.Close()
	if len(state) != 1 || state[0].ID != a.ID || rev != a.ID {
		t.Fatalf("state %+v at %d, want decision %d at %d", state, rev, a.ID, a.ID)
	}
	b := ban(t, st, "203.0.113.2/32", time.Hour)
	if _, err := st.Delete(context.Background(), a.ID, "test"); err != nil {
		t.Fatal(err)
	}
	c := ban(t, st, "2001:db8::/64", time.Second)

	want := []struct {
		op decisions.Op
		id uint64
	}{{decisions.OpNew, b.ID}, {decisions.OpDeleted, a.ID}, {decisions.OpNew, c.ID}, {decisions.OpExpired, c.ID}}
	last := rev
	for _, w := range want {
		got := next(t, sub, 15*time.Second)
		if got.Op != w.op || got.Decision.ID != w.id || got.Rev <= last || got.At.IsZero() {
			t.Fatalf("got %s %d rev %d at %v, want %s %d after rev %d", got.Op, got.Decision.ID, got.Rev, got.At, w.op, w.id, last)
		}
		last = got.Rev
	}
	quiet(t, sub, 300*time.Millisecond)
	if n := st.Subscribers(); n != 1 {
		t.Fatalf("subscribers %d, want 1", n)
	}
	sub.Close()
	sub.Close()
	if n := st.Subscribers(); n != 0 || sub.Err() != nil {
		t.Fatalf("after close: subscribers %d, err %v", n, sub.Err())
	}
}

// Decisions made while subscribers subscribe are each either in the
// state or delivered, never both and never neither.
func TestSubscribeRacesWriters(t *testing.T) {
	js := bucket(t)
	st, _ := open(t, js)
	const n = 200
	ids := make(chan uint64, n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ids)
		for i := range n {
			now := time.Now().UTC()
			d, err := st.Create(context.Background(), decisions.Decision{Rule: decisions.ManualRule, Key: fmt.Sprintf("198.51.100.%d/32", i), Created: now, Until: now.Add(time.Hour)}, time.Hour)
			if err != nil {
				t.Errorf("ban: %v", err)
				return
			}
			ids <- d.ID
		}
	}()
	type view struct {
		state []decisions.Decision
		sub   *decisions.Subscription
	}
	var views []view
	for range 20 {
		state, _, sub := st.Subscribe(n)
		defer sub.Close()
		views = append(views, view{state, sub})
		time.Sleep(15 * time.Millisecond)
	}
	var all []uint64
	for id := range ids {
		all = append(all, id)
	}
	wg.Wait()
	if len(all) != n {
		t.FailNow()
	}
	for i, v := range views {
		seen := map[uint64]int{}
		for _, d := range v.state {
			seen[d.ID]++
		}
		for len(seen) < n {
			c := next(t, v.sub, 10*time.Second)
			if c.Op != decisions.OpNew {
				t.Fatalf("view %d: %s %d", i, c.Op, c.Decision.ID)
			}
			seen[c.Decision.ID]++
		}
		for _, id := range all {
			if seen[id] != 1 {
				t.Fatalf("view %d (state of %d): decision %d seen %d times", i, len(v.state), id, seen[id])
			}
		}
		quiet(t, v.sub, 10*time.Millisecond)
	}
}

// A subscriber that does not receive is dropped when its buffer is full;
// the index and the other subscribers go on.
func TestSubscribeSlowIsDropped(t *testing.T) {
	js := bucket(t)
	st, _ := open(t, js)
	_, _, slow := st.Subscribe(2)
	defer slow.Close()
	_, _, fast := st.Subscribe(16)
	defer fast.Close()
	for i := range 5 {
		d := ban(t, st, fmt.Sprintf("192.0.2.%d/32", i), time.Hour)
		if c := next(t, fast, 5*time.Second); c.Decision.ID != d.ID {
			t.Fatalf("fast subscriber got %d, want %d", c.Decision.ID, d.ID)
		}
	}
	select {
	case <-slow.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("slow subscriber not dropped")
	}
	if !errors.Is(slow.Err(), decisions.ErrSlow) || st.SlowDropped() != 1 || st.Subscribers() != 1 {
		t.Fatalf("err %v, dropped %d, subscribers %d", slow.Err(), st.SlowDropped(), st.Subscribers())
	}
}

// SubscribeSince answers what changed after a revision, compacted, and
// refuses a revision from before the index began.
func TestSubscribeSince(t *testing.T) {
	js := bucket(t)
	st, _ := open(t, js)
	a := ban(t, st, "203.0.113.1/32", time.Hour)
	b := ban(t, st, "203.0.113.2/32", time.Hour)
	waitRev(t, st, b.ID)
	cursor := st.Rev()

	c := ban(t, st, "203.0.113.3/32", time.Hour)
	if _, err := st.Delete(context.Background(), a.ID, "test"); err != nil {
		t.Fatal(err)
	}
	gone := ban(t, st, "203.0.113.4/32", time.Hour)
	waitRev(t, st, gone.ID)
	if _, err := st.Delete(context.Background(), gone.ID, "test"); err != nil {
		t.Fatal(err)
	}
	d := ban(t, st, "203.0.113.5/32", time.Hour)
	waitRev(t, st, d.ID)

	changes, cur, sub, err := st.SubscribeSince(cursor, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var got []string
	for _, ch := range changes {
		got = append(got, fmt.Sprintf("%s %d", ch.Op, ch.Decision.ID))
	}
	want := []string{fmt.Sprintf("new %d", c.ID), fmt.Sprintf("deleted %d", a.ID), fmt.Sprintf("new %d", d.ID)}
	if fmt.Sprint(got) != fmt.Sprint(want) || cur != st.Rev() {
		t.Fatalf("since %d: %v current to %d, want %v current to %d", cursor, got, cur, want, st.Rev())
	}
	e := ban(t, st, "203.0.113.6/32", time.Hour)
	if ch := next(t, sub, 5*time.Second); ch.Op != decisions.OpNew || ch.Decision.ID != e.ID {
		t.Fatalf("live: %s %d, want new %d", ch.Op, ch.Decision.ID, e.ID)
	}

	// A process started now does not know the deletions before it.
	st2, _ := open(t, js)
	if _, _, _, err := st2.SubscribeSince(cursor, 16); !errors.Is(err, decisions.ErrRevisionTooOld) {
		t.Fatalf("fresh index since %d: %v, want ErrRevisionTooOld", cursor, err)
	}
	if _, _, sub2, err := st2.SubscribeSince(st2.Rev(), 16); err != nil {
		t.Fatalf("fresh index since its own revision: %v", err)
	} else {
		sub2.Close()
	}
}

// Stopping the index ends the subscriptions, and later ones at once.
func TestSubscribeStopped(t *testing.T) {
	js := bucket(t)
	st, stop := open(t, js)
	_, _, sub := st.Subscribe(4)
	stop()
	select {
	case <-sub.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("subscription not ended by stop")
	}
	if !errors.Is(sub.Err(), decisions.ErrStopped) {
		t.Fatalf("err %v, want ErrStopped", sub.Err())
	}
	_, _, late := st.Subscribe(4)
	select {
	case <-late.Done():
	default:
		t.Fatal("subscription after stop not ended")
	}
}

func waitRev(t *testing.T, st *decisions.Store, rev uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for st.Rev() < rev {
		if time.Now().After(deadline) {
			t.Fatalf("index at %d, want %d", st.Rev(), rev)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

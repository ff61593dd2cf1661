package aggregator

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/natstest"
)

// TestConcurrentOwnersStayExact gives two instances the same identity, so
// both believe they own every partition and run side by side. Only the
// compare-and-swap fencing of the state keeps the counts exact.
func TestConcurrentOwnersStayExact(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	topo := testTopology()
	js := setup(t, srv, topo)
	rng := rand.New(rand.NewPCG(7, 8))
	events := genEvents(rng, 40000, time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC), 30*time.Minute, 3000)
	ref := reference{}
	for _, e := range events {
		ref.add(topo.Resolutions, e)
	}
	pub := &publisher{js: js, n: topo.Partitions}
	startInstance(t, srv.ClientURL(), "twin", topo)
	pub.publish(t, events[:10000], 1)
	startInstance(t, srv.ClientURL(), "twin", topo)
	pub.publish(t, events[10000:25000], 1)
	third := startInstance(t, srv.ClientURL(), "twin", topo)
	pub.publish(t, events[25000:], 1)
	third.kill()
	waitExact(t, js, topo.Resolutions, ref, pub.dead)
}

package e2e

import (
	"testing"
	"time"

	"github.com/logtally/logtally/internal/natstest"
)

// TestPipelineOnCluster runs each stage as its own instance against a 3-node
// JetStream cluster with every stream and bucket at R3.
func TestPipelineOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster run")
	}
	c := natstest.RunJetStreamCluster(t)
	url := "-nats.url=" + c.URLs()
	w := newWorkload(t, 60000, 5)
	front := startApp(t, "front", newConfig(t, url, "-nats.replicas=3", "-target=ingest,query"))
	startApp(t, "parser", newConfig(t, url, "-nats.replicas=3", "-target=parser"))
	startApp(t, "agg1", newConfig(t, url, "-nats.replicas=3", "-target=aggregator"))
	startApp(t, "agg2", newConfig(t, url, "-nats.replicas=3", "-target=aggregator"))
	cl := newClient(t, front)
	w.send(t, front)
	cl.waitTotals(t, w.from, w.to, w.ref.total, uint64(len(w.malformed)), 3*time.Minute)
	verify(t, cl, w.ref, w.from, w.to, uint64(len(w.malformed)))
}

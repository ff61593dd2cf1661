package topology

import (
	"context"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/natstest"
)

// What Ensure created is not seen as drifted by the next process: the
// server reports unset limits as -1 where a config says 0, and a false
// drift made every stage of a fresh cluster propose an update of every
// stream, which the meta leader serialises (cold starts of 20-30 s).
func TestNoDriftAfterEnsure(t *testing.T) {
	c := natstest.RunJetStreamCluster(t)
	_, js := natstest.Connect(t, c.Servers[0])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := Defaults()
	cfg.Replicas = 3
	if _, err := Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	for _, want := range append(cfg.Streams(32), cfg.Buckets()...) {
		st, err := js.Stream(ctx, want.Name)
		if err != nil {
			t.Fatal(err)
		}
		have := st.CachedInfo().Config
		if drifted(have, want) {
			t.Errorf("%s drifted:\nhave %+v\nwant %+v", want.Name, have, want)
		}
	}
}

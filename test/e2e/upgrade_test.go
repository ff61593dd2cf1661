package e2e

import (
	"context"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/loggen"
	"github.com/logtally/logtally/internal/natstest"
	"github.com/logtally/logtally/internal/topology"
)

// TestUpgradeFromFormat1State starts the current release on state the
// previous one wrote — format 1 windows (one flat value of request counts
// per window and partition) and checkpoints without raw tracking — and
// checks that every old count is answered, and that new lines add to it
// exactly, through the query API.
func TestUpgradeFromFormat1State(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	_, js := natstest.Connect(t, srv)
	ctx := context.Background()
	topo := topology.Defaults()
	if _, err := topology.Ensure(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	hour := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	from, to := hour.Add(-10*time.Minute), hour.Add(14*time.Minute)
	g := loggen.New(11, 3000, from, to.Sub(from))
	ref := newReference()

	// What the previous release stored for 20k lines.
	old := map[string]map[string]map[[counts.AddrLen]byte]uint64{} // bucket → key → requests
	for i := 0; i < 20000; i++ {
		l := g.Combined(i, 20000)
		l.Counters = counts.Counters{Requests: 1} // format 1 knew requests only
		ref.add(l)
		a := counts.Pack(l.Addr)
		p := counts.Partition(a, topo.Partitions)
		for _, r := range topo.Resolutions {
			start := l.Time.Truncate(r.Size)
			key := counts.Key(start, p)
			if old[r.Bucket()] == nil {
				old[r.Bucket()] = map[string]map[[counts.AddrLen]byte]uint64{}
			}
			if old[r.Bucket()][key] == nil {
				old[r.Bucket()][key] = map[[counts.AddrLen]byte]uint64{}
			}
			old[r.Bucket()][key][a]++
		}
	}
	for bucket, ws := range old {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		for key, cs := range ws {
			st := &logtallyv1.WindowState{LastSeq: 0}
			for a, c := range cs {
				st.Addrs = append(st.Addrs, a[:]...)
				st.Counts = append(st.Counts, c)
			}
			data, err := proto.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Put(ctx, key, data); err != nil {
				t.Fatal(err)
			}
		}
	}
	state, err := js.KeyValue(ctx, topology.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	for p := range topo.Partitions {
		data, _ := proto.Marshal(&logtallyv1.Checkpoint{Seq: 0, Owner: "logtally-previous"})
		if _, err := state.Put(ctx, "cp."+strconv.Itoa(p), data); err != nil {
			t.Fatal(err)
		}
	}

	// The new release on that state.
	a := startApp(t, "upgraded", newConfig(t, "-nats.url="+srv.ClientURL()))
	c := newClient(t, a)
	c.waitTotals(t, from, to, ref.total, 0, time.Minute)

	// New lines, with their classes, into the same windows.
	var lines [][]byte
	for i := 20000; i < 30000; i++ {
		l := g.Combined(i%20000, 20000)
		ref.add(l)
		lines = append(lines, l.Text)
	}
	sendTCP(t, a.Ingest.TCPAddr(), lines)
	c.waitTotals(t, from, to, ref.total, 0, 2*time.Minute)
	verify(t, c, ref, from, to, 0)
}

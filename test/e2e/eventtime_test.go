package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	logtallyv1 "github.com/logtally/logtally/gen/logtally/v1"
	"github.com/logtally/logtally/internal/app"
	"github.com/logtally/logtally/internal/cli"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/loggen"
	"github.com/logtally/logtally/internal/topology"
)

// era is one log of its own time span and the oracle of its lines.
type era struct {
	name     string
	lines    []loggen.Line
	from, to time.Time // hour-aligned, covering every line
}

func newEra(name string, lines []loggen.Line) *era {
	e := &era{name: name, lines: lines}
	lo, hi := lines[0].Time, lines[0].Time
	for _, l := range lines {
		if l.Time.Before(lo) {
			lo = l.Time
		}
		if l.Time.After(hi) {
			hi = l.Time
		}
	}
	e.from, e.to = lo.Truncate(time.Hour), hi.Truncate(time.Hour).Add(time.Hour)
	return e
}

func (e *era) text() [][]byte {
	out := make([][]byte, len(e.lines))
	for i, l := range e.lines {
		out[i] = l.Text
	}
	return out
}

func (e *era) file(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), e.name)
	if err := os.WriteFile(path, append(bytes.Join(e.text(), []byte("\n")), '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// genEra is n lines of one of loggen's formats over [base, base+span).
func genEra(name string, seed uint64, pool int, base time.Time, span time.Duration, n int, line func(*loggen.Generator, int, int) loggen.Line) *era {
	g := loggen.New(seed, pool, base, span)
	lines := make([]loggen.Line, n)
	for i := range lines {
		lines[i] = line(g, i, n)
	}
	return newEra(name, lines)
}

func combinedEra(name string, seed uint64, base time.Time, span time.Duration, n int) *era {
	return genEra(name, seed, 400, base, span, n, (*loggen.Generator).Combined)
}

func sshdEra(name string, seed uint64, base time.Time, span time.Duration, n int) *era {
	return genEra(name, seed, 300, base, span, n, (*loggen.Generator).SSHD3164)
}

// eventTimeApp is an all-in-one whose parsers reorder: four workers on
// small raw batches.
func eventTimeApp(t *testing.T, name string) (*app.App, *client) {
	t.Helper()
	a := startApp(t, name, newConfig(t, "-parser.workers=4", "-ingest.batch.max-bytes=16KiB", "-ingest.max-line-bytes=8KiB"))
	return a, newClient(t, a)
}

// waitEras waits until the pipeline holds every line of the eras, then
// checks each era's 1m and 1h windows, totals and top lists against its
// oracle, and that nothing was counted late.
func waitEras(t *testing.T, c *client, eras ...*era) {
	t.Helper()
	// Each era on its own range: together they may span more years than
	// a query may.
	deadline := time.Now().Add(2 * time.Minute)
	for _, e := range eras {
		for {
			got := c.totals(t, e.from, e.to)
			if got.Requests == uint64(len(e.lines)) {
				break
			}
			if got.Requests > uint64(len(e.lines)) {
				t.Fatalf("%s: %d requests counted, more than the %d lines sent", e.name, got.Requests, len(e.lines))
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d lines counted", e.name, got.Requests, len(e.lines))
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	for _, e := range eras {
		if tot := c.totals(t, e.from, e.to); tot.Late != 0 {
			t.Fatalf("%s: late = %d, want 0", e.name, tot.Late)
		}
		checkEra(t, c, e)
	}
}

func checkEra(t *testing.T, c *client, e *era) {
	t.Helper()
	ref := newReference()
	perMinute := map[int64]counts.Counters{}
	perHour := map[int64]counts.Counters{}
	for _, l := range e.lines {
		ref.add(l)
		m, h := perMinute[l.Time.Truncate(time.Minute).Unix()], perHour[l.Time.Truncate(time.Hour).Unix()]
		m.Add(l.Counters)
		h.Add(l.Counters)
		perMinute[l.Time.Truncate(time.Minute).Unix()], perHour[l.Time.Truncate(time.Hour).Unix()] = m, h
	}
	tot := c.totals(t, e.from, e.to)
	if tot.Requests != ref.total || tot.DistinctIPs != ref.distinct(e.from, e.to) || tot.AuthFailures != ref.totals.AuthFailures ||
		tot.Status4xx != ref.totals.Status4xx || tot.Bytes != ref.totals.Bytes {
		t.Fatalf("%s: totals %+v, want %d requests, %d distinct, classes %+v", e.name, tot, ref.total, ref.distinct(e.from, e.to), ref.totals)
	}
	for _, step := range []struct {
		name string
		want map[int64]counts.Counters
	}{{"1m", perMinute}, {"1h", perHour}} {
		got := map[int64]counts.Counters{}
		// A series answers at most 10,000 points: ask in pieces.
		for from := e.from; from.Before(e.to); from = from.Add(6 * 24 * time.Hour) {
			to := from.Add(6 * 24 * time.Hour)
			if to.After(e.to) {
				to = e.to
			}
			var s struct {
				Series []struct {
					Start time.Time `json:"start"`
					countersJSON
				} `json:"series"`
			}
			c.getJSON(t, "/api/v1/series?step="+step.name+"&"+rangeQuery(from, to), &s)
			for _, p := range s.Series {
				if cs := p.counters(); cs != (counts.Counters{}) {
					got[p.Start.Unix()] = cs
				}
			}
		}
		if len(got) != len(step.want) {
			t.Fatalf("%s: %d %s windows hold lines, want %d", e.name, len(got), step.name, len(step.want))
		}
		for start, w := range step.want {
			if got[start] != w {
				t.Fatalf("%s: %s window %s holds %+v, want %+v", e.name, step.name, time.Unix(start, 0).UTC(), got[start], w)
			}
		}
	}
	for _, class := range []counts.Class{counts.Requests, counts.AuthFailures} {
		var got struct {
			Items []ipCount `json:"items"`
		}
		c.getJSON(t, "/api/v1/top?n=1000&class="+class.String()+"&"+rangeQuery(e.from, e.to), &got)
		if want := ref.top(e.from, e.to, 1000, class); fmt.Sprint(got.Items) != fmt.Sprint(want) {
			t.Fatalf("%s: top by %s differs from the reference:\n got %v\nwant %v", e.name, class, head(got.Items), head(want))
		}
	}
}

// Valid lines are never lost to ordering: each count exactly, in its own
// 1m and 1h windows, with late = 0 (issue 10).
func TestEventTimeInAnyOrder(t *testing.T) {
	now := time.Now().UTC()
	// An apache log of May 2015 and an sshd log (RFC 3164, no year) of
	// this spring, as in the issue.
	spring := time.Date(now.Year(), 3, 27, 0, 0, 0, 0, time.UTC)
	if spring.After(now.Add(-30 * 24 * time.Hour)) {
		spring = spring.AddDate(-1, 0, 0)
	}

	t.Run("replay in either order", func(t *testing.T) {
		for i, order := range []string{"old first", "new first"} {
			t.Run(order, func(t *testing.T) {
				apache := combinedEra("apache_logs", uint64(10+i), time.Date(2015, 5, 17, 10, 0, 0, 0, time.UTC), 72*time.Hour, 6000)
				auth := sshdEra("auth.log", uint64(20+i), spring, 24*24*time.Hour, 3000)
				files := []string{apache.file(t), auth.file(t)}
				if i == 1 {
					files[0], files[1] = files[1], files[0]
				}
				_, c := eventTimeApp(t, "replay")
				var out, errOut bytes.Buffer
				if err := cli.Replay(context.Background(), append([]string{"--addr", c.base, "--chunk-bytes", "64KiB"}, files...), &out, &errOut); err != nil {
					t.Fatalf("replay: %v\n%s", err, errOut.String())
				}
				waitEras(t, c, apache, auth)
			})
		}
	})

	t.Run("two eras back to back on one TCP connection", func(t *testing.T) {
		auth := sshdEra("auth.log", 31, spring, 24*24*time.Hour, 3000)
		apache := combinedEra("access.log", 32, time.Date(2015, 5, 17, 10, 0, 0, 0, time.UTC), 72*time.Hour, 5000)
		a, c := eventTimeApp(t, "tcp")
		sendTCP(t, a.Ingest.TCPAddr(), append(auth.text(), apache.text()...))
		waitEras(t, c, auth, apache)
	})

	t.Run("three-day backlog while live traffic flows", func(t *testing.T) {
		backlog := combinedEra("backlog", 41, now.Add(-75*time.Hour).Truncate(time.Hour), 72*time.Hour, 12000)
		live := combinedEra("live", 42, now.Add(-2*time.Minute).Truncate(time.Minute), 2*time.Minute, 4000)
		a, c := eventTimeApp(t, "backlog")
		var wg sync.WaitGroup
		wg.Go(func() { sendTCP(t, a.Ingest.TCPAddr(), backlog.text()) })
		half := len(live.lines) / 2
		wg.Go(func() { sendTCP(t, a.Ingest.TCPAddr(), live.text()[:half]) })
		wg.Go(func() { sendTCP(t, a.Ingest.TCPAddr(), live.text()[half:]) })
		wg.Wait()
		waitEras(t, c, backlog, live)
	})

	t.Run("raw batches of one historical file out of order", func(t *testing.T) {
		// The batches of one file reach the parsers in a shuffled order,
		// as when workers finish adjacent batches out of turn: the later
		// ones move the source's progress first.
		old := combinedEra("old.log", 51, time.Date(2019, 2, 1, 0, 0, 0, 0, time.UTC), 48*time.Hour, 8000)
		a, c := eventTimeApp(t, "shuffle")
		var batches [][]byte
		text := old.text()
		for i := 0; i < len(text); i += 200 {
			data, err := proto.Marshal(&logtallyv1.RawBatch{Source: "replay", ReceivedUnixMs: now.UnixMilli(), Lines: text[i:min(i+200, len(text))]})
			if err != nil {
				t.Fatal(err)
			}
			batches = append(batches, data)
		}
		rand.New(rand.NewPCG(5, 5)).Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })
		js := a.NATS().JS
		for _, b := range batches {
			if _, err := js.Publish(context.Background(), topology.RawPrefix+"replay", b); err != nil {
				t.Fatal(err)
			}
		}
		waitEras(t, c, old)
		// The shuffle is visible where it belongs: as lateness measured
		// against the source's progress, not as lost lines.
		behind := latenessBehind(t, a.Registry(), "replay")
		if behind == 0 {
			t.Fatal("no record measured behind its source's progress although the batches were shuffled")
		}
		t.Logf("%d of %d records arrived behind their source's progress", behind, len(old.lines))
	})
}

// latenessBehind is how many records of source the parsers measured more
// than a second behind the source's progress.
func latenessBehind(t *testing.T, reg prometheus.Gatherer, source string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "logtally_parser_event_lateness_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == source {
					h := m.GetHistogram()
					return h.GetSampleCount() - h.GetBucket()[0].GetCumulativeCount()
				}
			}
		}
	}
	t.Fatalf("no lateness histogram for source %s", source)
	return 0
}

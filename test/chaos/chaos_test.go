package chaos

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/loggen"
)

var long = flag.Bool("chaos.long", false, "run the longer variants of the fault tests")

// TestMain builds the binary once for all tests and removes it after.
// The fault tests start a dozen processes and take a few minutes; -short
// skips them.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("chaos tests skipped with -short")
		os.Exit(0)
	}
	code := m.Run()
	RemoveBinary()
	os.Exit(code)
}

// scale returns short normally and long with -chaos.long.
func scale[T any](short, long_ T) T {
	if *long {
		return long_
	}
	return short
}

// env is one pipeline: a 3-node cluster and every stage as its own process.
type env struct {
	t        *testing.T
	cluster  *Cluster
	bin      string
	ingest   *Stage
	query    *Stage
	parsers  []*Stage
	aggs     []*Stage
	from, to time.Time
}

func newEnv(t *testing.T, parsers, aggs int, extra ...string) *env {
	t.Helper()
	e := &env{t: t, bin: Binary(t)}
	e.cluster = StartCluster(t)
	urls := e.cluster.URLs()
	extra = append(append([]string{}, e.cluster.StageFlags...), extra...)
	e.ingest = StartStageEnv(t, e.bin, "ingest", "ingest", urls, e.cluster.StageEnv, extra...)
	e.query = StartStageEnv(t, e.bin, "query", "query", urls, e.cluster.StageEnv, extra...)
	for i := range parsers {
		e.parsers = append(e.parsers, StartStageEnv(t, e.bin, fmt.Sprintf("parser%d", i+1), "parser", urls, e.cluster.StageEnv, extra...))
	}
	for i := range aggs {
		e.aggs = append(e.aggs, StartStageEnv(t, e.bin, fmt.Sprintf("agg%d", i+1), "aggregator", urls, e.cluster.StageEnv, extra...))
	}
	// Event times: 20 minutes crossing an hour boundary, two hours ago.
	e.from = time.Now().UTC().Truncate(time.Hour).Add(-2*time.Hour - 10*time.Minute)
	e.to = e.from.Add(20 * time.Minute)
	e.warmUp()
	return e
}

// warmUp sends a few lines with event times far from the test's range and
// waits until they are counted: freshly created R3 streams elect their
// leaders first, and faults should hit a pipeline that is already flowing.
func (e *env) warmUp() {
	t := e.t
	t.Helper()
	t0 := time.Now()
	ww := NewWorkload(99, 200, 50, e.from.Add(-10*time.Hour))
	var body []byte
	for next := ww.Iter(); ; {
		l, ok := next()
		if !ok {
			break
		}
		body = append(append(body, l.Text...), '\n')
	}
	if err := PostIngest(context.Background(), &httpClient, e.ingest.Base(), fmt.Sprintf("warmup-%d", time.Now().UnixNano()), body, ww.N, nil); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	WaitExact(t, e.queryBase, ww.Ref, ww.From, ww.To, 2*time.Minute)
	t.Logf("pipeline warm: first lines counted %s after the start", time.Since(t0).Round(time.Millisecond))
}

func (e *env) queryBase() string { return e.query.Base() }

func (e *env) stages() []*Stage {
	out := []*Stage{e.ingest, e.query}
	out = append(out, e.parsers...)
	return append(out, e.aggs...)
}

func (e *env) checkAlive() {
	e.t.Helper()
	for _, s := range e.stages() {
		s.CheckAlive(e.t)
	}
}

// finish waits for the senders, then for exact counts, and logs the figures.
func (e *env) finish(m *Monitor, ref *Reference, senders ...*Sender) {
	t := e.t
	t.Helper()
	for _, s := range senders {
		if err := s.Wait(5 * time.Minute); err != nil {
			t.Fatalf("sender: %v", err)
		}
	}
	e.checkAlive()
	// The bound is generous on purpose: under -race, next to other test
	// packages on 2 cores, the in-process NATS cluster is slow; the figure
	// that matters is logged, not asserted.
	took := WaitExact(t, e.queryBase, ref, e.from, e.to, 4*time.Minute)
	m.Stop()
	worst := m.Report(t)
	t.Logf("RESULT %s: %d lines, %d IPs: exact (0 lost, 0 doubled); counts complete %s after the last line was sent; worst recovery %s",
		t.Name(), ref.Total, len(ref.PerIPMinute), took.Round(10*time.Millisecond), worst.Round(10*time.Millisecond))
	e.checkAlive()
	e.checkNoSecretsLogged()
}

// checkNoSecretsLogged fails if the NATS password shows up in any stage's
// log or command line.
func (e *env) checkNoSecretsLogged() {
	e.t.Helper()
	for _, s := range e.stages() {
		b, err := os.ReadFile(s.LogPath)
		if err != nil {
			e.t.Fatal(err)
		}
		if bytes.Contains(b, []byte(e.cluster.Password)) {
			e.t.Errorf("%s: the NATS password appears in %s", s.Name, s.LogPath)
		}
	}
}

// TestKillParsersAndAggregators SIGKILLs a random parser or aggregator every
// few seconds and restarts it, while lines stream in over TCP.
func TestKillParsersAndAggregators(t *testing.T) {
	e := newEnv(t, 2, 3)
	rate := 5000
	dur := scale(30*time.Second, 3*time.Minute)
	w := NewWorkload(1, rate*int(dur/time.Second), 3000, e.from)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tcp := SendTCP(ctx, "tcp", e.ingest.TCPAddr, w, rate)
	m := NewMonitor(e.queryBase, e.from, e.to, tcp)
	rng := rand.New(rand.NewPCG(7, 7))
	victims := append(append([]*Stage{}, e.parsers...), e.aggs...)
	kills := 0
	time.Sleep(2 * time.Second)
	for {
		select {
		case <-tcp.Done():
		default:
			v := victims[rng.IntN(len(victims))]
			m.Mark("SIGKILL " + v.Name)
			v.Kill(t)
			kills++
			time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
			v.Start(t)
			time.Sleep(time.Duration(1500+rng.IntN(2500)) * time.Millisecond)
			continue
		}
		break
	}
	t.Logf("%d kills", kills)
	e.finish(m, w.Ref, tcp)
}

// TestParsersBackPastDuplicateWindow SIGKILLs both parsers while they work
// through a backlog, so that raw batches are left half published, and
// keeps them away longer than the streams' duplicate window (shortened to
// 5s here; 2 minutes by default): the redelivered batches are republished
// under message IDs JetStream no longer remembers. The aggregators must
// recognise them by raw sequence; the test asserts they did.
func TestParsersBackPastDuplicateWindow(t *testing.T) {
	e := newEnv(t, 2, 2, "-nats.duplicate-window=5s", "-parser.ack-wait=6s")
	n := scale(120_000, 600_000)
	w := NewWorkload(9, n, 5000, e.from)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The backlog: sent fast while the parsers are down, then worked through.
	for _, p := range e.parsers {
		p.Kill(t)
	}
	tcp := SendTCP(ctx, "tcp", e.ingest.TCPAddr, w, 40_000)
	if err := tcp.Wait(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	m := NewMonitor(e.queryBase, e.from, e.to, tcp)
	for round := range 3 {
		for _, p := range e.parsers {
			p.Start(t)
		}
		time.Sleep(time.Duration(700+300*round) * time.Millisecond)
		m.Mark(fmt.Sprintf("SIGKILL both parsers mid-backlog (%d)", round+1))
		for _, p := range e.parsers {
			p.Kill(t)
		}
		time.Sleep(8 * time.Second) // > duplicate window
	}
	for _, p := range e.parsers {
		p.Start(t)
	}
	e.finish(m, w.Ref)
	var dups float64
	for _, a := range e.aggs {
		v, err := a.Metric("logtally_aggregator_duplicate_batches_total")
		if err != nil {
			t.Fatal(err)
		}
		dups += v
	}
	t.Logf("record batches republished past the duplicate window and dropped by raw sequence: %.0f", dups)
	if dups == 0 {
		t.Fatal("no record batch was republished past the duplicate window: the kills did not catch a batch half published, so the test proved nothing")
	}
}

// TestNATSNodeCrash stops a NATS node that leads nothing in particular, then
// the leader of LOGTALLY_PARSED, each for a few seconds, while lines stream.
func TestNATSNodeCrash(t *testing.T) {
	e := newEnv(t, 2, 2)
	rate := 5000
	down := scale(5*time.Second, 20*time.Second)
	dur := 4*down + 20*time.Second
	w := NewWorkload(2, rate*int(dur/time.Second), 3000, e.from)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tcp := SendTCP(ctx, "tcp", e.ingest.TCPAddr, w, rate)
	m := NewMonitor(e.queryBase, e.from, e.to, tcp)
	js := e.cluster.Connect(t)

	time.Sleep(3 * time.Second)
	leader := e.cluster.StreamLeader(t, js, "LOGTALLY_PARSED")
	victim := (leader + 1) % 3
	m.Mark("stop follower " + e.cluster.Nodes[victim].Name)
	e.cluster.Stop(victim)
	time.Sleep(down)
	t0 := time.Now()
	e.cluster.Start(t, victim)
	t.Logf("follower %s back and cluster current in %s", e.cluster.Nodes[victim].Name, time.Since(t0).Round(time.Millisecond))

	time.Sleep(3 * time.Second)
	leader = e.cluster.StreamLeader(t, js, "LOGTALLY_PARSED")
	m.Mark("stop LOGTALLY_PARSED leader " + e.cluster.Nodes[leader].Name)
	e.cluster.Stop(leader)
	time.Sleep(down)
	t0 = time.Now()
	e.cluster.Start(t, leader)
	t.Logf("leader %s back and cluster current in %s", e.cluster.Nodes[leader].Name, time.Since(t0).Round(time.Millisecond))
	e.finish(m, w.Ref, tcp)
}

// TestNATSOutage stops every NATS node: TCP ingest pushes back, HTTP ingest
// answers 503, UDP drops (counted); all resume when NATS returns.
func TestNATSOutage(t *testing.T) {
	e := newEnv(t, 1, 2)
	rate := 3000
	outage := 20 * time.Second
	dur := outage + 25*time.Second
	w := NewWorkload(3, rate*int(dur/time.Second), 3000, e.from)
	hw := NewWorkload(33, 200*int(dur/time.Second), 3000, e.from)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tcp := SendTCP(ctx, "tcp", e.ingest.TCPAddr, w, rate)
	httpS := SendHTTP(ctx, "http", e.ingest.Base(), fmt.Sprintf("outage-%d", time.Now().UnixNano()), hw, 200, 100)
	m := NewMonitor(e.queryBase, e.from, e.to, tcp, httpS)
	ref := NewReference()
	ref.Merge(w.Ref)
	ref.Merge(hw.Ref)

	// UDP lines count in a range of their own, far from the reference's.
	udpFrom := time.Now().UTC().Truncate(time.Hour).Add(-30 * time.Hour)
	uw := NewWorkloadFormat(4, 20000, 500, udpFrom, (*loggen.Generator).Firewall5424)
	var udpLines [][]byte
	for next := uw.Iter(); ; {
		l, ok := next()
		if !ok {
			break
		}
		udpLines = append(udpLines, l.Text)
	}
	// One HTTP body posted during the outage, retried afterwards.
	bw := NewWorkload(5, 500, 300, e.from)
	var body []byte
	for next := bw.Iter(); ; {
		l, ok := next()
		if !ok {
			break
		}
		body = append(append(body, l.Text...), '\n')
	}
	ref.Merge(bw.Ref)

	time.Sleep(5 * time.Second)
	g0, _ := e.ingest.Metric("go_goroutines")
	rss0, _ := e.ingest.RSS()
	m.Mark("stop all NATS nodes")
	outageStart := time.Now()
	e.cluster.StopAll()

	// Sample the TCP sender's progress during the outage.
	type prog struct {
		at   time.Time
		sent int64
	}
	progCh := make(chan []prog, 1)
	go func() {
		var ps []prog
		for time.Since(outageStart) < outage {
			ps = append(ps, prog{time.Now(), tcp.Sent()})
			time.Sleep(100 * time.Millisecond)
		}
		progCh <- ps
	}()
	// UDP during the outage.
	udpCtx, udpCancel := context.WithTimeout(ctx, outage-3*time.Second)
	udpDone := make(chan int, 1)
	go func() {
		n, err := SendUDP(udpCtx, e.ingest.SyslogAddr, udpLines, 2000)
		if err != nil {
			t.Errorf("udp: %v", err)
		}
		udpDone <- n
	}()
	// One HTTP request during the outage: 503 with Retry-After.
	time.Sleep(time.Second)
	key := fmt.Sprintf("outage-body-%d", time.Now().UnixNano())
	req, _ := newIngestRequest(e.ingest.Base(), key, body)
	t0 := time.Now()
	resp, err := (&httpClient).Do(req)
	if err != nil {
		t.Fatalf("POST during the outage: %v", err)
	}
	resp.Body.Close()
	t.Logf("POST during the outage: %d Retry-After=%q after %s", resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(t0).Round(time.Millisecond))
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST during the outage answered %d Retry-After=%q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	udpSent := <-udpDone
	udpCancel()
	ps := <-progCh
	g1, _ := e.ingest.Metric("go_goroutines")
	rss1, _ := e.ingest.RSS()
	bp, _ := e.ingest.Metric("logtally_ingest_backpressure_seconds_total")
	inFlight, _ := e.ingest.Metric("logtally_ingest_batches_in_flight")
	t.Logf("ingest during the outage: goroutines %.0f -> %.0f, RSS %d MiB -> %d MiB, backpressure_seconds_total %.1f, batches_in_flight %.0f",
		g0, g1, rss0>>20, rss1>>20, bp, inFlight)
	dropped, err := e.ingest.Metric("logtally_ingest_udp_dropped_total")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("UDP: %d datagrams sent during the outage, %.0f dropped (logtally_ingest_udp_dropped_total)", udpSent, dropped)
	if dropped <= 0 {
		t.Errorf("no UDP drop counted during the outage")
	}

	m.Mark("start all NATS nodes")
	t0 = time.Now()
	e.cluster.StartAll(t)
	t.Logf("NATS down %s; cluster current again %s after the restart began", time.Since(outageStart).Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))

	// Backpressure: the sender's longest stall during the outage.
	var stall, cur time.Duration
	for i := 1; i < len(ps); i++ {
		if ps[i].sent == ps[i-1].sent {
			cur += ps[i].at.Sub(ps[i-1].at)
			stall = max(stall, cur)
		} else {
			cur = 0
		}
	}
	t.Logf("TCP sender: longest stall %s of the %s outage (%d lines written during the outage)", stall.Round(time.Millisecond), outage, ps[len(ps)-1].sent-ps[0].sent)
	if stall < outage/2 {
		t.Errorf("TCP sender stalled only %s of the %s outage: no backpressure", stall, outage)
	}
	// The request that got 503 is retried with the same key.
	if err := PostIngest(ctx, &httpClient, e.ingest.Base(), key, body, 500, nil); err != nil {
		t.Fatalf("retry of the 503 request: %v", err)
	}
	e.finish(m, ref, tcp, httpS)
	t.Logf("HTTP sender: %d retries, %d answers 503", httpS.Retries.Load(), httpS.Status503.Load())

	// UDP: what was not dropped is counted (kernel drops are possible, so at most).
	udpTot, err := GetTotals(e.queryBase(), uw.From.Add(-time.Hour), uw.To.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("UDP: sent %d, dropped %.0f, counted %d", udpSent, dropped, udpTot.Requests)
	if float64(udpTot.Requests)+dropped > float64(udpSent) {
		t.Errorf("UDP: counted %d + dropped %.0f > sent %d", udpTot.Requests, dropped, udpSent)
	}
}

// TestSIGTERMEveryStage stops every stage with SIGTERM in turn while lines
// stream (TCP pauses cleanly around the ingest restart; HTTP keeps going,
// retrying with its Idempotency-Key) and restarts it.
func TestSIGTERMEveryStage(t *testing.T) {
	e := newEnv(t, 2, 2, "-shutdown.timeout=20s")
	rate := 4000
	dur := scale(35*time.Second, 2*time.Minute)
	w := NewWorkload(6, rate*int(dur/time.Second), 3000, e.from)
	hw := NewWorkload(66, 500*int(dur/time.Second), 3000, e.from)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tcp := SendTCP(ctx, "tcp", e.ingest.TCPAddr, w, rate)
	httpS := SendHTTP(ctx, "http", e.ingest.Base(), fmt.Sprintf("term-%d", time.Now().UnixNano()), hw, 500, 250)
	m := NewMonitor(e.queryBase, e.from, e.to, tcp, httpS)
	ref := NewReference()
	ref.Merge(w.Ref)
	ref.Merge(hw.Ref)

	order := []*Stage{e.parsers[0], e.aggs[0], e.query, e.parsers[1], e.aggs[1], e.ingest}
	time.Sleep(3 * time.Second)
	for _, s := range order {
		if s == e.ingest {
			if err := tcp.Pause(); err != nil {
				t.Fatal(err)
			}
		}
		m.Mark("SIGTERM " + s.Name)
		took := s.Term(t)
		t.Logf("%s: exit 0 %s after SIGTERM (grace %s)", s.Name, took.Round(time.Millisecond), s.Grace)
		s.Start(t)
		if s == e.ingest {
			tcp.Resume()
		}
		time.Sleep(3 * time.Second)
	}
	e.finish(m, ref, tcp, httpS)
	t.Logf("HTTP sender: %d retries, %d answers 503", httpS.Retries.Load(), httpS.Status503.Load())
}

// TestScaleAggregators scales the aggregators 1 → 3 → 2 → 1 while lines
// stream and checks each change ends in an even split of the partitions.
func TestScaleAggregators(t *testing.T) {
	e := newEnv(t, 2, 1)
	rate := 5000
	dur := scale(30*time.Second, 2*time.Minute)
	w := NewWorkload(8, rate*int(dur/time.Second), 3000, e.from)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tcp := SendTCP(ctx, "tcp", e.ingest.TCPAddr, w, rate)
	m := NewMonitor(e.queryBase, e.from, e.to, tcp)
	urls := e.cluster.URLs()

	waitSplit(t, e.aggs)
	time.Sleep(2 * time.Second)
	for i := 2; i <= 3; i++ {
		m.Mark(fmt.Sprintf("scale up to %d", i))
		e.aggs = append(e.aggs, StartStageEnv(t, e.bin, fmt.Sprintf("agg%d", i), "aggregator", urls, e.cluster.StageEnv, e.cluster.StageFlags...))
	}
	waitSplit(t, e.aggs)
	time.Sleep(2 * time.Second)
	for n := 2; n >= 1; n-- {
		last := e.aggs[len(e.aggs)-1]
		m.Mark(fmt.Sprintf("scale down to %d (SIGTERM %s)", n, last.Name))
		last.Term(t)
		e.aggs = e.aggs[:len(e.aggs)-1]
		waitSplit(t, e.aggs)
		time.Sleep(2 * time.Second)
	}
	e.finish(m, w.Ref, tcp)
}

// waitSplit waits until every aggregator sees len(aggs) members and owns
// ⌊32/R⌋ or ⌈32/R⌉ partitions, 32 in all.
func waitSplit(t *testing.T, aggs []*Stage) {
	t.Helper()
	const p = 32
	r := len(aggs)
	t0 := time.Now()
	deadline := t0.Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ok := true
		total := 0
		last = ""
		for _, a := range aggs {
			owned, err1 := a.Metric("logtally_aggregator_partition_owned")
			members, err2 := a.Metric("logtally_aggregator_members")
			if err1 != nil || err2 != nil {
				ok = false
				continue
			}
			last += fmt.Sprintf(" %s:%.0f/%.0f", a.Name, owned, members)
			total += int(owned)
			if int(owned) != p/r && int(owned) != (p+r-1)/r || int(members) != r {
				ok = false
			}
		}
		if ok && total == p {
			t.Logf("%d aggregators: even split after %s (owned/members:%s)", r, time.Since(t0).Round(time.Millisecond), last)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%d aggregators: no even split within 30s (owned/members:%s)", r, last)
}

var httpClient = http.Client{Timeout: 30 * time.Second}

func newIngestRequest(base, key string, body []byte) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/ingest?source=chaos", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Idempotency-Key", key)
	return req, nil
}

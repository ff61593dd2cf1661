// Package bench is `logtally bench`: it generates a log, drives the
// all-in-one pipeline over TCP and reports sustained throughput until the
// counts are queryable, receipt-to-queryable latency, query latency, CPU and
// peak RSS, and the ratio to an in-process parse-and-count of the same data.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	dto "github.com/prometheus/client_model/go"

	"github.com/logtally/logtally/internal/app"
	"github.com/logtally/logtally/internal/config"
	"github.com/logtally/logtally/internal/counts"
	"github.com/logtally/logtally/internal/loggen"
	"github.com/logtally/logtally/services/parser/format"
)

// Result is what one run measured.
type Result struct {
	Lines             int                `json:"lines"`
	DistinctIPs       uint64             `json:"distinct_ips"`
	Connections       int                `json:"connections"`
	SendSeconds       float64            `json:"send_seconds"`
	VisibleSeconds    float64            `json:"visible_seconds"`
	LinesPerSecond    float64            `json:"lines_per_second"`
	LatencyP50Ms      float64            `json:"latency_p50_ms"`
	LatencyP99Ms      float64            `json:"latency_p99_ms"`
	LatencySamples    int                `json:"latency_samples"`
	IdleLatencyP50Ms  float64            `json:"idle_latency_p50_ms"`
	IdleLatencyP99Ms  float64            `json:"idle_latency_p99_ms"`
	TopP50Ms          float64            `json:"top10_1h_p50_ms"`
	TopP99Ms          float64            `json:"top10_1h_p99_ms"`
	TopFirstMs        float64            `json:"top10_1h_first_ms"`
	Top5mP50Ms        float64            `json:"top10_5m_p50_ms"`
	Top5mP99Ms        float64            `json:"top10_5m_p99_ms"`
	KVBytes           float64            `json:"kv_bytes_written"`
	Increments        float64            `json:"increments"`
	KVBytesPerIncr    float64            `json:"kv_bytes_per_increment"`
	FailedFlushes     float64            `json:"failed_flushes"`
	WindowWrites      map[string]float64 `json:"window_writes"`
	EarlyFlushes      float64            `json:"early_flushes"`
	OpenWindows       float64            `json:"open_windows"`
	CPUCores          float64            `json:"cpu_cores_used"`
	CPUByStage        []StageCPU         `json:"cpu_by_stage"`
	PeakRSSMiB        float64            `json:"peak_rss_mib"`
	ChildRSSMiB       []float64          `json:"aggregator_process_peak_rss_mib,omitempty"`
	BaselineLinesPerS float64            `json:"baseline_parse_count_lines_per_second"`
	Ratio             float64            `json:"ratio_to_baseline"`
	Exact             bool               `json:"exact"`
}

// Run is the bench subcommand.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lines := fs.Int("lines", 2_000_000, "lines to send")
	pool := fs.Int("ips", 150_000, "size of the client IP pool (Zipf); about 100k distinct at the default")
	conns := fs.Int("connections", 4, "TCP connections sending in parallel")
	dataDir := fs.String("data.dir", "", "data directory of the embedded NATS (default: a temporary directory, removed after)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	verbose := fs.Bool("v", false, "log the pipeline's info lines")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	distinct := fs.Int("distinct", 0, "high-cardinality mode: this many distinct client IPs in one hour, one line each, plus -heavy heavy hitters (replaces -lines and -ips)")
	heavy := fs.Int("heavy", 20, "heavy hitters in -distinct mode")
	heavyLines := fs.Int("heavy-lines", 50_000, "lines of each heavy hitter in -distinct mode")
	scatter := fs.Int("scatter-years", 0, "adversarial timestamps: each line at a random minute of the last N years (replaces the hour of the other modes); measures open windows and memory")
	aggProcs := fs.Int("aggregators", 0, "run this many aggregators as processes of their own (joined to the bench's embedded NATS), instead of in process")
	attribute := fs.String("attribute", "", "only print the CPU by stage of an existing CPU profile (of any logtally release) and exit")
	var sets multiFlag
	fs.Var(&sets, "set", "a flag of the pipeline, as name=value without the dash (repeatable), e.g. -set nats.sync=always")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *attribute != "" {
		raw, err := os.ReadFile(*attribute)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		st, err := cpuByStage(raw)
		if err != nil {
			return err
		}
		for _, s := range st {
			fmt.Fprintf(stdout, "%-24s %6.1f s  %4.1f%%\n", s.Stage, s.Seconds, 100*s.Share)
		}
		return nil
	}
	if *lines < 1000 || *pool < 10 || *conns < 1 || *distinct < 0 || *heavy < 0 || *heavyLines < 0 {
		return errors.New("bench: need -lines ≥ 1000, -ips ≥ 10, -connections ≥ 1, and no negative -distinct, -heavy, -heavy-lines")
	}
	dir := *dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "logtally-bench-")
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }

	hour := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	var data [][]byte
	var scatterTimes []time.Time
	wantDistinct := uint64(0)
	if *distinct > 0 {
		progress("generating %d distinct IPs and %d heavy hitters × %d lines in one hour", *distinct, *heavy, *heavyLines)
		data = highCardinality(*distinct, *heavy, *heavyLines, hour)
		wantDistinct = uint64(*distinct + *heavy)
		if *heavyLines == 0 {
			wantDistinct = uint64(*distinct)
		}
	} else if *scatter > 0 {
		progress("generating %d lines at random minutes of the last %d years", *lines, *scatter)
		data, scatterTimes = scattered(*lines, time.Now().UTC().Add(-time.Hour), *scatter)
	} else {
		progress("generating %d lines over %d IPs", *lines, *pool)
		g := loggen.New(42, *pool, hour, time.Hour)
		data = make([][]byte, *lines)
		for i := range data {
			data[i] = g.Combined(i, *lines).Text
		}
	}
	*lines = len(data)

	progress("baseline: in-process parse and count")
	baseline := baselineRate(data)

	var cfg app.Config
	afs := flag.NewFlagSet("bench-app", flag.ContinueOnError)
	cfg.RegisterFlags(afs)
	appArgs := []string{
		"-data.dir=" + dir, "-http.addr=127.0.0.1:0", "-grpc.addr=127.0.0.1:0",
		"-ingest.tcp.addr=127.0.0.1:0", "-ingest.syslog.addr=",
	}
	var pipeFlags []string
	for _, kv := range sets {
		pipeFlags = append(pipeFlags, "-"+kv)
	}
	appArgs = append(appArgs, pipeFlags...)
	if *aggProcs > 0 {
		appArgs = append(appArgs, "-target=ingest,parser,query", "-nats.embedded-listen=127.0.0.1:0")
	}
	if err := config.Parse(afs, appArgs, "LOGTALLY_BENCH_"); err != nil {
		return err
	}
	level := hclog.Warn
	if *verbose {
		level = hclog.Info
	}
	a, err := app.New(cfg, hclog.New(&hclog.LoggerOptions{Name: "bench", Level: level, Output: stderr}))
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = a.Stop(sctx)
	}()
	base := "http://" + a.HTTPAddr().String()
	tcp := a.Ingest.TCPAddr().String()
	var children []*child
	defer func() {
		for _, c := range children {
			c.stop()
		}
	}()
	for i := range *aggProcs {
		c, err := startChild(ctx, fmt.Sprintf("aggregator-%d", i+1), "aggregator", a.EmbeddedNATSURL(), dir, pipeFlags)
		if err != nil {
			return err
		}
		children = append(children, c)
	}
	if len(children) > 0 {
		progress("%d aggregator processes ready", len(children))
	}
	childCPU := func() []time.Duration {
		out := make([]time.Duration, len(children))
		for i, c := range children {
			out[i] = c.cpu()
		}
		return out
	}

	res := Result{Lines: *lines, Connections: *conns, BaselineLinesPerS: baseline}
	// The CPU profile of the run attributes CPU to stages (stages.go).
	var prof bytes.Buffer
	if err := pprof.StartCPUProfile(&prof); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	profiling := true
	stopProfile := func() {
		if profiling {
			pprof.StopCPUProfile()
			profiling = false
		}
	}
	defer stopProfile()
	runtime.GC()
	cpu0 := cpuTime()
	child0 := childCPU()
	start := time.Now()

	// Latency probes: a unique IP per probe, sent on its own connection while
	// the load runs; the time until its count is queryable is the latency.
	probeCtx, stopProbes := context.WithCancel(ctx)
	var probeWG sync.WaitGroup
	var latencies []time.Duration
	var mu sync.Mutex
	probeWG.Add(1)
	go func() {
		defer probeWG.Done()
		for i := 0; probeCtx.Err() == nil; i++ {
			d, err := probe(probeCtx, tcp, base, i)
			if err != nil {
				return // cancelled at the end of the run
			}
			mu.Lock()
			latencies = append(latencies, d)
			mu.Unlock()
			select {
			case <-probeCtx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	progress("sending over %d TCP connections", *conns)
	var wg sync.WaitGroup
	errc := make(chan error, *conns)
	per := (len(data) + *conns - 1) / *conns
	for c := 0; c < *conns; c++ {
		part := data[min(c*per, len(data)):min((c+1)*per, len(data))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- send(tcp, part)
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			stopProbes()
			return fmt.Errorf("bench: send: %w", err)
		}
	}
	res.SendSeconds = time.Since(start).Seconds()

	progress("waiting until all counts are queryable")
	from, to := hour, hour.Add(time.Hour)
	var tot totals
	for {
		if *scatter > 0 {
			// Twenty years of windows are more than a query reads in time:
			// wait for the aggregators, then check sample days below.
			tot = totals{Requests: uint64(metricSum(a, "logtally_aggregator_records_total"))}
			for _, c := range children {
				tot.Requests += uint64(c.metric("logtally_aggregator_records_total"))
			}
		} else if err := getJSON(ctx, base+"/api/v1/totals?from="+from.Format(time.RFC3339)+"&to="+to.Format(time.RFC3339), &tot); err != nil {
			stopProbes()
			return err
		}
		if tot.Requests >= uint64(*lines) {
			break
		}
		if time.Since(start) > 15*time.Minute {
			stopProbes()
			return fmt.Errorf("bench: only %d of %d lines counted after 15 minutes", tot.Requests, *lines)
		}
		time.Sleep(50 * time.Millisecond)
	}
	visible := time.Since(start)
	cpu := cpuTime() - cpu0
	child1 := childCPU()
	stopProfile()
	stopProbes()
	probeWG.Wait()
	if *cpuProfile != "" {
		if err := os.WriteFile(*cpuProfile, prof.Bytes(), 0o644); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if st, err := cpuByStage(prof.Bytes()); err == nil {
		res.CPUByStage = append(st, res.CPUByStage...)
	} else {
		progress("cpu by stage: %v", err)
	}
	sum := func(name string) float64 {
		v := metricSum(a, name)
		for _, c := range children {
			v += c.metric(name)
		}
		return v
	}
	for i, c := range children {
		d := child1[i] - child0[i]
		cpu += d
		res.CPUByStage = append(res.CPUByStage, StageCPU{Stage: c.name + " (process)", Seconds: d.Seconds()})
	}
	var stageTotal float64
	for _, st := range res.CPUByStage {
		stageTotal += st.Seconds
	}
	for i := range res.CPUByStage {
		res.CPUByStage[i].Share = res.CPUByStage[i].Seconds / max(stageTotal, 1e-9)
	}
	res.OpenWindows = sum("logtally_aggregator_open_windows")
	res.EarlyFlushes = sum("logtally_aggregator_early_flushes_total")
	res.KVBytes = sum("logtally_aggregator_kv_bytes_written_total")
	res.Increments = sum("logtally_aggregator_increments_total")
	res.FailedFlushes = sum("logtally_aggregator_flush_retries_total") + sum("logtally_aggregator_partition_restarts_total")
	res.WindowWrites = map[string]float64{}
	for _, kind := range []string{"inline", "spill", "merge", "full"} {
		res.WindowWrites[kind] = labelled(a, "logtally_aggregator_window_writes_total", "kind", kind)
		for _, c := range children {
			res.WindowWrites[kind] += c.labelled("logtally_aggregator_window_writes_total", "kind", kind)
		}
	}
	if res.Increments > 0 {
		res.KVBytesPerIncr = res.KVBytes / res.Increments
	}
	res.VisibleSeconds = visible.Seconds()
	res.LinesPerSecond = float64(*lines) / visible.Seconds()
	res.CPUCores = cpu.Seconds() / visible.Seconds()
	res.Exact = tot.Requests == uint64(*lines) && (wantDistinct == 0 || tot.DistinctIPs == wantDistinct)
	if *scatter > 0 {
		// The aggregators' count includes the latency probes' lines.
		progress("checking 50 sample days against the generated lines")
		ok, err := checkScatterDays(ctx, base, scatterTimes, 50)
		if err != nil {
			return err
		}
		res.Exact = ok
	}
	res.DistinctIPs = tot.DistinctIPs
	res.Ratio = res.LinesPerSecond / baseline
	mu.Lock()
	res.LatencySamples = len(latencies)
	res.LatencyP50Ms, res.LatencyP99Ms = percentiles(latencies)
	mu.Unlock()

	progress("measuring latency without load")
	var idle []time.Duration
	for i := 0; i < 40; i++ {
		d, err := probe(ctx, tcp, base, 1<<20+i)
		if err != nil {
			return err
		}
		idle = append(idle, d)
	}
	res.IdleLatencyP50Ms, res.IdleLatencyP99Ms = percentiles(idle)

	progress("querying top-10 over the hour and over its last 5 minutes")
	topLatency := func(from, to time.Time) ([]time.Duration, error) {
		var lat []time.Duration
		for i := 0; i < 200; i++ {
			t0 := time.Now()
			var top struct{ Items []struct{} }
			if err := getJSON(ctx, base+"/api/v1/top?n=10&from="+from.Format(time.RFC3339)+"&to="+to.Format(time.RFC3339), &top); err != nil {
				return nil, err
			}
			lat = append(lat, time.Since(t0))
		}
		return lat, nil
	}
	topLat, err := topLatency(from, to)
	if err != nil {
		return err
	}
	res.TopFirstMs = float64(topLat[0]) / float64(time.Millisecond)
	res.TopP50Ms, res.TopP99Ms = percentiles(topLat)
	top5, err := topLatency(to.Add(-5*time.Minute), to)
	if err != nil {
		return err
	}
	res.Top5mP50Ms, res.Top5mP99Ms = percentiles(top5)
	res.PeakRSSMiB = peakRSS()
	for _, c := range children {
		res.ChildRSSMiB = append(res.ChildRSSMiB, c.peakRSSMiB())
	}

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, `logtally bench (all-in-one, embedded NATS, %d CPUs)
  lines sent               %d over %d TCP connections (%.1fs to send)
  counted exactly          %v (%d distinct IPs)
  sustained throughput     %.0f lines/s until queryable (%.1fs)
  receipt→queryable        under load p50 %.0f ms, p99 %.0f ms (%d probes); idle p50 %.0f ms, p99 %.0f ms
  top-10 over 1h           p50 %.1f ms, p99 %.1f ms (first %.0f ms); over its last 5m p50 %.1f ms, p99 %.1f ms
  KV writes                %.1f bytes per increment (%.0f MB for %.0f increments), %.0f failed flushes
  window commits           %.0f inline, %.0f spill, %.0f merge, %.0f full; %.0f early flushes, %.0f windows open at the end
  CPU                      %.2f cores
  peak RSS                 %.0f MiB (includes the generated log held in memory)
  in-process parse+count   %.0f lines/s on one goroutine
  ratio                    %.2f of the in-process rate
`, runtime.NumCPU(), res.Lines, res.Connections, res.SendSeconds, res.Exact, res.DistinctIPs,
		res.LinesPerSecond, res.VisibleSeconds, res.LatencyP50Ms, res.LatencyP99Ms, res.LatencySamples, res.IdleLatencyP50Ms, res.IdleLatencyP99Ms,
		res.TopP50Ms, res.TopP99Ms, res.TopFirstMs, res.Top5mP50Ms, res.Top5mP99Ms,
		res.KVBytesPerIncr, res.KVBytes/1e6, res.Increments, res.FailedFlushes,
		res.WindowWrites["inline"], res.WindowWrites["spill"], res.WindowWrites["merge"], res.WindowWrites["full"], res.EarlyFlushes, res.OpenWindows,
		res.CPUCores, res.PeakRSSMiB, res.BaselineLinesPerS, res.Ratio)
	for _, st := range res.CPUByStage {
		fmt.Fprintf(stdout, "    %-24s %6.1f s  %4.1f%%\n", st.Stage, st.Seconds, 100*st.Share)
	}
	for i, m := range res.ChildRSSMiB {
		fmt.Fprintf(stdout, "  aggregator-%d process     peak RSS %.0f MiB\n", i+1, m)
	}
	if !res.Exact {
		return fmt.Errorf("bench: counted %d requests for %d lines, %d distinct IPs (want %d)", tot.Requests, *lines, tot.DistinctIPs, wantDistinct)
	}
	return nil
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// metricSum adds up every series of a metric in the pipeline's registry.
func metricSum(a *app.App, name string) float64 {
	mfs, err := a.Registry().Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum += familySum(mf)
		}
	}
	return sum
}

// familySum adds up the counters and gauges of a metric family.
func familySum(mf *dto.MetricFamily) float64 {
	var sum float64
	for _, m := range mf.GetMetric() {
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}

// labelled is one labelled series of a metric in the pipeline's registry.
func labelled(a *app.App, name, label, value string) float64 {
	mfs, err := a.Registry().Gather()
	if err != nil {
		return 0
	}
	return seriesValue(mfs, name, label, value)
}

func seriesValue(mfs []*dto.MetricFamily, name, label, value string) float64 {
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return sum
}

type totals struct {
	Requests    uint64 `json:"requests"`
	DistinctIPs uint64 `json:"distinct_ips"`
}

// baselineRate parses and counts the lines in process, per minute and IP,
// which is the least work any pipeline must do.
func baselineRate(data [][]byte) float64 {
	p := format.New(format.Options{})
	now := time.Now()
	m := map[[counts.AddrLen + 8]byte]uint64{}
	var rec format.Record
	var key [counts.AddrLen + 8]byte
	start := time.Now()
	for _, l := range data {
		if err := p.Parse(l, format.CLF, now, &rec); err != nil {
			continue
		}
		a := counts.Pack(rec.Addr)
		copy(key[:], a[:])
		min := rec.Time.Unix() / 60
		for i := 0; i < 8; i++ {
			key[counts.AddrLen+i] = byte(min >> (8 * i))
		}
		m[key]++
	}
	return float64(len(data)) / time.Since(start).Seconds()
}

func send(addr string, lines [][]byte) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	var buf bytes.Buffer
	for _, l := range lines {
		buf.Write(l)
		buf.WriteByte('\n')
		if buf.Len() >= 256<<10 {
			if _, err := conn.Write(buf.Bytes()); err != nil {
				return err
			}
			buf.Reset()
		}
	}
	_, err = conn.Write(buf.Bytes())
	return err
}

// probe sends one line from a unique IP and waits until its count shows.
func probe(ctx context.Context, tcp, base string, i int) (time.Duration, error) {
	ip := netip.AddrFrom4([4]byte{100, 64 + byte(i>>16&63), byte(i >> 8), byte(i)})
	now := time.Now().UTC()
	line := fmt.Sprintf("%s - - [%s] \"GET /probe HTTP/1.1\" 200 1 \"-\" \"bench\"\n", ip, now.Format("02/Jan/2006:15:04:05 -0700"))
	conn, err := net.Dial("tcp", tcp)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if _, err := conn.Write([]byte(line)); err != nil {
		conn.Close()
		return 0, err
	}
	conn.Close()
	url := base + "/api/v1/ips/" + ip.String() + "?last=5m"
	for ctx.Err() == nil {
		var got struct {
			Count uint64 `json:"count"`
		}
		if err := getJSON(ctx, url, &got); err != nil {
			return 0, err
		}
		if got.Count > 0 {
			return time.Since(t0), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, ctx.Err()
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

func percentiles(d []time.Duration) (p50, p99 float64) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q * float64(len(s)-1))
		return float64(s[i]) / float64(time.Millisecond)
	}
	return at(0.50), at(0.99)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS reads VmHWM, the process's peak resident set, in MiB.
func peakRSS() float64 { return vmHWM("/proc/self/status") }

func vmHWM(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// Package senders runs the real programs that ship logs — nginx, rsyslog,
// syslog-ng, HAProxy, Caddy, from Debian — against an all-in-one logtally in
// the test process, makes each emit a known set of lines, and compares
// logtally's answers with an independent count of what was sent: per-IP
// requests, 4xx, 5xx and authentication failures, in the minute the
// sender meant. docs/senders.md has the configurations these tests use.
//
// A missing program skips its test, unless CI is set: then it fails
// (.ci/run installs the programs).
package senders

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/app"
	"github.com/logtally/logtally/internal/apptest"
)

// program finds a sender's executable on PATH or at one of the extra
// paths (relative paths are from this package's directory). Without it the
// test is skipped, or fails when CI is set.
func program(t *testing.T, name string, extra ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range extra {
		if abs, err := filepath.Abs(p); err == nil {
			if st, err := os.Stat(abs); err == nil && !st.IsDir() {
				return abs
			}
		}
	}
	msg := fmt.Sprintf("%s is not installed (Debian: apt-get install %s; .ci/run installs it)", name, name)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// requireRoot: the programs bind ports, write pid files and, for the
// syslog daemons, sockets the way they do as a system service.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the sender tests run the real programs as root")
		}
		t.Skip("the sender tests run the real programs as root")
	}
}

// logtally is an all-in-one instance with its listeners on loopback.
type logtally struct {
	app  *app.App
	base string
}

func startLogtally(t *testing.T, args ...string) *logtally {
	t.Helper()
	a, err := app.New(apptest.Config(t, args...), apptest.Logger(t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatalf("start logtally: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop logtally: %v", err)
		}
	})
	return &logtally{app: a, base: "http://" + a.HTTPAddr().String()}
}

func (l *logtally) syslogUDP() string { return l.app.Ingest.SyslogUDPAddr().String() }
func (l *logtally) syslogTCP() string { return l.app.Ingest.SyslogTCPAddr().String() }
func (l *logtally) tcp() string       { return l.app.Ingest.TCPAddr().String() }

func port(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		panic(err)
	}
	return p
}

// freePort returns a loopback TCP port nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return port(ln.Addr().String())
}

// writeFile writes a configuration file and returns its path.
func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// proc is a sender running in the foreground; it is killed when the test
// ends, and its output is printed when the test failed.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(bin), cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// RFC 3164 timestamps are the sender's local time without a zone,
	// which logtally reads as UTC (docs/senders.md): run the senders in UTC
	// so that the tests do not depend on the host's zone.
	p.cmd.Env = append(append(os.Environ(), "TZ=UTC"), env...)
	// Its own process group, so that workers it forks die with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s %s output:\n%s", p.name, strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// stop signals the process group with SIGTERM and, if it lingers, SIGKILL.
func (p *proc) stop() {
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor polls cond until it holds; it fails the test (with the
// program's output) if the deadline passes or the program exits.
func waitFor(t *testing.T, p *proc, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p != nil && p.exited() {
			t.Fatalf("%s exited while waiting for %s: %v\n%s", p.name, what, p.cmd.ProcessState, p.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitListening waits until something accepts TCP connections at addr.
func waitListening(t *testing.T, p *proc, addr string) {
	t.Helper()
	waitFor(t, p, p.name+" listening on "+addr, 20*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// clientIPs are the loopback source addresses the HTTP clients bind to:
// 127.0.0.0/8 is all loopback on Linux, so each is a distinct client IP
// that the server logs as its peer.
func clientIPs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{127, 0, byte(1 + i/250), byte(2 + i%250)})
	}
	return out
}

// httpFrom is a client whose connections come from the source address src.
func httpFrom(src netip.Addr) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// counters are one IP's expected or counted classes.
type counters struct {
	Requests     uint64 `json:"requests"`
	Status4xx    uint64 `json:"status_4xx"`
	Status5xx    uint64 `json:"status_5xx"`
	AuthFailures uint64 `json:"auth_failures"`
}

func (c *counters) add(o counters) {
	c.Requests += o.Requests
	c.Status4xx += o.Status4xx
	c.Status5xx += o.Status5xx
	c.AuthFailures += o.AuthFailures
}

// statusCounters is what one access-log line with status st counts.
func statusCounters(st int) counters {
	c := counters{Requests: 1}
	switch {
	case st >= 400 && st < 500:
		c.Status4xx = 1
	case st >= 500 && st < 600:
		c.Status5xx = 1
	}
	if st == 401 || st == 407 {
		c.AuthFailures = 1
	}
	return c
}

// oracle is the independent count of what the sender was made to emit:
// per minute (the sender's event time, truncated), per IP.
type oracle struct {
	mu  sync.Mutex
	per map[time.Time]map[netip.Addr]counters
}

func newOracle() *oracle { return &oracle{per: map[time.Time]map[netip.Addr]counters{}} }

func (o *oracle) add(minute time.Time, ip netip.Addr, c counters) {
	o.mu.Lock()
	defer o.mu.Unlock()
	minute = minute.UTC().Truncate(time.Minute)
	m := o.per[minute]
	if m == nil {
		m = map[netip.Addr]counters{}
		o.per[minute] = m
	}
	v := m[ip]
	v.add(c)
	m[ip] = v
}

func (o *oracle) total() (sum counters, lines int) {
	for _, m := range o.per {
		for _, c := range m {
			sum.add(c)
		}
	}
	return sum, int(sum.Requests)
}

// window runs send, which makes the sender log lines stamped with the
// current time, inside one minute: if fewer than need remain in this
// minute it first waits for the next one. It returns that minute. The
// sender stamps a line between the request's start and its log call, so a
// send that ends inside the minute it started in has every line in it.
func window(t *testing.T, need time.Duration, send func(minute time.Time)) time.Time {
	t.Helper()
	now := time.Now().UTC()
	if next := now.Truncate(time.Minute).Add(time.Minute); next.Sub(now) < need {
		time.Sleep(next.Sub(now) + 50*time.Millisecond)
	}
	minute := time.Now().UTC().Truncate(time.Minute)
	send(minute)
	// A second of margin: the programs stamp lines with whole seconds
	// after the request completed.
	if end := time.Now().UTC().Add(time.Second).Truncate(time.Minute); !end.Equal(minute) {
		t.Fatalf("sending took too long: started in the minute %s, ended in %s", minute.Format(time.TimeOnly), end.Format(time.TimeOnly))
	}
	return minute
}

type topItem struct {
	IP string `json:"ip"`
	counters
}

type totals struct {
	counters
	DistinctIPs uint64 `json:"distinct_ips"`
	DeadLetters uint64 `json:"dead_letters"`
	Late        uint64 `json:"late"`
}

func (l *logtally) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get(l.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: decode %s: %v", path, body, err)
	}
}

func rng(from, to time.Time) string {
	return "from=" + from.UTC().Format(time.RFC3339) + "&to=" + to.UTC().Format(time.RFC3339)
}

// deadLetters returns the newest dead letters' reasons and lines, to
// explain a failure.
func (l *logtally) deadLetters(t *testing.T) string {
	var dl struct {
		Items []struct {
			Reason string `json:"reason"`
			Line   string `json:"line"`
		} `json:"items"`
	}
	l.getJSON(t, "/api/v1/dead-letters?n=10", &dl)
	var b strings.Builder
	for _, it := range dl.Items {
		fmt.Fprintf(&b, "  %s: %q\n", it.Reason, it.Line)
	}
	return b.String()
}

// verify waits until logtally has counted as many requests as the oracle
// holds (over a range wide enough for every minute the oracle knows, read
// from the 1h windows), then checks that nothing more arrives and that
// every minute's per-IP answer, read from the 1m windows, equals the
// oracle's exactly. wantDead is how many dead letters the sender's lines
// should have produced.
func (l *logtally) verify(t *testing.T, o *oracle, wantDead uint64) {
	t.Helper()
	sum, lines := o.total()
	var first, last time.Time
	for m := range o.per {
		if first.IsZero() || m.Before(first) {
			first = m
		}
		if m.After(last) {
			last = m
		}
	}
	now := time.Now().UTC()
	if now.After(last) {
		last = now
	}
	from, to := first.Truncate(time.Hour), last.Truncate(time.Hour).Add(2*time.Hour)
	var got totals
	deadline := time.Now().Add(45 * time.Second)
	for {
		l.getJSON(t, "/api/v1/totals?"+rng(from, to), &got)
		if got.Requests >= sum.Requests && got.DeadLetters >= wantDead {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logtally counted %d of the %d requests sent (%d dead letters, want %d):\n%s", got.Requests, sum.Requests, got.DeadLetters, wantDead, l.deadLetters(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Anything counted twice or late would show up within a few flushes.
	time.Sleep(time.Second)
	l.getJSON(t, "/api/v1/totals?"+rng(from, to), &got)
	if got.counters != sum || got.DeadLetters != wantDead || got.Late != 0 {
		t.Errorf("totals over [%s, %s): got %+v, dead letters %d, late %d; want %+v, dead letters %d\n%s",
			from.Format(time.RFC3339), to.Format(time.RFC3339), got.counters, got.DeadLetters, got.Late, sum, wantDead, l.deadLetters(t))
	}
	minutes := make([]time.Time, 0, len(o.per))
	for m := range o.per {
		minutes = append(minutes, m)
	}
	sort.Slice(minutes, func(i, j int) bool { return minutes[i].Before(minutes[j]) })
	for _, m := range minutes {
		want := o.per[m]
		var top struct {
			Items []topItem `json:"items"`
		}
		l.getJSON(t, fmt.Sprintf("/api/v1/top?n=1000&%s", rng(m, m.Add(time.Minute))), &top)
		gotIPs := map[netip.Addr]counters{}
		for _, it := range top.Items {
			gotIPs[netip.MustParseAddr(it.IP)] = it.counters
		}
		var diffs []string
		for ip, c := range want {
			if gotIPs[ip] != c {
				diffs = append(diffs, fmt.Sprintf("%s: got %+v want %+v", ip, gotIPs[ip], c))
			}
		}
		for ip, c := range gotIPs {
			if _, ok := want[ip]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s: got %+v, sent nothing", ip, c))
			}
		}
		if len(diffs) > 0 {
			sort.Strings(diffs)
			if len(diffs) > 10 {
				diffs = append(diffs[:10], fmt.Sprintf("... %d more", len(diffs)-10))
			}
			t.Errorf("minute %s: %d IPs differ:\n  %s", m.Format(time.RFC3339), len(diffs), strings.Join(diffs, "\n  "))
		}
	}
	t.Logf("%d lines sent in %d minute(s), %d IPs; counted %d requests, %d 4xx, %d 5xx, %d auth failures, %d dead letters",
		lines, len(o.per), countIPs(o), got.Requests, got.Status4xx, got.Status5xx, got.AuthFailures, got.DeadLetters)
}

func countIPs(o *oracle) int {
	ips := map[netip.Addr]bool{}
	for _, m := range o.per {
		for ip := range m {
			ips[ip] = true
		}
	}
	return len(ips)
}

// request is one HTTP request a test makes a server log: sent from src,
// with header, and to be counted for ip.
type request struct {
	src    netip.Addr
	ip     netip.Addr
	path   string
	header map[string]string
}

// paths cycles through answers of every class; the servers under test are
// configured to answer them with these statuses.
var paths = []string{"/ok", "/ok", "/missing", "/login", "/boom", "/ok", "/busy"}

// mixedRequests gives client i of ips i%5+1 requests over paths, from its
// own source address.
func mixedRequests(ips []netip.Addr) []request {
	var out []request
	for i, ip := range ips {
		for k := 0; k < i%5+1; k++ {
			out = append(out, request{src: ip, ip: ip, path: paths[(i+k)%len(paths)]})
		}
	}
	return out
}

// fire sends the requests to base, a few at a time, and adds what each
// answer's status counts to the oracle under minute.
func fire(t *testing.T, o *oracle, minute time.Time, base string, reqs []request) {
	t.Helper()
	var wg sync.WaitGroup
	ch := make(chan request)
	errs := make(chan string, len(reqs))
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range ch {
				st, err := doGet(httpFrom(r.src), base+r.path, r.header)
				if err != nil {
					errs <- err.Error()
					continue
				}
				o.add(minute, r.ip, statusCounters(st))
			}
		}()
	}
	for _, r := range reqs {
		ch <- r
	}
	close(ch)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func doGet(c *http.Client, url string, header map[string]string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// sshLine is one sshd message and whether it is an authentication failure
// (the test's own judgement, from the kind of message it wrote).
type sshLine struct {
	ip   netip.Addr
	msg  string
	auth bool
}

var sshKinds = []struct {
	format string
	auth   bool
}{
	{"Failed password for root from %s port 22 ssh2", true},
	{"Invalid user admin from %s port 40022", true},
	{"Accepted publickey for alice from %s port 50000 ssh2: ED25519 SHA256:AAAAC3NzaC1lZDI1NTE5", false},
	{"Connection closed by authenticating user root %s port 22 [preauth]", true},
	{"Disconnected from user alice %s port 50000", false},
	{"Failed password for invalid user oracle from %s port 2222 ssh2", true},
}

// sshdLines gives n clients of each of the two documentation networks,
// 203.0.113.0/24 and 198.51.100.0/24, i%4+1 sshd messages each (the
// senders' configurations route one network as RFC 5424 and the other as
// RFC 3164).
func sshdLines(n, salt int) []sshLine {
	var out []sshLine
	for i := 0; i < n; i++ {
		for _, net := range [][3]byte{{203, 0, 113}, {198, 51, 100}} {
			ip := netip.AddrFrom4([4]byte{net[0], net[1], net[2], byte(1 + i)})
			for k := 0; k < i%4+1; k++ {
				kind := sshKinds[(i+k+salt)%len(sshKinds)]
				out = append(out, sshLine{ip: ip, msg: fmt.Sprintf(kind.format, ip), auth: kind.auth})
			}
		}
	}
	return out
}

func (o *oracle) addSSH(minute time.Time, lines []sshLine) {
	for _, l := range lines {
		c := counters{Requests: 1}
		if l.auth {
			c.AuthFailures = 1
		}
		o.add(minute, l.ip, c)
	}
}

// logger sends every line with util-linux logger to the unix datagram
// socket sock, as sshd would through syslog(3): "<38>Dec  2 07:30:00
// sshd[4242]: ...", stamped now.
func logger(t *testing.T, sock string, lines []sshLine) {
	t.Helper()
	var in strings.Builder
	for _, l := range lines {
		in.WriteString(l.msg + "\n")
	}
	cmd := exec.Command(program(t, "logger", "/usr/bin/logger"), "--socket-errors=on", "-u", sock, "-t", "sshd", "--id=4242", "-p", "auth.info")
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("logger: %v\n%s", err, out)
	}
}

// syslogPast writes the lines to the unix datagram socket sock with an RFC
// 3164 timestamp at, as a local sender would replay them: without a year.
func syslogPast(t *testing.T, sock string, at time.Time, lines []sshLine) {
	t.Helper()
	c, err := net.Dial("unixgram", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, l := range lines {
		if _, err := fmt.Fprintf(c, "<38>%s sshd[4242]: %s", at.UTC().Format(time.Stamp), l.msg); err != nil {
			t.Fatal(err)
		}
	}
}

// pastTimes are minutes of the last two days (inside the 48 h retention of
// the 1 minute windows) at which replayed lines are stamped, with seconds
// so that they are not at the minute's edge.
func pastTimes() []time.Time {
	now := time.Now().UTC().Truncate(time.Minute)
	return []time.Time{now.Add(-2*time.Hour - 7*time.Minute + 17*time.Second), now.Add(-20*time.Hour + 29*time.Second), now.Add(-40*time.Hour - 3*time.Minute + 41*time.Second)}
}

// sshdWorkload runs the whole sshd scenario against a syslog daemon
// listening on the unix socket sock: live lines through logger, then
// lines replayed with timestamps of the last two days, each set in the
// minute it is stamped with. It returns how many lines it sent of the
// network routed as RFC 5424 (in5424) and of the other one.
func sshdWorkload(t *testing.T, lt *logtally, sock string) (n5424, n3164 int) {
	t.Helper()
	o := newOracle()
	live := sshdLines(30, 0)
	window(t, 10*time.Second, func(minute time.Time) {
		logger(t, sock, live)
		o.addSSH(minute, live)
	})
	for i, at := range pastTimes() {
		lines := sshdLines(20, i+1)
		syslogPast(t, sock, at, lines)
		o.addSSH(at, lines)
	}
	lt.verify(t, o, 0)
	for _, m := range o.per {
		for ip, c := range m {
			if in5424.Contains(ip) {
				n5424 += int(c.Requests)
			} else {
				n3164 += int(c.Requests)
			}
		}
	}
	return n5424, n3164
}

// checkSources compares how many lines each ingest listener received
// (logtally_ingest_lines_total by source: tcp, syslog-tcp, syslog-udp,
// http) with want, so that a test also proves which transport its sender
// used.
func (l *logtally) checkSources(t *testing.T, want map[string]int) {
	t.Helper()
	mfs, err := l.app.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, mf := range mfs {
		if mf.GetName() != "logtally_ingest_lines_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "source" && m.GetCounter().GetValue() > 0 {
					got[lp.GetValue()] = int(m.GetCounter().GetValue())
				}
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lines received by listener: got %v, want %v", got, want)
	}
}

// in5424 is the network the sshd scenarios route as RFC 5424.
var in5424 = netip.MustParsePrefix("203.0.113.0/24")

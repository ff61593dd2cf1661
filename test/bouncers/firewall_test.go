package bouncers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/logtally/logtally/internal/apptest"
	"github.com/logtally/logtally/internal/decisions"
)

// needRoot skips the test when not root or, in CI, fails it.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("network namespaces and nftables need root; CI runs as root")
		}
		t.Skip("network namespaces and nftables need root")
	}
}

func run(t *testing.T, prog string, args ...string) string {
	t.Helper()
	out, err := exec.Command(prog, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// testNet is a network namespace ("the server") joined to this one by a
// veth pair: the host side has the client addresses, the namespace side
// the server's.
type testNet struct {
	ns     string // name for ip netns
	host   string // this side of the veth
	server netip.Addr
	// Sources on this side; hostAddr is also where logtally listens.
	hostAddr, flooder, byHand netip.Addr
}

// newTestNet makes a namespace and a veth into it, named after the pid, in
// a 10.200.N.0/24 that no interface or route here uses; t.Cleanup removes
// both, whatever happened.
func newTestNet(t *testing.T, ip string) *testNet {
	t.Helper()
	pid := os.Getpid()
	n := &testNet{ns: fmt.Sprintf("logtally-fw-%d", pid), host: fmt.Sprintf("ltfw%dh", pid)}
	peer := fmt.Sprintf("ltfw%ds", pid)
	var subnet netip.Prefix
	for i := range 250 {
		p := netip.MustParsePrefix(fmt.Sprintf("10.200.%d.0/24", 1+(pid+i)%250))
		if !subnetUsed(t, ip, p) {
			subnet = p
			break
		}
	}
	if !subnet.IsValid() {
		t.Fatal("no free 10.200.N.0/24 for the test network")
	}
	a := subnet.Addr().As4()
	at := func(b byte) netip.Addr { a[3] = b; return netip.AddrFrom4(a) }
	n.hostAddr, n.server, n.flooder, n.byHand = at(1), at(2), at(3), at(4)

	run(t, ip, "netns", "add", n.ns)
	t.Cleanup(func() {
		// The host side takes its peer with it; then the namespace (its
		// last process, the bouncer, has been waited for by now).
		_ = exec.Command(ip, "link", "del", n.host).Run()
		if out, err := exec.Command(ip, "netns", "del", n.ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", n.ns, err, out)
		}
	})
	run(t, ip, "link", "add", n.host, "type", "veth", "peer", "name", peer, "netns", n.ns)
	for _, src := range []netip.Addr{n.hostAddr, n.flooder, n.byHand} {
		run(t, ip, "addr", "add", src.String()+"/24", "dev", n.host)
	}
	run(t, ip, "link", "set", n.host, "up")
	run(t, ip, "-n", n.ns, "addr", "add", n.server.String()+"/24", "dev", peer)
	run(t, ip, "-n", n.ns, "link", "set", peer, "up")
	run(t, ip, "-n", n.ns, "link", "set", "lo", "up")
	return n
}

func subnetUsed(t *testing.T, ip string, p netip.Prefix) bool {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if addr, ok := netip.AddrFromSlice(ipn.IP); ok && p.Contains(addr.Unmap()) {
				return true
			}
		}
	}
	// Routes to it or inside it (ip route show root: prefixes within p).
	return strings.TrimSpace(run(t, ip, "-4", "route", "show", "root", p.String())) != ""
}

// listenIn opens a TCP listener inside the named network namespace: a
// thread is moved into it for the socket(2) and never comes back (the
// goroutine ends locked, so the runtime ends the thread).
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(filepath.Join("/var/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: err}
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			ch <- result{err: fmt.Errorf("setns: %w", err)}
			return
		}
		l, err := net.Listen("tcp", addr)
		ch <- result{l, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, r.err)
	}
	t.Cleanup(func() { r.l.Close() })
	go func() {
		for {
			c, err := r.l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("ok\n"))
			c.Close()
		}
	}()
	return r.l
}

// connect dials addr from src: "ok" (the server answered), "dropped" (no
// answer before the timeout: the SYN went nowhere), "refused" or the error.
func connect(src netip.Addr, addr string, timeout time.Duration) string {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: timeout}
	c, err := d.Dial("tcp", addr)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "dropped"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case err != nil:
		return err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "read: " + err.Error()
	}
	return strings.TrimSpace(line)
}

// syncBuffer is a bytes.Buffer written by a process and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

const fwTable, fwSet = "logtally-test", "logtally-test-banned"

// Debian's crowdsec-firewall-bouncer, in nftables mode inside a network
// namespace, enforces logtally's decisions on real packets: a source the
// detector bans has its SYNs dropped (timeouts, not refusals) while the
// others connect; removing one of two decisions on an address leaves it
// banned; a ban by hand drops its source until the unban, then it connects
// again.
func TestFirewallBouncerNftables(t *testing.T) {
	needRoot(t)
	bouncer := need(t, "crowdsec-firewall-bouncer")
	nft := need(t, "nft")
	ip := need(t, "ip")
	dir := t.TempDir()
	n := newTestNet(t, ip)

	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte(rulesYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	const key = "test-firewall-key"
	// HTTP on the veth address: the API for the test, the LAPI for the
	// bouncer in the namespace.
	a := apptest.Start(t, "-rules.file="+rules, "-decisions.bouncer-key="+key, "-detector.interval=200ms",
		"-http.addr="+n.hostAddr.String()+":0")
	base := "http://" + a.HTTPAddr().String()
	srv := listenIn(t, n.ns, n.server.String()+":0").Addr().String()

	cfg := fmt.Sprintf(`mode: nftables
pid_dir: %[1]s/
update_frequency: 200ms
daemonize: false
log_mode: stdout
log_dir: %[1]s/
log_level: info
api_url: %[2]s/
api_key: %[3]s
insecure_skip_verify: false
disable_ipv6: false
deny_action: DROP
deny_log: false
supported_decisions_types:
  - ban
blacklists_ipv4: %[5]s
blacklists_ipv6: %[5]s6
nftables:
  ipv4:
    enabled: true
    set-only: false
    table: %[4]s
    chain: %[4]s-input
  ipv6:
    enabled: true
    set-only: false
    table: %[4]s6
    chain: %[4]s6-input
prometheus:
  enabled: false
`, dir, base, key, fwTable, fwSet)
	cfgPath := filepath.Join(dir, "crowdsec-firewall-bouncer.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	cmd := exec.CommandContext(ctx, ip, "netns", "exec", n.ns, bouncer, "-c", cfgPath)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("bouncer output:\n%s", out.String())
		}
	})

	inNS := func(args ...string) (string, error) {
		b, err := exec.Command(ip, append([]string{"netns", "exec", n.ns, nft}, args...)...).CombinedOutput()
		return string(b), err
	}
	set := func() string {
		s, err := inNS("list", "set", "ip", fwTable, fwSet)
		if err != nil {
			t.Fatalf("nft list set: %v\n%s", err, s)
		}
		return s
	}
	inSet := func(a netip.Addr) bool { return strings.Contains(set(), a.String()+" ") }
	apptest.Eventually(t, "the bouncer's table, chain and set", 10*time.Second, func() bool {
		_, err := inNS("list", "chain", "ip", fwTable, fwTable+"-input")
		return err == nil
	})

	// A connection that is let through takes milliseconds; a dropped SYN
	// is retransmitted after 1 s, so 300 ms tells them apart.
	const okTimeout, dropTimeout = 5 * time.Second, 300 * time.Millisecond
	var attempts []string
	expect := func(phase string, src netip.Addr, want string, times int) {
		t.Helper()
		timeout := okTimeout
		if want == "dropped" {
			timeout = dropTimeout
		}
		for i := range times {
			if got := connect(src, srv, timeout); got != want {
				t.Fatalf("%s: attempt %d from %s: %s, want %s", phase, i+1, src, got, want)
			}
		}
		attempts = append(attempts, fmt.Sprintf("%s: %s %d/%d %s", phase, src, times, times, want))
	}
	all := []netip.Addr{n.hostAddr, n.flooder, n.byHand}
	for _, src := range all {
		expect("before any ban", src, "ok", 5)
	}

	// The detector: the flooder over the rule's threshold.
	apptest.SendAccessLines(t, a.Ingest.TCPAddr(), time.Now(), 120, n.flooder.String())
	var flood decisions.Decision
	apptest.Eventually(t, "the detector's decision", 10*time.Second, func() bool {
		for _, d := range getDecisions(t, base) {
			if d.Key == n.flooder.String()+"/32" && d.Rule == "http-flood" {
				flood = d
				return true
			}
		}
		return false
	})
	apptest.Eventually(t, "the bouncer to add the flooder to its set", 10*time.Second, func() bool { return inSet(n.flooder) })
	t.Logf("set after the detector's ban:\n%s", set())
	expect("detector ban", n.flooder, "dropped", 3)
	expect("detector ban", n.hostAddr, "ok", 5)
	expect("detector ban", n.byHand, "ok", 5)

	ban := func(addr netip.Addr, duration string) decisions.Decision {
		t.Helper()
		resp, err := http.Post(base+"/api/v1/decisions", "application/json",
			strings.NewReader(fmt.Sprintf(`{"key":%q,"duration":%q,"reason":"firewall test"}`, addr, duration)))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("ban %s: %v %v", addr, resp, err)
		}
		defer resp.Body.Close()
		var d decisions.Decision
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	unban := func(d decisions.Decision) {
		t.Helper()
		req, _ := http.NewRequest("DELETE", fmt.Sprintf("%s/api/v1/decisions/%d", base, d.ID), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("unban %d: %v %v", d.ID, resp, err)
		}
		resp.Body.Close()
	}
	// The bouncer logs "N decision(s) added" for each poll that brought
	// some, whether or not they changed its set.
	added := func() int { return strings.Count(out.String(), " added\"") }

	// Two decisions on the flooder: the detector's and one by hand, which
	// the bouncer is served (its set holds the address already). The unban
	// of the one by hand must leave the address in the set: the
	// detector's decision still bans it.
	before := added()
	extra := ban(n.flooder, "1h")
	apptest.Eventually(t, "the bouncer to get the second decision on the flooder", 10*time.Second, func() bool { return added() > before })
	unban(extra)

	// By hand, another source: once the bouncer has it, it has also had
	// every answer since the unban above.
	manual := ban(n.byHand, "10m")
	apptest.Eventually(t, "the bouncer to add the ban by hand", 10*time.Second, func() bool { return inSet(n.byHand) })
	if !inSet(n.flooder) {
		t.Fatalf("the bouncer removed %s though decision %d (%s) still bans it:\n%s", n.flooder, flood.ID, flood.Rule, set())
	}
	expect("one of its two decisions removed", n.flooder, "dropped", 3)
	expect("ban by hand", n.byHand, "dropped", 3)
	expect("ban by hand", n.hostAddr, "ok", 5)
	unban(manual)
	apptest.Eventually(t, "the bouncer to remove the unbanned address", 10*time.Second, func() bool { return !inSet(n.byHand) })
	expect("after the unban", n.byHand, "ok", 5)
	expect("after the unban", n.hostAddr, "ok", 5)
	expect("after the unban", n.flooder, "dropped", 3)

	chain, _ := inNS("list", "chain", "ip", fwTable, fwTable+"-input")
	if !strings.Contains(chain, "counter packets") || strings.Contains(chain, "counter packets 0 ") {
		t.Fatalf("the bouncer's rule counted no dropped packets:\n%s", chain)
	}
	t.Logf("bouncer chain:\n%s", chain)
	t.Logf("connect attempts:\n%s", strings.Join(attempts, "\n"))
}

package detector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logtally/logtally/internal/app"
	"github.com/logtally/logtally/internal/apptest"
	"github.com/logtally/logtally/internal/decisions"
	"github.com/logtally/logtally/internal/topology"
)

func writeRules(t testing.TB, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// active is the app's active decisions by key.
func active(a *app.App) map[string]decisions.Decision {
	out := map[string]decisions.Decision{}
	for _, d := range a.Detector.Store().Active(true) {
		out[d.Key] = d
	}
	return out
}

func keys(m map[string]decisions.Decision) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// A prefix rule bans the network whose IPs together pass the threshold,
// each of them staying below it, for IPv4 /24 and IPv6 /64; a network that
// holds an allow-listed address is not banned; an address rule over the
// same traffic bans nothing.
func TestPrefixRule(t *testing.T) {
	rules := writeRules(t, `allow: [192.0.2.7/32]
rules:
  - {name: net-flood, key: prefix, prefix_v4: 24, prefix_v6: 64, range: 5m, threshold: 100, ban: 10m}
  - {name: ip-flood, key: ip, range: 5m, threshold: 100, ban: 10m}
`)
	a := apptest.Start(t, "-rules.file="+rules, "-detector.interval=200ms")
	now := time.Now()
	apptest.SendAccessLines(t, a.Ingest.TCPAddr(), now, 60,
		"203.0.113.1", "203.0.113.2", "203.0.113.3", // 180 in the /24
		"198.51.100.200",                                         // 60 alone
		"2001:db8:5::1", "2001:db8:5::2", "2001:db8:5:0:ffff::3", // 180 in the /64
		"2001:db8:6::1",                       // another /64
		"192.0.2.5", "192.0.2.6", "192.0.2.7") // 180, but .7 is allowed
	want := map[string]uint64{"203.0.113.0/24": 180, "2001:db8:5::/64": 180}
	apptest.Eventually(t, "two network decisions", 30*time.Second, func() bool { return len(active(a)) >= 2 })
	time.Sleep(600 * time.Millisecond) // a few more evaluations: nothing else
	got := active(a)
	if len(got) != len(want) {
		t.Fatalf("decisions for %v, want %v", keys(got), want)
	}
	for k, n := range want {
		d, ok := got[k]
		// Decided as soon as the network passed 100, perhaps before all
		// its lines were counted.
		if !ok || d.Rule != "net-flood" || d.Count <= 100 || d.Count > n || d.Threshold != 100 {
			t.Fatalf("decision for %s: %+v (present %v), want a count in (100, %d] by net-flood", k, d, ok, n)
		}
		if d.Value() != k || d.Scope() != "Range" {
			t.Fatalf("%s served as %s %s", k, d.Scope(), d.Value())
		}
	}
	if v := apptest.Metric(t, a, "logtally_detector_decisions_total", "rule", "net-flood", "outcome", "allowed"); v == 0 {
		t.Error("the allowed network was not counted as allowed")
	}
}

// With more keys over the threshold than -detector.max-offenders and a
// budget of new decisions per evaluation, every key is still decided,
// exactly once, budget by budget, and both bounds show in their metrics.
func TestManyOffenders(t *testing.T) {
	const n = 3000
	rules := writeRules(t, "rules:\n  - {name: flood, key: ip, range: 5m, threshold: 1, ban: 10m}\n")
	a := apptest.Start(t, "-rules.file="+rules, "-detector.interval=200ms", "-detector.max-offenders=200", "-detector.max-new-per-run=500")
	ips := make([]string, n)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}).String()
	}
	apptest.SendAccessLines(t, a.Ingest.TCPAddr(), time.Now(), 2, ips...)
	apptest.Eventually(t, fmt.Sprintf("%d decisions", n), 2*time.Minute, func() bool { return len(active(a)) >= n })
	got := active(a)
	for _, ip := range ips {
		if d, ok := got[ip+"/32"]; !ok || d.Count != 2 {
			t.Fatalf("%s: %+v (present %v)", ip, d, ok)
		}
	}
	if len(got) != n {
		t.Fatalf("%d decisions, want %d", len(got), n)
	}
	if v := apptest.Metric(t, a, "logtally_detector_offenders_truncated_total", "rule", "flood"); v == 0 {
		t.Error("offenders_truncated_total is 0")
	}
	if v := apptest.Metric(t, a, "logtally_detector_rate_limited_total", "rule", "flood"); v == 0 {
		t.Error("rate_limited_total is 0")
	}
}

// history counts the audit stream's events by kind.
func history(t *testing.T, a *app.App) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := a.NATS().JS
	st, err := js.Stream(ctx, topology.DecisionsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(topology.DecisionsHistoryPrefix+">"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for subj, n := range info.State.Subjects {
		if n != 1 {
			t.Errorf("%s holds %d events, want 1", subj, n)
		}
		out[strings.Split(strings.TrimPrefix(subj, topology.DecisionsHistoryPrefix), ".")[0]] += int(n)
	}
	return out
}

// Two detector replicas record each decision once in the audit stream,
// and a decision whose record was lost (written to the bucket alone, as by
// a detector that crashed between the two) is recorded by the watches.
func TestAuditOncePerDecision(t *testing.T) {
	rules := writeRules(t, "rules:\n  - {name: flood, key: ip, range: 5m, threshold: 10, ban: 10m}\n")
	a := apptest.Start(t, "-rules.file="+rules, "-detector.interval=100ms", "-nats.embedded-listen=127.0.0.1:0")
	apptest.Start(t, "-target=detector", "-nats.url="+a.EmbeddedNATSURL(), "-rules.file="+rules, "-detector.interval=100ms")
	apptest.SendAccessLines(t, a.Ingest.TCPAddr(), time.Now(), 20, "203.0.113.1", "203.0.113.2", "203.0.113.3")
	apptest.Eventually(t, "3 decisions", 30*time.Second, func() bool { return len(active(a)) == 3 })
	d := active(a)["203.0.113.2/32"]
	ctx := context.Background()
	if _, err := a.Detector.Store().Delete(ctx, d.ID, "test"); err != nil {
		t.Fatal(err)
	}
	// The lost record: a decision in the bucket only.
	kv, err := a.NATS().JS.KeyValue(ctx, topology.DecisionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	lost, _ := json.Marshal(decisions.Decision{Rule: "flood", Key: "192.0.2.44/32", Count: 99, Threshold: 10, Origin: "logtally", By: "crashed", Created: time.Now().UTC(), Until: time.Now().Add(time.Hour).UTC()})
	if _, err := kv.Create(ctx, "d.flood.192_0_2_44-32", lost, jetstream.KeyTTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// 3 decisions, the one removed by hand made again (its key is still
	// over the threshold: the next episode), the lost one.
	want := map[string]int{"new": 5, "deleted": 1}
	apptest.Eventually(t, "the audit trail", 30*time.Second, func() bool {
		h := history(t, a)
		return h["new"] == want["new"] && h["deleted"] == want["deleted"]
	})
	time.Sleep(500 * time.Millisecond) // more evaluations by both replicas
	if h := history(t, a); len(h) != 2 || h["new"] != 5 || h["deleted"] != 1 {
		t.Fatalf("audit trail %v, want %v", h, want)
	}
}

// A key that stays over its threshold after each ban ends is banned again,
// each time for twice as long: episodes thin out geometrically instead of
// a ban/unban every evaluation.
func TestNoBanStorm(t *testing.T) {
	rules := writeRules(t, "rules:\n  - {name: flap, key: ip, range: 5m, threshold: 10, ban: 1s, escalation: {factor: 2, max: 1h}}\n")
	a := apptest.Start(t, "-rules.file="+rules, "-detector.interval=100ms")
	apptest.SendAccessLines(t, a.Ingest.TCPAddr(), time.Now(), 11, "203.0.113.9")
	start := time.Now()
	apptest.Eventually(t, "the first ban", 30*time.Second, func() bool { return len(active(a)) == 1 })
	var bans []time.Duration
	seen := map[uint64]bool{}
	for time.Since(start) < 8*time.Second {
		for _, d := range a.Detector.Store().Active(true) {
			if !seen[d.ID] {
				seen[d.ID] = true
				bans = append(bans, d.Until.Sub(d.Created))
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	// 1s, 2s, 4s (then 8s): at most 4 episodes in 8 s of 80 evaluations.
	if len(bans) < 3 || len(bans) > 4 {
		t.Fatalf("%d bans in 8 s: %v", len(bans), bans)
	}
	for i, b := range bans {
		if want := time.Second << i; b != want {
			t.Fatalf("ban %d lasted %s, want %s (all: %v)", i, b, want, bans)
		}
	}
}

// Switching the rules from simulate to enforce decides for real the keys
// that only had a simulated decision, as first offences.
func TestSimulateThenEnforce(t *testing.T) {
	const body = "rules:\n  - {name: flood, key: ip, range: 5m, threshold: 10, ban: 10m}\n"
	rules := writeRules(t, "mode: simulate\n"+body)
	a := apptest.Start(t, "-rules.file="+rules, "-detector.interval=100ms")
	apptest.SendAccessLines(t, a.Ingest.TCPAddr(), time.Now(), 20, "203.0.113.70")
	apptest.Eventually(t, "a simulated decision", 30*time.Second, func() bool {
		d, ok := active(a)["203.0.113.70/32"]
		return ok && d.Simulated
	})
	tmp := rules + ".tmp"
	if err := os.WriteFile(tmp, []byte("mode: enforce\n"+body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, rules); err != nil {
		t.Fatal(err)
	}
	var d decisions.Decision
	apptest.Eventually(t, "the enforced decision", 30*time.Second, func() bool {
		var ok bool
		d, ok = active(a)["203.0.113.70/32"]
		return ok && !d.Simulated
	})
	if d.Offence != 0 || d.Until.Sub(d.Created) != 10*time.Minute {
		t.Fatalf("enforced decision %+v: want a first offence of 10m", d)
	}
	if n := len(a.Detector.Store().Active(true)); n != 1 {
		t.Fatalf("%d active decisions, want 1", n)
	}
}

// Package bouncers runs the real bouncers operators use against logtally's
// decisions: rules over real counts, decided by the detector, enforced by
// the bouncer.
package bouncers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logtally/logtally/internal/apptest"
	"github.com/logtally/logtally/internal/decisions"
)

const rulesYAML = `mode: enforce
allow:
  - 198.51.100.0/28
rules:
  - name: http-flood
    key: ip
    range: 1m
    threshold: 50
    ban: 10m
    class: requests
`

// need finds a program or, in CI, fails.
func need(t *testing.T, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI (.ci/run installs it): %v", prog, err)
		}
		t.Skipf("%s not installed (apt-get install %s)", prog, prog)
	}
	return p
}

func getDecisions(t *testing.T, base string) []decisions.Decision {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/decisions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Items []decisions.Decision }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Items
}

// The detector bans the IP over the rule's threshold (once, with two
// detector replicas), not the allow-listed one nor the one below it;
// Debian's crowdsec-custom-bouncer, polling logtally's LAPI-compatible
// stream, adds the ban, removes it after an unban, and adds the
// escalated ban of the next episode.
func TestCrowdsecCustomBouncer(t *testing.T) {
	bouncer := need(t, "crowdsec-custom-bouncer")
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte(rulesYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	const key = "test-bouncer-key-1"
	a := apptest.Start(t, "-rules.file="+rules, "-decisions.bouncer-key=other-key,"+key, "-detector.interval=200ms", "-nats.embedded-listen=127.0.0.1:0")
	// A second detector replica on the same NATS.
	apptest.Start(t, "-target=detector", "-nats.url="+a.EmbeddedNATSURL(), "-rules.file="+rules, "-detector.interval=200ms")
	base := "http://" + a.HTTPAddr().String()

	// The bouncer calls its binary with add|del IP SECONDS SCENARIO JSON.
	calls := filepath.Join(dir, "calls.log")
	script := filepath.Join(dir, "record.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 $2 $4\" >> "+calls+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`bin_path: %s
feed_via_stdin: false
scenarios_containing: []
scenarios_not_containing: []
origins: []
piddir: %s
update_frequency: 200ms
cache_retention_duration: 1s
daemonize: false
log_mode: stdout
log_level: info
api_url: %s/
api_key: %s
prometheus:
  enabled: false
`, script, dir, base, key)
	cfgPath := filepath.Join(dir, "bouncer.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bouncer, "-c", cfgPath)
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

	tcp := a.Ingest.TCPAddr()
	apptest.SendAccessLines(t, tcp, time.Now(), 120, "203.0.113.66") // over 50
	apptest.SendAccessLines(t, tcp, time.Now(), 120, "198.51.100.5") // over, but allowed
	apptest.SendAccessLines(t, tcp, time.Now(), 50, "192.0.2.9")     // not above 50

	var first decisions.Decision
	apptest.Eventually(t, "a decision for 203.0.113.66", 30*time.Second, func() bool {
		ds := getDecisions(t, base)
		if len(ds) == 1 {
			first = ds[0]
		}
		return len(ds) == 1
	})
	if first.Key != "203.0.113.66/32" || first.Rule != "http-flood" || first.Count != 120 || first.Threshold != 50 || first.Offence != 0 {
		t.Fatalf("decision %+v", first)
	}
	if ban := first.Until.Sub(first.Created); ban != 10*time.Minute {
		t.Fatalf("first ban lasts %s, want 10m", ban)
	}
	readCalls := func() string { b, _ := os.ReadFile(calls); return string(b) }
	apptest.Eventually(t, "the bouncer to add the ban", 30*time.Second, func() bool {
		return strings.Contains(readCalls(), "add 203.0.113.66 ")
	})
	// Several evaluations by two replicas later, still one decision.
	time.Sleep(time.Second)
	if ds := getDecisions(t, base); len(ds) != 1 {
		t.Fatalf("%d decisions after more evaluations by two detectors, want 1: %+v", len(ds), ds)
	}

	// Wrong key: 403, as CrowdSec's LAPI answers.
	req, _ := http.NewRequest("GET", base+"/v1/decisions/stream?startup=true", nil)
	req.Header.Set("X-Api-Key", "wrong")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("wrong key: %v %v, want 403", resp, err)
	}
	// A ban by hand of an allow-listed address is refused with the reason.
	resp, err := http.Post(base+"/api/v1/decisions", "application/json", strings.NewReader(`{"key":"198.51.100.3","duration":"1h","reason":"test"}`))
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("manual ban of an allowed address: %v %v, want 403", resp, err)
	}

	// Unban: the bouncer deletes it; the key is still over the threshold,
	// so the next episode bans it again, escalated (factor 2).
	req, _ = http.NewRequest("DELETE", fmt.Sprintf("%s/api/v1/decisions/%d", base, first.ID), nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("unban: %v %v", resp, err)
	}
	apptest.Eventually(t, "the bouncer to delete the ban", 30*time.Second, func() bool {
		return strings.Contains(readCalls(), "del 203.0.113.66 ")
	})
	var second decisions.Decision
	apptest.Eventually(t, "the next episode's decision", 30*time.Second, func() bool {
		ds := getDecisions(t, base)
		if len(ds) == 1 && ds[0].ID != first.ID {
			second = ds[0]
			return true
		}
		return false
	})
	if second.Offence != 1 || second.Until.Sub(second.Created) != 20*time.Minute {
		t.Fatalf("second decision %+v: want offence 1 and a 20m ban", second)
	}
	apptest.Eventually(t, "the bouncer to add the escalated ban", 30*time.Second, func() bool {
		return strings.Count(readCalls(), "add 203.0.113.66 ") == 2
	})
	if c := readCalls(); strings.Contains(c, "198.51.100.5") || strings.Contains(c, "192.0.2.9") {
		t.Fatalf("the bouncer was told about an allowed or innocent address:\n%s", c)
	}
}

package chartcheck

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// nats.sync and nats.syncInterval: the chart's NATS gets them as
// `jetstream { sync_interval: ... }`, the all-in-one embedded server as
// -nats.sync / -nats.sync-interval.

// syncInterval is the sync_interval inside the jetstream block of nats.conf
// ("" when there is none).
func syncInterval(t *testing.T, conf string) string {
	t.Helper()
	block := regexp.MustCompile(`(?ms)^jetstream \{\n(.*?)^\}`).FindStringSubmatch(conf)
	if block == nil {
		t.Fatalf("nats.conf has no jetstream block:\n%s", conf)
	}
	m := regexp.MustCompile(`(?m)^\s*sync_interval:\s*(\S+)\s*$`).FindAllStringSubmatch(block[1], -1)
	if len(m) > 1 {
		t.Fatalf("nats.conf sets sync_interval %d times:\n%s", len(m), block[1])
	}
	if m == nil {
		return ""
	}
	return m[0][1]
}

// syncArgs are the -nats.sync* arguments of a Deployment.
func syncArgs(d Object) []string {
	var out []string
	for _, a := range args(d) {
		if strings.HasPrefix(a, "-nats.sync") {
			out = append(out, a)
		}
	}
	return out
}

func TestNATSSyncDefault(t *testing.T) {
	// The committed values files keep the NATS default: every 2 minutes.
	for _, r := range []string{"cluster", "production", "all-features"} {
		if got := syncInterval(t, natsConf(t, load(t, r))); got != "2m" {
			t.Errorf("%s: jetstream sync_interval %q, want 2m", r, got)
		}
	}
	for _, r := range allInOne {
		d := ofKind(load(t, r), "Deployment")[0]
		if got, want := strings.Join(syncArgs(d), " "), "-nats.sync=interval -nats.sync-interval=2m"; got != want {
			t.Errorf("%s: %s sync arguments %q, want %q", r, d.Key(), got, want)
		}
	}
	for _, r := range clusterRenders {
		for _, d := range logtallyDeployments(load(t, r)) {
			if a := syncArgs(d); a != nil {
				t.Errorf("%s: %s (no embedded server) gets %v", r, d.Key(), a)
			}
		}
	}
}

func TestNATSSyncValues(t *testing.T) {
	for _, c := range []struct {
		set      []string
		interval string // sync_interval of the chart's NATS
		args     string // -nats.sync* of the all-in-one container
	}{
		{sets("nats.sync=always"), "always", "-nats.sync=always"},
		{sets("nats.sync=always", "nats.syncInterval=10s"), "always", "-nats.sync=always"},
		{sets("nats.sync=interval", "nats.syncInterval=30s"), "30s", "-nats.sync=interval -nats.sync-interval=30s"},
		{sets("nats.syncInterval=500ms"), "500ms", "-nats.sync=interval -nats.sync-interval=500ms"},
	} {
		objs, err := helmTemplate(t, c.set...)
		if err != nil {
			t.Fatalf("%v: %v", c.set, err)
		}
		conf := natsConf(t, objs)
		if got := syncInterval(t, conf); got != c.interval {
			t.Errorf("%v: jetstream sync_interval %q, want %q", c.set, got, c.interval)
		}
		for _, d := range logtallyDeployments(objs) {
			if a := syncArgs(d); a != nil {
				t.Errorf("%v: %s (no embedded server) gets %v", c.set, d.Key(), a)
			}
		}
		natsServerAccepts(t, conf)

		objs, err = helmTemplate(t, append(sets("allInOne.enabled=true"), c.set...)...)
		if err != nil {
			t.Fatalf("allInOne %v: %v", c.set, err)
		}
		d := ofKind(objs, "Deployment")[0]
		if got := strings.Join(syncArgs(d), " "); got != c.args {
			t.Errorf("allInOne %v: sync arguments %q, want %q", c.set, got, c.args)
		}
		for _, cm := range ofKind(objs, "ConfigMap") {
			if _, ok := Get(cm, "data", "nats.conf").(string); ok {
				t.Errorf("allInOne %v: renders %s", c.set, cm.Key())
			}
		}
	}
	// nats.external.url: no server of the chart's to configure, and the
	// stages' flags are not passed (they only configure the embedded server).
	objs, err := helmTemplate(t, sets("nats.external.url=nats://nats:4222", "nats.sync=always")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range logtallyDeployments(objs) {
		if a := syncArgs(d); a != nil {
			t.Errorf("external NATS: %s gets %v", d.Key(), a)
		}
	}
}

func TestNATSSyncValueErrors(t *testing.T) {
	for _, c := range []struct {
		set  []string
		want string
	}{
		{sets("nats.sync=sometimes"), "nats/sync"},
		{sets("nats.sync=Always"), "nats/sync"},
		{sets("nats.syncInterval=0s"), "nats/syncInterval"},
		{sets("nats.syncInterval=2"), "nats/syncInterval"},
		{sets("nats.syncInterval=two minutes"), "nats/syncInterval"},
		{sets("nats.syncInterval="), "nats/syncInterval"},
	} {
		_, err := helmTemplate(t, c.set...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.set, err, c.want)
		}
	}
}

// natsServerAccepts runs `nats-server -t` (check the config and exit) of the
// main module's go.mod on a rendered nats.conf, when go can build it
// (skipped with CHARTCHECK_E2E=0, like the end-to-end test).
func natsServerAccepts(t *testing.T, conf string) {
	t.Helper()
	if os.Getenv("CHARTCHECK_E2E") == "0" {
		return
	}
	tmp := t.TempDir()
	file := filepath.Join(tmp, "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "github.com/nats-io/nats-server/v2", "-t", "-c", file)
	cmd.Dir = "../.." // the main module: its go.mod pins nats-server
	cmd.Env = append(os.Environ(), "SERVER_NAME=logtally-nats-0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("nats-server -t rejects the rendered nats.conf: %v\n%s\n%s", err, out, conf)
	}
}

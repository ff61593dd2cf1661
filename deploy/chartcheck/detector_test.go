package chartcheck

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The detector stage, the rules file and the decisions settings: a
// Deployment without HPA, the rules ConfigMap mounted as a directory into
// the detector and query pods (all-in-one: the pod), -rules.file pointing at
// it, no pod template that changes with the rules, NetworkPolicies with the
// webhook's egress, and rules files that the binary's own parser accepts.

const rulesDir = "/etc/logtally-rules"

var detectorReplicas = map[string]int64{"cluster": 1, "production": 2, "all-features": 3, "external-nats": 2}

// readsRules is whether a component's pods get the rules file.
func readsRules(comp string) bool {
	return comp == "detector" || comp == "query" || comp == "allinone"
}

func TestDetectorDeployment(t *testing.T) {
	for _, r := range clusterRenders {
		objs := load(t, r)
		d := byComponent(objs, "Deployment", "detector")
		if d == nil {
			t.Fatalf("%s: no detector Deployment", r)
		}
		if got := Get(d, "spec", "replicas"); got != detectorReplicas[r] {
			t.Errorf("%s: detector replicas %v, want %d", r, got, detectorReplicas[r])
		}
		if h := byComponent(objs, "HorizontalPodAutoscaler", "detector"); h != nil {
			t.Errorf("%s: the detector has an HPA; its replicas do not share work", r)
		}
		if byComponent(objs, "PodDisruptionBudget", "detector") == nil {
			t.Errorf("%s: no detector PDB", r)
		}
		svc := byComponent(objs, "Service", "detector")
		if svc == nil {
			t.Fatalf("%s: no detector Service (metrics)", r)
		}
		if got, want := servicePorts(t, objs, svc), map[portSpec]bool{{8080, "TCP"}: true}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: detector Service ports %v", r, got)
		}
		if ports := list(Get(podSpec(d), "containers", 0, "ports")); len(ports) != 1 || str(Get(ports[0], "name")) != "http" {
			t.Errorf("%s: detector container ports %v, want http only", r, ports)
		}
	}
	objs := load(t, "all-features")
	if byComponent(objs, "ServiceMonitor", "detector") == nil {
		t.Errorf("all-features: no detector ServiceMonitor")
	}
	if got := Get(podSpec(byComponent(objs, "Deployment", "detector")), "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution"); got == nil {
		t.Errorf("all-features: detector podAntiAffinity hard not rendered")
	}
	if got := Get(byComponent(objs, "PodDisruptionBudget", "detector"), "spec", "minAvailable"); got != int64(1) {
		t.Errorf("all-features: detector PDB minAvailable %v, want 1", got)
	}
	if !hasArg(byComponent(objs, "Deployment", "detector"), "-detector.max-new-per-run=500") {
		t.Errorf("all-features: detector extraArgs not passed")
	}
	if cfg := flat(stageConfig(t, objs, byComponent(objs, "Deployment", "detector"))); cfg["detector.interval"] != "2s" {
		t.Errorf("all-features: detector.config not merged: %v", cfg)
	}
}

// TestRulesMounts: the rules ConfigMap is a directory mount (a subPath mount
// would never see the kubelet's ..data swap) of the pods that read it, and
// -rules.file names its rules.yaml; no other pod gets either.
func TestRulesMounts(t *testing.T) {
	for _, r := range allRenders() {
		objs := load(t, r)
		cm := find(objs, "ConfigMap", "logtally-rules")
		if cm == nil {
			t.Fatalf("%s: no ConfigMap logtally-rules", r)
		}
		if _, ok := Get(cm, "data", "rules.yaml").(string); !ok {
			t.Errorf("%s: logtally-rules has no rules.yaml", r)
		}
		n := 0
		for _, d := range logtallyDeployments(objs) {
			comp := component(d)
			ps := podSpec(d)
			c := Get(ps, "containers", 0)
			cfg := flat(stageConfig(t, objs, d))
			var mount any
			for _, m := range list(Get(c, "volumeMounts")) {
				if str(Get(volume(ps, str(Get(m, "name"))), "configMap", "name")) == "logtally-rules" {
					mount = m
				}
			}
			if !readsRules(comp) {
				if mount != nil || cfg["rules.file"] != "" {
					t.Errorf("%s: %s gets the rules file", r, d.Key())
				}
				continue
			}
			n++
			if mount == nil {
				t.Errorf("%s: %s does not mount logtally-rules", r, d.Key())
				continue
			}
			if str(Get(mount, "mountPath")) != rulesDir || Get(mount, "subPath") != nil || Get(mount, "readOnly") != true {
				t.Errorf("%s: %s mounts the rules as %v: want the directory %s, read-only, no subPath", r, d.Key(), mount, rulesDir)
			}
			if cfg["rules.file"] != rulesDir+"/rules.yaml" {
				t.Errorf("%s: %s rules.file %q", r, d.Key(), cfg["rules.file"])
			}
			for k := range Get(d, "spec", "template", "metadata", "annotations").(map[string]any) {
				if strings.HasPrefix(k, "checksum/") && strings.Contains(k, "rules") {
					t.Errorf("%s: %s has annotation %s: a rules change would restart it", r, d.Key(), k)
				}
			}
		}
		if want := map[bool]int{true: 1, false: 2}[strings.HasPrefix(r, "small") || strings.HasPrefix(r, "allinone")]; n != want {
			t.Errorf("%s: %d Deployments read the rules, want %d", r, n, want)
		}
	}
}

// TestRulesChangeDoesNotRollPods: only the ConfigMap changes with the rules;
// the binary reloads it.
func TestRulesChangeDoesNotRollPods(t *testing.T) {
	for _, aio := range []bool{false, true} {
		base := sets("query.decisions.bouncerKeys[0]=k-one")
		if aio {
			base = append(base, sets("allInOne.enabled=true")...)
		}
		a, err := helmTemplate(t, base...)
		if err != nil {
			t.Fatal(err)
		}
		b, err := helmTemplate(t, append(base, sets("detector.rules.rules[0].name=x", "detector.rules.rules[0].range=1m",
			"detector.rules.rules[0].threshold=10", "detector.rules.rules[0].ban=1m")...)...)
		if err != nil {
			t.Fatal(err)
		}
		ka, kb := keyed(t, a), keyed(t, b)
		for key, oa := range ka {
			same := reflect.DeepEqual(map[string]any(oa), map[string]any(kb[key]))
			if key == "ConfigMap/logtally-rules" {
				if same {
					t.Errorf("all-in-one %v: the rules ConfigMap did not change", aio)
				}
			} else if !same {
				t.Errorf("all-in-one %v: %s changes with the rules", aio, key)
			}
		}
	}
}

func egressPorts(np Object) [][]string {
	var out [][]string
	for _, e := range list(Get(np, "spec", "egress")) {
		var ps []string
		for _, p := range list(Get(e, "ports")) {
			ps = append(ps, str(Get(p, "port"))+"/"+str(Get(p, "protocol")))
		}
		out = append(out, ps)
	}
	return out
}

func TestDetectorNetworkPolicies(t *testing.T) {
	for r, want := range map[string][][]string{
		"production":            {{"53/UDP", "53/TCP"}, {"4222/TCP"}},
		"all-features":          {{"53/UDP", "53/TCP"}, {"4222/TCP"}, {"443/TCP", "8443/TCP"}},
		"external-nats":         {{"53/UDP", "53/TCP"}, {"4222/TCP"}, {"443/TCP"}},
		"allinone-all-features": {{"53/UDP", "53/TCP"}, {"443/TCP"}, {"5432/TCP"}}, // and the export stage's PostgreSQL
	} {
		objs := load(t, r)
		comp := "detector"
		if strings.HasPrefix(r, "allinone") {
			comp = "allinone"
		}
		np := byComponent(objs, "NetworkPolicy", comp)
		if np == nil {
			t.Fatalf("%s: no NetworkPolicy of %s", r, comp)
		}
		if got := egressPorts(np); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %s egress ports %v, want %v", r, comp, got, want)
		}
		if r == "all-features" {
			if got := str(Get(np, "spec", "egress", 2, "to", 0, "ipBlock", "cidr")); got != "198.51.100.0/24" {
				t.Errorf("all-features: webhook egress to %q", got)
			}
			// No ingress but /metrics from the monitoring namespaces.
			in := list(Get(np, "spec", "ingress"))
			if len(in) != 1 || str(Get(in[0], "ports", 0, "port")) != "http" || Get(in[0], "from", 0, "namespaceSelector") == nil {
				t.Errorf("all-features: detector ingress %v", in)
			}
		}
		// Other stages get no webhook egress.
		for _, other := range []string{"ingest", "parser", "aggregator", "query"} {
			if o := byComponent(objs, "NetworkPolicy", other); o != nil && len(egressPorts(o)) != 2 {
				t.Errorf("%s: %s egress %v", r, other, egressPorts(o))
			}
		}
		// The detector is a client of the chart's NATS.
		if nats := byComponent(objs, "NetworkPolicy", "nats"); nats != nil {
			var client bool
			for _, p := range list(Get(nats, "spec", "ingress", 0, "from")) {
				client = client || str(Get(p, "podSelector", "matchLabels", "app.kubernetes.io/component")) == "detector"
			}
			if !client {
				t.Errorf("%s: NATS does not admit the detector", r)
			}
		}
	}
}

// rulesChecker is a program of the main module's detector package: it runs
// ParseRules (what -rules.file is read with) on the files it is given.
const rulesChecker = `package main

import (
	"fmt"
	"os"

	"github.com/logtally/logtally/services/detector"
)

func main() {
	rc := 0
	for _, f := range os.Args[1:] {
		b, err := os.ReadFile(f)
		if err == nil {
			var r *detector.Rules
			if r, err = detector.ParseRules(f, b); err == nil {
				fmt.Printf("%s: mode %s, %d allow entries, %d rules\n", f, r.Mode, len(r.Allow), len(r.Rules))
				continue
			}
		}
		fmt.Println(err)
		rc = 1
	}
	os.Exit(rc)
}
`

// buildRulesChecker builds rulesChecker in a module of its own that
// replaces github.com/logtally/logtally with this tree.
func buildRulesChecker(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	mod := t.TempDir()
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(mod, "go.sum"), string(sum))
	goVersion := strings.Fields(strings.SplitN(readFile(t, filepath.Join(root, "go.mod")), "\ngo ", 2)[1])[0]
	writeFile(t, filepath.Join(mod, "go.mod"), "module rulescheck\n\ngo "+goVersion+"\n\nrequire github.com/logtally/logtally v0.0.0\n\nreplace github.com/logtally/logtally => "+root+"\n")
	writeFile(t, filepath.Join(mod, "main.go"), rulesChecker)
	exe := filepath.Join(mod, "rulescheck")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-mod=mod", "-o", exe, ".")
	cmd.Dir = mod
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the rules checker: %v\n%s", err, out)
	}
	return exe
}

// TestRulesFilesParse: the rules.yaml of every render (and of text and
// mapping forms the ci files leave out) is accepted by the binary's parser,
// so no pod starts with a rules file it refuses.
func TestRulesFilesParse(t *testing.T) {
	dir(t)
	exe := buildRulesChecker(t)
	tmp := t.TempDir()
	var files []string
	add := func(name string, objs []Object) {
		cm := find(objs, "ConfigMap", "logtally-rules")
		if cm == nil {
			t.Fatalf("%s: no ConfigMap logtally-rules", name)
		}
		f := filepath.Join(tmp, name+".yaml")
		writeFile(t, f, str(Get(cm, "data", "rules.yaml")))
		files = append(files, f)
	}
	for _, r := range allRenders() {
		add(r, load(t, r))
	}
	// The commented example of the default file, uncommented.
	// (the lines after the first bare "#")
	var example []string
	started := false
	for _, l := range strings.Split(str(Get(find(load(t, "cluster"), "ConfigMap", "logtally-rules"), "data", "rules.yaml")), "\n") {
		if l == "#" {
			started = true
		} else if rest, ok := strings.CutPrefix(l, "# "); ok && started {
			example = append(example, rest)
		}
	}
	if len(example) < 10 {
		t.Fatalf("default rules.yaml: example of %d lines", len(example))
	}
	ex := filepath.Join(tmp, "example.yaml")
	writeFile(t, ex, strings.Join(example, "\n")+"\n")
	files = append(files, ex)
	// Numbers from a values file (float64 in Helm) stay what they were.
	vf := filepath.Join(tmp, "big-values.yaml")
	writeFile(t, vf, "detector:\n  rules:\n    rules:\n      - {name: big, range: 24h, threshold: 123456789012345, ban: 3650d, class: bytes, escalation: {factor: 1.5}}\n")
	objs, err := helmTemplate(t, "-f", vf)
	if err != nil {
		t.Fatal(err)
	}
	add("big-numbers", objs)
	out, err := exec.Command(exe, files...).CombinedOutput()
	if err != nil {
		t.Fatalf("rules files refused: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	for _, want := range []string{"all-features.yaml: mode enforce, 3 allow entries, 3 rules", "allinone-all-features.yaml: mode simulate, 0 allow entries, 1 rules",
		"cluster.yaml: mode enforce, 0 allow entries, 0 rules", "example.yaml: mode enforce, 1 allow entries, 2 rules", "big-numbers.yaml: mode enforce, 0 allow entries, 1 rules"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rules checker output lacks %q", want)
		}
	}
}

func TestRulesValueErrors(t *testing.T) {
	dir(t)
	tmp := t.TempDir()
	for _, c := range []struct {
		text string // --set-file detector.rules
		set  []string
		want string
	}{
		{text: "rules: [\n", want: "detector.rules is not a YAML mapping"},
		{text: "- name: x\n", want: "detector.rules is not a YAML mapping"},
		{text: "rulez: []\n", want: `unknown key "rulez"`},
		{set: sets("detector.rules.rules[0].name=Bad", "detector.rules.rules[0].range=1m", "detector.rules.rules[0].threshold=1", "detector.rules.rules[0].ban=1m"), want: "detector/rules"},
		{set: sets("detector.rules.rules[0].name=x", "detector.rules.rules[0].range=1m", "detector.rules.rules[0].threshold=1"), want: "missing property 'ban'"},
		{set: sets("detector.rules.rules[0].name=x", "detector.rules.rules[0].range=5", "detector.rules.rules[0].threshold=1", "detector.rules.rules[0].ban=1m"), want: "detector/rules/rules/0/range"},
		{set: sets("detector.rules.mode=dry-run"), want: "detector/rules/mode"},
		{set: sets("config.rules.file=/x"), want: "config.rules is set by the chart"},
	} {
		set := c.set
		if c.text != "" {
			f := filepath.Join(tmp, "rules.yaml")
			writeFile(t, f, c.text)
			set = []string{"--set-file", "detector.rules=" + f}
		}
		_, err := helmTemplate(t, set...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %q: error %v, want %q", c.set, c.text, err, c.want)
		}
	}
}

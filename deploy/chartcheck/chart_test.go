package chartcheck

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// Renders written by scripts/helm-check.sh into $CHARTCHECK_DIR, one file per
// values file (helm template output, tests included).
var (
	clusterRenders = []string{"cluster", "production", "all-features", "external-nats"}
	allInOne       = []string{"small", "allinone-all-features"}
	stages         = []string{"ingest", "parser", "aggregator", "query", "detector"}
)

// stagesOf lists the stages a cluster render runs: every stage, and export
// when export.enabled renders its Deployment.
func stagesOf(objs []Object) []string {
	out := append([]string{}, stages...)
	if byComponent(objs, "Deployment", "export") != nil {
		out = append(out, "export")
	}
	return out
}

func dir(t *testing.T) string {
	t.Helper()
	d := os.Getenv("CHARTCHECK_DIR")
	if d == "" {
		t.Skip("CHARTCHECK_DIR is not set: run scripts/helm-check.sh")
	}
	return d
}

func load(t *testing.T, name string) []Object {
	t.Helper()
	objs, err := ReadObjects(filepath.Join(dir(t), name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatalf("%s: no objects", name)
	}
	return objs
}

func find(objs []Object, kind, name string) Object {
	for _, o := range objs {
		if o.Kind() == kind && o.Name() == name {
			return o
		}
	}
	return nil
}

func ofKind(objs []Object, kind string) []Object {
	var out []Object
	for _, o := range objs {
		if o.Kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func component(o Object) string {
	s, _ := Get(o, "metadata", "labels", "app.kubernetes.io/component").(string)
	return s
}

func byComponent(objs []Object, kind, comp string) Object {
	for _, o := range ofKind(objs, kind) {
		if component(o) == comp {
			return o
		}
	}
	return nil
}

func list(v any) []any { l, _ := v.([]any); return l }

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// podSpec of a Deployment, StatefulSet or Pod.
func podSpec(o Object) map[string]any {
	if o.Kind() == "Pod" {
		m, _ := o["spec"].(map[string]any)
		return m
	}
	m, _ := Get(o, "spec", "template", "spec").(map[string]any)
	return m
}

func workloads(objs []Object) []Object {
	var out []Object
	for _, o := range objs {
		switch o.Kind() {
		case "Deployment", "StatefulSet", "Pod":
			out = append(out, o)
		}
	}
	return out
}

func args(d Object) []string {
	var out []string
	for _, a := range list(Get(podSpec(d), "containers", 0, "args")) {
		out = append(out, str(a))
	}
	return out
}

func hasArg(d Object, want string) bool {
	for _, a := range args(d) {
		if a == want {
			return true
		}
	}
	return false
}

// stageConfig decodes config.yaml of the ConfigMap mounted by a Deployment.
func stageConfig(t *testing.T, objs []Object, d Object) map[string]any {
	t.Helper()
	cm := str(Get(volume(podSpec(d), "config"), "configMap", "name"))
	o := find(objs, "ConfigMap", cm)
	if o == nil {
		t.Fatalf("%s: ConfigMap %q not found", d.Key(), cm)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(str(Get(o, "data", "config.yaml"))), &cfg); err != nil {
		t.Fatalf("%s: config.yaml: %v", o.Key(), err)
	}
	return cfg
}

// flatten turns the nested config into flag names, as internal/config does.
func flatten(prefix string, v any, out map[string]string) {
	if m, ok := v.(map[string]any); ok {
		for k, sub := range m {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			flatten(key, sub, out)
		}
		return
	}
	out[prefix] = str(v)
}

func flat(cfg map[string]any) map[string]string {
	out := map[string]string{}
	flatten("", cfg, out)
	return out
}

// containerPort finds a container port by name or number.
func containerPort(ps map[string]any, ref any) (int64, string, bool) {
	for _, c := range list(ps["containers"]) {
		for _, p := range list(Get(c, "ports")) {
			n, _ := Get(p, "containerPort").(int64)
			if str(Get(p, "name")) == str(ref) || fmt.Sprint(n) == str(ref) {
				proto := str(Get(p, "protocol"))
				if proto == "" {
					proto = "TCP"
				}
				return n, proto, true
			}
		}
	}
	return 0, "", false
}

func TestEveryStageHasItsDeployment(t *testing.T) {
	for _, r := range clusterRenders {
		objs := load(t, r)
		deps := ofKind(objs, "Deployment")
		if len(deps) != len(stagesOf(objs)) {
			t.Errorf("%s: %d Deployments, want %d", r, len(deps), len(stagesOf(objs)))
		}
		if (byComponent(objs, "Deployment", "export") != nil) != exportRenders[r] {
			t.Errorf("%s: export Deployment rendered: %v, want %v", r, !exportRenders[r], exportRenders[r])
		}
		for _, s := range stagesOf(objs) {
			d := byComponent(objs, "Deployment", s)
			if d == nil {
				t.Errorf("%s: no Deployment of %s", r, s)
				continue
			}
			if !hasArg(d, "-target="+s) || !hasArg(d, "-config.file=/etc/logtally/config.yaml") {
				t.Errorf("%s: %s args %v", r, d.Key(), args(d))
			}
			if ann := str(Get(d, "spec", "template", "metadata", "annotations", "checksum/config")); len(ann) != 64 {
				t.Errorf("%s: %s has no config checksum annotation", r, d.Key())
			}
		}
		// No PVC but the export stage's Parquet volume.
		for _, pvc := range ofKind(objs, "PersistentVolumeClaim") {
			if component(pvc) != "export" {
				t.Errorf("%s: cluster mode renders %s", r, pvc.Key())
			}
		}
	}
}

func TestNATSCluster(t *testing.T) {
	for _, r := range []string{"cluster", "production", "all-features"} {
		objs := load(t, r)
		sts := ofKind(objs, "StatefulSet")
		if len(sts) != 1 {
			t.Fatalf("%s: %d StatefulSets, want 1", r, len(sts))
		}
		s := sts[0]
		name := s.Name()
		if n, _ := Get(s, "spec", "replicas").(int64); n != 3 {
			t.Errorf("%s: NATS replicas %d, want 3", r, n)
		}
		headless := str(Get(s, "spec", "serviceName"))
		hs := find(objs, "Service", headless)
		if hs == nil || str(Get(hs, "spec", "clusterIP")) != "None" || Get(hs, "spec", "publishNotReadyAddresses") != true {
			t.Fatalf("%s: headless Service %q missing, not headless or not publishing unready pods", r, headless)
		}
		if !reflect.DeepEqual(Get(hs, "spec", "selector"), Get(s, "spec", "selector", "matchLabels")) {
			t.Errorf("%s: headless Service selector differs from the StatefulSet's", r)
		}
		// Routes: exactly the three pods through the headless Service.
		var conf string
		for _, v := range list(podSpec(s)["volumes"]) {
			if cm := find(objs, "ConfigMap", str(Get(v, "configMap", "name"))); cm != nil {
				conf = str(Get(cm, "data", "nats.conf"))
			}
		}
		routes := regexp.MustCompile(`nats://[^\s\]]+`).FindAllString(conf[strings.Index(conf, "routes"):], -1)
		var want []string
		for i := 0; i < 3; i++ {
			want = append(want, fmt.Sprintf("nats://%s-%d.%s:6222", name, i, headless))
		}
		if !reflect.DeepEqual(routes, want) {
			t.Errorf("%s: routes %v, want %v", r, routes, want)
		}
		for _, frag := range []string{"server_name: $SERVER_NAME", "store_dir: /data/jetstream", "http: 0.0.0.0:8222", "listen: 0.0.0.0:4222", "listen: 0.0.0.0:6222"} {
			if !strings.Contains(conf, frag) {
				t.Errorf("%s: nats.conf lacks %q", r, frag)
			}
		}
		ps := podSpec(s)
		c := Get(ps, "containers", 0)
		var serverName bool
		for _, e := range list(Get(c, "env")) {
			if str(Get(e, "name")) == "SERVER_NAME" && str(Get(e, "valueFrom", "fieldRef", "fieldPath")) == "metadata.name" {
				serverName = true
			}
		}
		if !serverName {
			t.Errorf("%s: SERVER_NAME is not the pod name", r)
		}
		for _, p := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
			path := str(Get(c, p, "httpGet", "path"))
			port, _, ok := containerPort(ps, Get(c, p, "httpGet", "port"))
			if path != "/healthz?js-enabled-only=true" || !ok || port != 8222 {
				t.Errorf("%s: NATS %s %s on port %d", r, p, path, port)
			}
		}
		if str(Get(s, "spec", "volumeClaimTemplates", 0, "metadata", "name")) != "data" {
			t.Errorf("%s: no data volumeClaimTemplate", r)
		}
		pdb := byComponent(objs, "PodDisruptionBudget", "nats")
		if pdb == nil || Get(pdb, "spec", "maxUnavailable") != int64(1) {
			t.Errorf("%s: NATS PDB missing or not maxUnavailable 1", r)
		}
		if Get(ps, "affinity", "podAntiAffinity") == nil {
			t.Errorf("%s: NATS has no pod anti-affinity", r)
		}
		// Every stage connects to the client Service at R3 (tls:// when the
		// server requires TLS).
		client := find(objs, "Service", name)
		if client == nil {
			t.Fatalf("%s: NATS client Service %q missing", r, name)
		}
		scheme := "nats"
		if strings.Contains(conf, "\ntls {") {
			scheme = "tls"
		}
		for _, s := range stagesOf(objs) {
			cfg := flat(stageConfig(t, objs, byComponent(objs, "Deployment", s)))
			if cfg["nats.url"] != fmt.Sprintf("%s://%s:4222", scheme, name) || cfg["nats.replicas"] != "3" {
				t.Errorf("%s: %s nats.url %q nats.replicas %q", r, s, cfg["nats.url"], cfg["nats.replicas"])
			}
		}
	}
	if objs := load(t, "production"); str(Get(podSpec(ofKind(objs, "StatefulSet")[0]), "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", 0, "topologyKey")) != "kubernetes.io/hostname" {
		t.Errorf("production: NATS anti-affinity is not required per node")
	}
}

func TestExternalNATS(t *testing.T) {
	objs := load(t, "external-nats")
	if ofKind(objs, "StatefulSet") != nil {
		t.Errorf("external NATS still renders a StatefulSet")
	}
	for _, s := range stagesOf(objs) {
		cfg := flat(stageConfig(t, objs, byComponent(objs, "Deployment", s)))
		if !strings.HasPrefix(cfg["nats.url"], "nats://nats-0.nats.example:4222,") {
			t.Errorf("%s: nats.url %q", s, cfg["nats.url"])
		}
	}
}

type portSpec struct {
	port  int64
	proto string
}

func servicePorts(t *testing.T, objs []Object, svc Object) map[portSpec]bool {
	t.Helper()
	// The workload the Service selects.
	var ps map[string]any
	for _, w := range workloads(objs) {
		if w.Kind() != "Pod" && reflect.DeepEqual(Get(svc, "spec", "selector"), Get(w, "spec", "selector", "matchLabels")) {
			ps = podSpec(w)
		}
	}
	if ps == nil {
		t.Fatalf("%s selects no workload", svc.Key())
	}
	out := map[portSpec]bool{}
	for _, p := range list(Get(svc, "spec", "ports")) {
		port, _ := Get(p, "port").(int64)
		proto := str(Get(p, "protocol"))
		cport, cproto, ok := containerPort(ps, Get(p, "targetPort"))
		if !ok || cport != port || cproto != proto {
			t.Errorf("%s: port %d/%s targets %v (container %d/%s)", svc.Key(), port, proto, Get(p, "targetPort"), cport, cproto)
		}
		out[portSpec{port, proto}] = true
	}
	return out
}

func TestPortsMatchTheBinary(t *testing.T) {
	wantIngest := map[portSpec]bool{{8080, "TCP"}: true, {8888, "TCP"}: true, {5514, "TCP"}: true, {5514, "UDP"}: true}
	wantQuery := map[portSpec]bool{{8080, "TCP"}: true, {9090, "TCP"}: true}
	for _, r := range clusterRenders {
		objs := load(t, r)
		if got := servicePorts(t, objs, byComponent(objs, "Service", "ingest")); !reflect.DeepEqual(got, wantIngest) {
			t.Errorf("%s: ingest Service ports %v", r, got)
		}
		if got := servicePorts(t, objs, byComponent(objs, "Service", "query")); !reflect.DeepEqual(got, wantQuery) {
			t.Errorf("%s: query Service ports %v", r, got)
		}
		for _, s := range stagesOf(objs) {
			cfg := flat(stageConfig(t, objs, byComponent(objs, "Deployment", s)))
			if cfg["http.addr"] != ":8080" {
				t.Errorf("%s: %s http.addr %q", r, s, cfg["http.addr"])
			}
		}
		ing := flat(stageConfig(t, objs, byComponent(objs, "Deployment", "ingest")))
		if ing["ingest.tcp.addr"] != ":8888" || ing["ingest.syslog.addr"] != ":5514" {
			t.Errorf("%s: ingest listen addresses %q %q", r, ing["ingest.tcp.addr"], ing["ingest.syslog.addr"])
		}
		if q := flat(stageConfig(t, objs, byComponent(objs, "Deployment", "query"))); q["grpc.addr"] != ":9090" {
			t.Errorf("%s: query grpc.addr %q", r, q["grpc.addr"])
		}
	}
	for _, r := range allInOne {
		objs := load(t, r)
		want := map[portSpec]bool{{8080, "TCP"}: true, {9090, "TCP"}: true, {8888, "TCP"}: true, {5514, "TCP"}: true, {5514, "UDP"}: true}
		if got := servicePorts(t, objs, byComponent(objs, "Service", "allinone")); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: all-in-one Service ports %v", r, got)
		}
	}
}

func logtallyDeployments(objs []Object) []Object {
	var out []Object
	for _, d := range ofKind(objs, "Deployment") {
		if str(Get(podSpec(d), "containers", 0, "name")) == "logtally" {
			out = append(out, d)
		}
	}
	return out
}

func TestProbesAndGracePeriod(t *testing.T) {
	for _, r := range append(append([]string{}, clusterRenders...), allInOne...) {
		objs := load(t, r)
		for _, d := range logtallyDeployments(objs) {
			ps := podSpec(d)
			c := Get(ps, "containers", 0)
			cfg := flat(stageConfig(t, objs, d))
			for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
				// Mutual TLS on the API: the kubelet has no client certificate,
				// so the probes only check that the port accepts connections.
				if cfg["api.tls.client-ca-file"] != "" {
					port, _, ok := containerPort(ps, Get(c, probe, "tcpSocket", "port"))
					if Get(c, probe, "httpGet") != nil || !ok || port != 8080 {
						t.Errorf("%s: %s %s with mutual TLS: want a tcpSocket check of 8080, got %v", r, d.Key(), probe, Get(c, probe))
					}
					continue
				}
				port, _, ok := containerPort(ps, Get(c, probe, "httpGet", "port"))
				if got := str(Get(c, probe, "httpGet", "path")); got != path || !ok || port != 8080 {
					t.Errorf("%s: %s %s = %s on %d, want %s on 8080", r, d.Key(), probe, got, port, path)
				}
				// HTTPS exactly when the binary serves TLS (-api.tls.cert-file).
				scheme, want := str(Get(c, probe, "httpGet", "scheme")), "HTTP"
				if scheme == "" {
					scheme = "HTTP"
				}
				if cfg["api.tls.cert-file"] != "" {
					want = "HTTPS"
				}
				if scheme != want {
					t.Errorf("%s: %s %s scheme %s, want %s", r, d.Key(), probe, scheme, want)
				}
			}
			timeout, err := time.ParseDuration(cfg["shutdown.timeout"])
			if err != nil {
				t.Fatalf("%s: %s shutdown.timeout: %v", r, d.Key(), err)
			}
			grace, _ := ps["terminationGracePeriodSeconds"].(int64)
			if time.Duration(grace)*time.Second <= timeout {
				t.Errorf("%s: %s terminationGracePeriodSeconds %d <= shutdown.timeout %s", r, d.Key(), grace, timeout)
			}
		}
	}
}

// quantity parses CPU and memory quantities well enough to compare them.
func quantity(t *testing.T, v any) float64 {
	s := str(v)
	mult := map[string]float64{"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
		"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
	for _, suf := range []string{"Ki", "Mi", "Gi", "Ti", "m", "k", "M", "G", "T"} {
		if strings.HasSuffix(s, suf) {
			f, err := strconv.ParseFloat(strings.TrimSuffix(s, suf), 64)
			if err != nil {
				t.Fatalf("quantity %q: %v", s, err)
			}
			return f * mult[suf]
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("quantity %q: %v", s, err)
	}
	return f
}

func TestHardeningAndResources(t *testing.T) {
	for _, r := range append(append([]string{}, clusterRenders...), allInOne...) {
		objs := load(t, r)
		for _, w := range workloads(objs) {
			ps := podSpec(w)
			for _, c := range list(ps["containers"]) {
				name := w.Key() + "/" + str(Get(c, "name"))
				sc := Get(c, "securityContext")
				checks := map[string]bool{
					"runAsNonRoot":             Get(sc, "runAsNonRoot") == true || Get(ps, "securityContext", "runAsNonRoot") == true,
					"allowPrivilegeEscalation": Get(sc, "allowPrivilegeEscalation") == false,
					"readOnlyRootFilesystem":   Get(sc, "readOnlyRootFilesystem") == true,
					"drop ALL":                 reflect.DeepEqual(Get(sc, "capabilities", "drop"), []any{"ALL"}),
					"seccomp RuntimeDefault":   str(Get(sc, "seccompProfile", "type")) == "RuntimeDefault" || str(Get(ps, "securityContext", "seccompProfile", "type")) == "RuntimeDefault",
				}
				if str(Get(c, "name")) == "logtally" {
					checks["runAsUser 65532"] = Get(sc, "runAsUser") == int64(65532)
				}
				for what, ok := range checks {
					if !ok {
						t.Errorf("%s: %s lacks %s", r, name, what)
					}
				}
				for _, res := range []string{"cpu", "memory"} {
					req, lim := Get(c, "resources", "requests", res), Get(c, "resources", "limits", res)
					if req == nil || lim == nil {
						t.Errorf("%s: %s has no %s request or limit", r, name, res)
						continue
					}
					if quantity(t, req) > quantity(t, lim) {
						t.Errorf("%s: %s %s request %v > limit %v", r, name, res, req, lim)
					}
				}
			}
		}
	}
}

func TestAllInOne(t *testing.T) {
	for _, r := range allInOne {
		objs := load(t, r)
		deps := ofKind(objs, "Deployment")
		if len(deps) != 1 {
			t.Fatalf("%s: %d Deployments, want 1", r, len(deps))
		}
		d := deps[0]
		if !hasArg(d, "-target=all") {
			t.Errorf("%s: args %v", r, args(d))
		}
		if Get(d, "spec", "replicas") != int64(1) || str(Get(d, "spec", "strategy", "type")) != "Recreate" {
			t.Errorf("%s: replicas %v strategy %v", r, Get(d, "spec", "replicas"), Get(d, "spec", "strategy", "type"))
		}
		for _, k := range []string{"StatefulSet", "HorizontalPodAutoscaler", "ScaledObject"} {
			if ofKind(objs, k) != nil {
				t.Errorf("%s: renders a %s", r, k)
			}
		}
		cfg := flat(stageConfig(t, objs, d))
		if cfg["nats.url"] != "" || cfg["nats.replicas"] != "1" || cfg["data.dir"] != "/data" {
			t.Errorf("%s: nats.url %q nats.replicas %q data.dir %q", r, cfg["nats.url"], cfg["nats.replicas"], cfg["data.dir"])
		}
		var claim string
		for _, v := range list(podSpec(d)["volumes"]) {
			if str(Get(v, "name")) == "data" {
				claim = str(Get(v, "persistentVolumeClaim", "claimName"))
			}
		}
		var mounted bool
		for _, m := range list(Get(podSpec(d), "containers", 0, "volumeMounts")) {
			mounted = mounted || (str(Get(m, "name")) == "data" && str(Get(m, "mountPath")) == "/data")
		}
		if claim == "" || !mounted {
			t.Errorf("%s: /data is not a mounted PVC (claim %q)", r, claim)
		}
		pvcs := ofKind(objs, "PersistentVolumeClaim")
		if r == "small" && (len(pvcs) != 1 || pvcs[0].Name() != claim) {
			t.Errorf("%s: PVCs %v, want exactly %q", r, pvcs, claim)
		}
	}
}

// flags lists the server flags of `logtally -h` (CHARTCHECK_FLAGS: its output).
func flags(t *testing.T) map[string]bool {
	path := os.Getenv("CHARTCHECK_FLAGS")
	if path == "" {
		t.Skip("CHARTCHECK_FLAGS is not set: run scripts/helm-check.sh")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	re := regexp.MustCompile(`^  -([a-z0-9][a-z0-9.-]*)`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = true
		}
	}
	if len(out) < 20 || !out["nats.url"] || !out["target"] {
		t.Fatalf("%s: only %d flags parsed", path, len(out))
	}
	return out
}

func TestConfigKeysAreFlags(t *testing.T) {
	known := flags(t)
	for _, r := range append(append([]string{}, clusterRenders...), allInOne...) {
		objs := load(t, r)
		n := 0
		for _, cm := range ofKind(objs, "ConfigMap") {
			doc, ok := Get(cm, "data", "config.yaml").(string)
			if !ok {
				continue
			}
			n++
			var cfg map[string]any
			if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
				t.Fatalf("%s: %s: %v", r, cm.Key(), err)
			}
			for k := range flat(cfg) {
				if !known[k] {
					t.Errorf("%s: %s: config key %q is not a flag of logtally", r, cm.Key(), k)
				}
			}
		}
		for _, d := range logtallyDeployments(objs) {
			for _, a := range args(d) {
				name := strings.SplitN(strings.TrimLeft(a, "-"), "=", 2)[0]
				if !known[name] {
					t.Errorf("%s: %s: argument %q is not a flag of logtally", r, d.Key(), a)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s: no config.yaml", r)
		}
	}
}

func TestAutoscaling(t *testing.T) {
	for _, r := range clusterRenders {
		objs := load(t, r)
		keda := map[string]bool{}
		for _, so := range ofKind(objs, "ScaledObject") {
			keda[component(so)] = true
			tr := Get(so, "spec", "triggers", 0)
			md := Get(tr, "metadata")
			if str(Get(tr, "type")) != "nats-jetstream" || str(Get(md, "account")) != "$G" ||
				str(Get(md, "stream")) != "LOGTALLY_RAW" || str(Get(md, "consumer")) != "parser" || str(Get(md, "lagThreshold")) == "" {
				t.Errorf("%s: %s trigger %v", r, so.Key(), tr)
			}
			if sts := ofKind(objs, "StatefulSet"); sts != nil {
				want := fmt.Sprintf("%s.%s.svc.cluster.local:8222", str(Get(sts[0], "spec", "serviceName")), str(Get(so, "metadata", "namespace")))
				if got := str(Get(md, "natsServerMonitoringEndpoint")); got != want {
					t.Errorf("%s: KEDA endpoint %q, want %q", r, got, want)
				}
			}
		}
		for _, h := range ofKind(objs, "HorizontalPodAutoscaler") {
			if h.APIVersion() != "autoscaling/v2" || str(Get(h, "spec", "metrics", 0, "resource", "name")) != "cpu" {
				t.Errorf("%s: %s is not an autoscaling/v2 CPU HPA", r, h.Key())
			}
			if keda[component(h)] {
				t.Errorf("%s: %s has both an HPA and a ScaledObject", r, component(h))
			}
			if component(h) == "aggregator" && Get(h, "spec", "maxReplicas").(int64) > 32 {
				t.Errorf("%s: more aggregators than partitions", r)
			}
		}
	}
}

func TestStandardLabels(t *testing.T) {
	want := []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
		"app.kubernetes.io/component", "app.kubernetes.io/managed-by", "helm.sh/chart"}
	for _, r := range append(append([]string{}, clusterRenders...), allInOne...) {
		for _, o := range load(t, r) {
			for _, l := range want {
				if str(Get(o, "metadata", "labels", l)) == "" {
					t.Errorf("%s: %s lacks label %s", r, o.Key(), l)
				}
			}
		}
	}
}

func keyed(t *testing.T, objs []Object) map[string]Object {
	out := map[string]Object{}
	for _, o := range objs {
		if _, dup := out[o.Key()]; dup {
			t.Errorf("%s twice", o.Key())
		}
		out[o.Key()] = o
	}
	return out
}

// TestKustomizeMatchesHelm: `kustomize build` of deploy/k8s yields the chart's
// objects (managed-by aside).
func TestKustomizeMatchesHelm(t *testing.T) {
	for helm, kust := range map[string]string{"cluster-notests": "kustomize-base", "production-notests": "kustomize-production"} {
		h, k := keyed(t, load(t, helm)), keyed(t, load(t, kust))
		var keys []string
		for key := range h {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			ho := h[key]
			for _, path := range [][]any{{"metadata", "labels"}, {"spec", "template", "metadata", "labels"}} {
				if l, ok := Get(ho, path...).(map[string]any); ok {
					l["app.kubernetes.io/managed-by"] = "kustomize"
				}
			}
			if !reflect.DeepEqual(map[string]any(ho), map[string]any(k[key])) {
				hb, _ := yaml.Marshal(ho)
				kb, _ := yaml.Marshal(k[key])
				t.Errorf("%s: %s differs:\nhelm:\n%s\nkustomize:\n%s", kust, key, hb, kb)
			}
			delete(k, key)
		}
		for key := range k {
			t.Errorf("%s: %s is not in the chart's render", kust, key)
		}
	}
}

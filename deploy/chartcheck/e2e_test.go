package chartcheck

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestSecureEndToEnd runs what the chart renders with every security option
// on, the way a kubelet would: the chart's NATS (nats-server with the
// rendered nats.conf, as one node) and the four stages (the logtally binary
// with the rendered args, config file and environment), Secrets and
// ConfigMaps written to the paths the pods mount them at, secretKeyRef and
// $(VAR) variables resolved. Then the readiness probes (HTTPS), the API
// tokens, and the helm test pod's own script (sh and curl) must pass, and a
// wrong NATS password must be refused. It checks that the two sides the chart
// configures separately (NATS server, stage clients) fit together. The
// detector runs with the rendered rules ConfigMap (written as the kubelet
// writes it: ..data symlink): a flood is decided, an allow-listed address is
// not, query serves the decision to a bouncer key from the chart's Secret,
// the webhook URL from its Secret gets it, and a new version of the
// ConfigMap (..data swapped) is applied by query and detector without a
// restart.
//
// Departures from a cluster, all outside what the chart decides: listen
// addresses on 127.0.0.1 with free ports (LOGTALLY_*_ADDR, nats.conf's
// listen/http), NATS as one node without its cluster block and the streams
// at R1 (LOGTALLY_NATS_REPLICAS), localhost instead of the Service names
// (LOGTALLY_NATS_URL keeps the scheme; the certificates name both).
//
// Needs go (builds logtally and nats-server from the main module). Runs under
// scripts/helm-check.sh; CHARTCHECK_E2E=0 skips it.
func TestSecureEndToEnd(t *testing.T) {
	dir(t)
	if os.Getenv("CHARTCHECK_E2E") == "0" {
		t.Skip("CHARTCHECK_E2E=0")
	}
	tmp := t.TempDir()
	bin := buildBinaries(t, tmp)

	// Certificates: a CA, NATS's server certificate, the stages' NATS client
	// certificate and the API's certificate.
	ca := newCA(t)
	hosts := []string{"localhost", "127.0.0.1"}
	existing := map[string]map[string]string{
		"nats-tls":    ca.issue(t, "logtally-nats", append([]string{"logtally-nats", "logtally-nats.logtally.svc"}, hosts...), false),
		"nats-client": ca.issue(t, "logtally", nil, true),
		"api-tls":     ca.issue(t, "logtally-api", append([]string{"logtally-ingest.logtally.svc", "logtally-query.logtally.svc"}, hosts...), false),
	}
	// Characters a NATS config or a shell would trip over (but no single quote).
	natsPassword := `p@ss w0rd;{x}[y]#1 // "$HOME" \n 123`
	hooks := make(chan string, 16)
	hookSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case hooks <- r.Method + " " + r.URL.Path + " " + string(b):
		default:
		}
	}))
	defer hookSrv.Close()
	bouncerKey := "e2e-bouncer-" + randHex(t)
	rules := map[string]any{
		"mode":  "enforce",
		"allow": []string{"192.0.2.0/24"},
		"rules": []any{map[string]any{"name": "e2e-flood", "range": "1m", "threshold": 3, "ban": "10m"}},
	}
	values := map[string]any{
		"detector": map[string]any{"rules": rules, "webhook": map[string]any{"url": hookSrv.URL + "/hook"}},
		"query":    map[string]any{"decisions": map[string]any{"bouncerKeys": []string{"e2e-other-" + randHex(t), bouncerKey}}},
		"api": map[string]any{
			"auth": map[string]any{"enabled": true, "ingestToken": "e2e-ingest-" + randHex(t), "queryToken": "e2e-query-" + randHex(t), "protectMetrics": true},
			"tls":  map[string]any{"enabled": true, "secretName": "api-tls"},
		},
		"nats": map[string]any{
			"auth": map[string]any{"type": "user", "user": "e2e", "password": natsPassword},
			"tls":  map[string]any{"enabled": true, "secretName": "nats-tls", "clientCert": map[string]any{"enabled": true, "secretName": "nats-client"}},
		},
		"tests": map[string]any{"timeoutSeconds": 90},
	}
	vf := filepath.Join(tmp, "values.yaml")
	b, _ := json.Marshal(values) // JSON is YAML
	if err := os.WriteFile(vf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	objs, err := helmTemplate(t, "-f", vf)
	if err != nil {
		t.Fatal(err)
	}
	k := &kubelet{t: t, objs: objs, root: tmp, secrets: existing}
	for name, m := range secrets(t, objs) {
		k.secrets[name] = m
	}

	// NATS.
	natsPort, monPort := freePort(t), freePort(t)
	sts := ofKind(objs, "StatefulSet")[0]
	nats := k.pod(sts, sts.Name()+"-0")
	conf := nats.file(t, "/etc/nats/nats.conf")
	c := readFile(t, conf)
	c = regexp.MustCompile(`(?ms)^cluster \{.*?^\}\n?`).ReplaceAllString(c, "")
	c = strings.Replace(c, "listen: 0.0.0.0:4222", fmt.Sprintf("listen: 127.0.0.1:%d", natsPort), 1)
	c = strings.Replace(c, "http: 0.0.0.0:8222", fmt.Sprintf("http: 127.0.0.1:%d", monPort), 1)
	writeFile(t, conf, c)
	nats.start(t, filepath.Join(bin, "nats-server"), nil)
	probe := Get(podSpec(sts), "containers", 0, "startupProbe", "httpGet")
	waitHTTP(t, nats, fmt.Sprintf("http://127.0.0.1:%d%s", monPort, str(Get(probe, "path"))), nil, 60*time.Second)

	// The stages.
	stage := map[string]*process{}
	httpPort := map[string]int{}
	for _, s := range stages {
		d := byComponent(objs, "Deployment", s)
		p := k.pod(d, d.Name()+"-0")
		url := flat(stageConfig(t, objs, d))["nats.url"]
		httpPort[s] = freePort(t)
		env := map[string]string{
			"LOGTALLY_NATS_URL":      fmt.Sprintf("%s://localhost:%d", strings.SplitN(url, "://", 2)[0], natsPort),
			"LOGTALLY_NATS_REPLICAS": "1",
			"LOGTALLY_HTTP_ADDR":     fmt.Sprintf("127.0.0.1:%d", httpPort[s]),
		}
		switch s {
		case "query":
			env["LOGTALLY_GRPC_ADDR"] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		case "ingest":
			env["LOGTALLY_INGEST_TCP_ADDR"] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
			env["LOGTALLY_INGEST_SYSLOG_ADDR"] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		}
		p.start(t, filepath.Join(bin, "logtally"), env)
		stage[s] = p
	}
	// Readiness as the kubelet probes it: scheme and path of the pod spec,
	// no certificate verification, no token.
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, s := range stages {
		hg := Get(podSpec(byComponent(objs, "Deployment", s)), "containers", 0, "readinessProbe", "httpGet")
		if str(Get(hg, "scheme")) != "HTTPS" {
			t.Fatalf("%s: readiness probe %v, want HTTPS", s, hg)
		}
		waitHTTP(t, stage[s], fmt.Sprintf("https://127.0.0.1:%d%s", httpPort[s], str(Get(hg, "path"))), insecure, 90*time.Second)
	}

	// Tokens: required by ingest, queries and (protect-metrics) /metrics.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	api := k.secrets["logtally-api-auth"]
	for _, c := range []struct {
		stage, method, path, token string
		want                       int
	}{
		{"ingest", "POST", "/api/v1/ingest", "", http.StatusUnauthorized},
		{"ingest", "POST", "/api/v1/ingest", api["query-token"], http.StatusUnauthorized},
		{"query", "GET", "/api/v1/top?last=5m", "", http.StatusUnauthorized},
		{"query", "GET", "/api/v1/top?last=5m", api["query-token"], http.StatusOK},
		{"parser", "GET", "/metrics", "", http.StatusUnauthorized},
		{"parser", "GET", "/metrics", api["query-token"], http.StatusOK},
		{"aggregator", "GET", "/healthz", "", http.StatusOK},
		{"detector", "GET", "/metrics", "", http.StatusUnauthorized},
		{"detector", "GET", "/metrics", api["query-token"], http.StatusOK},
		{"query", "GET", "/v1/decisions?ip=192.0.2.1", api["query-token"], http.StatusForbidden}, // no X-Api-Key
	} {
		req, _ := http.NewRequest(c.method, fmt.Sprintf("https://localhost:%d%s", httpPort[c.stage], c.path), strings.NewReader(""))
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s %s: %v", c.stage, c.method, c.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s %s (token %v): %d, want %d", c.stage, c.method, c.path, c.token != "", resp.StatusCode, c.want)
		}
	}

	// The helm test pod's script, with its environment and mounts.
	if _, err := exec.LookPath("curl"); err != nil {
		t.Log("no curl: the helm test script is not run")
	} else {
		pod := ofKind(objs, "Pod")[0]
		p := k.pod(pod, pod.Name())
		for _, v := range []string{"INGEST_URL", "QUERY_URL"} {
			s := map[string]string{"INGEST_URL": "ingest", "QUERY_URL": "query"}[v]
			if !strings.HasPrefix(p.env[v], "https://") {
				t.Errorf("test pod %s = %q", v, p.env[v])
			}
			p.env[v] = fmt.Sprintf("https://localhost:%d", httpPort[s])
		}
		script := str(Get(podSpec(pod), "containers", 0, "command", 2))
		p.env["PATH"] = os.Getenv("PATH")
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", "-ec", script)
		cmd.Env = p.environ()
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "counted:") {
			t.Errorf("helm test script: %v\n%s", err, out)
			k.dumpLogs(stage)
		} else {
			t.Logf("helm test script:\n%s", out)
		}
	}

	checkDecisions(t, k, objs, stage, httpPort, client, api, bouncerKey, hooks)

	// A wrong NATS password is refused: the stage exits at once.
	d := byComponent(objs, "Deployment", "ingest")
	bad := k.pod(d, d.Name()+"-wrong-password")
	bad.env["LOGTALLY_NATS_PASSWORD"] = natsPassword + "x"
	bad.start(t, filepath.Join(bin, "logtally"), map[string]string{
		"LOGTALLY_NATS_URL":           fmt.Sprintf("tls://localhost:%d", natsPort),
		"LOGTALLY_HTTP_ADDR":          fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"LOGTALLY_INGEST_TCP_ADDR":    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"LOGTALLY_INGEST_SYSLOG_ADDR": fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	})
	select {
	case <-bad.done:
		if log := readFile(t, bad.log); !strings.Contains(log, "nats refused the credentials") {
			t.Errorf("wrong password: exit without the expected error:\n%s", log)
		} else if strings.Contains(log, natsPassword) {
			t.Errorf("the password appears in the log")
		}
	case <-time.After(60 * time.Second):
		t.Errorf("a stage with a wrong NATS password still runs after 60s")
	}
}

func buildBinaries(t *testing.T, tmp string) string {
	t.Helper()
	bin := filepath.Join(tmp, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, pkg := range []string{"./cmd/logtally", "github.com/nats-io/nats-server/v2"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin+"/", pkg)
		cmd.Dir = "../.." // the main module: its go.mod pins nats-server
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(bin, "v2")); err == nil {
		// go build names the nats-server binary after the last path element.
		if err := os.Rename(filepath.Join(bin, "v2"), filepath.Join(bin, "nats-server")); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

// kubelet materializes pods of a render on the local file system.
type kubelet struct {
	t       *testing.T
	objs    []Object
	root    string
	secrets map[string]map[string]string
}

type process struct {
	name   string
	dir    string
	mounts map[string]string // mount path => local directory
	args   []string
	env    map[string]string
	order  []string
	log    string
	cmd    *exec.Cmd
	done   chan struct{}
}

// pod writes the volumes of the workload's first container under root/name
// and resolves its environment as the kubelet does.
func (k *kubelet) pod(w Object, name string) *process {
	t := k.t
	ps := podSpec(w)
	c := Get(ps, "containers", 0)
	p := &process{name: name, dir: filepath.Join(k.root, name), mounts: map[string]string{}, env: map[string]string{}}
	configMaps := map[string]map[string]string{} // mount path => data
	for _, m := range list(Get(c, "volumeMounts")) {
		vname, mp := str(Get(m, "name")), str(Get(m, "mountPath"))
		local := filepath.Join(p.dir, vname)
		if err := os.MkdirAll(local, 0o700); err != nil {
			t.Fatal(err)
		}
		p.mounts[mp] = local
		v := volume(ps, vname)
		switch {
		case Get(v, "configMap") != nil:
			cm := find(k.objs, "ConfigMap", str(Get(v, "configMap", "name")))
			if cm == nil {
				t.Fatalf("%s: ConfigMap %v missing", name, Get(v, "configMap", "name"))
			}
			data := map[string]string{}
			for key, d := range cm["data"].(map[string]any) {
				data[key] = str(d)
			}
			configMaps[mp] = data
		case Get(v, "secret") != nil:
			sname := str(Get(v, "secret", "secretName"))
			s, ok := k.secrets[sname]
			if !ok {
				t.Fatalf("%s: Secret %s missing", name, sname)
			}
			for _, it := range list(Get(v, "secret", "items")) {
				data, ok := s[str(Get(it, "key"))]
				if !ok {
					t.Fatalf("%s: Secret %s has no key %v", name, sname, Get(it, "key"))
				}
				writeFile(t, filepath.Join(local, str(Get(it, "path"))), data)
			}
		}
		// anything else (PVC, emptyDir): an empty directory
	}
	// Files name the mount paths: make them local (ConfigMaps only; Secrets
	// hold no paths).
	for mp, data := range configMaps {
		p.writeConfigMap(t, mp, data)
	}
	for _, a := range list(Get(c, "command")) {
		p.args = append(p.args, p.local(str(a)))
	}
	if len(p.args) > 0 {
		p.args = p.args[1:] // the executable is chosen by the caller
	}
	for _, a := range list(Get(c, "args")) {
		p.args = append(p.args, p.local(str(a)))
	}
	for _, e := range list(Get(c, "env")) {
		n := str(Get(e, "name"))
		var v string
		switch {
		case Get(e, "valueFrom", "secretKeyRef") != nil:
			s, key := str(Get(e, "valueFrom", "secretKeyRef", "name")), str(Get(e, "valueFrom", "secretKeyRef", "key"))
			val, ok := k.secrets[s][key]
			if !ok {
				t.Fatalf("%s: %s: Secret %s has no key %s", name, n, s, key)
			}
			v = val
		case str(Get(e, "valueFrom", "fieldRef", "fieldPath")) == "metadata.name":
			v = name
		case Get(e, "valueFrom", "resourceFieldRef") != nil:
			v = "1073741824"
		default:
			// $(VAR) of variables defined before; the result is not expanded again.
			v = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).ReplaceAllStringFunc(str(Get(e, "value")), func(m string) string {
				if prev, ok := p.env[m[2:len(m)-1]]; ok {
					return prev
				}
				return m
			})
			v = p.local(v)
		}
		if _, dup := p.env[n]; !dup {
			p.order = append(p.order, n)
		}
		p.env[n] = v
	}
	return p
}

// writeConfigMap writes (or updates) a ConfigMap volume as the kubelet's
// AtomicWriter does: the files in a new ..<timestamp> directory, the
// ..data symlink renamed over to point at it, one symlink per key into
// ..data, the previous directory removed. Mount paths in the data become
// the local directories.
func (p *process) writeConfigMap(t *testing.T, mountPath string, data map[string]string) {
	t.Helper()
	local, ok := p.mounts[mountPath]
	if !ok {
		t.Fatalf("%s: nothing mounted at %s", p.name, mountPath)
	}
	ts, err := os.MkdirTemp(local, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		t.Fatal(err)
	}
	for key, d := range data {
		writeFile(t, filepath.Join(ts, key), p.local(d))
	}
	dataLink := filepath.Join(local, "..data")
	old, _ := os.Readlink(dataLink)
	tmp := filepath.Join(local, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dataLink); err != nil {
		t.Fatal(err)
	}
	for key := range data {
		if _, err := os.Lstat(filepath.Join(local, key)); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", key), filepath.Join(local, key)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(local, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// local rewrites mount paths in s to the local directories.
func (p *process) local(s string) string {
	mps := make([]string, 0, len(p.mounts))
	for mp := range p.mounts {
		mps = append(mps, mp)
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, mp := range mps {
		s = strings.ReplaceAll(s, mp+"/", p.mounts[mp]+"/")
	}
	return s
}

// file is the local path of a path inside the pod.
func (p *process) file(t *testing.T, path string) string {
	l := p.local(path)
	if l == path {
		t.Fatalf("%s: %s is on no volume", p.name, path)
	}
	return l
}

func (p *process) environ() []string {
	var out []string
	for _, n := range p.order {
		out = append(out, n+"="+p.env[n])
	}
	for n, v := range p.env {
		if !contains(p.order, n) {
			out = append(out, n+"="+v)
		}
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (p *process) start(t *testing.T, exe string, extra map[string]string) {
	t.Helper()
	for k, v := range extra {
		p.env[k] = v
	}
	p.log = filepath.Join(p.dir, "log")
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(exe, p.args...)
	p.cmd.Env = p.environ()
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	p.done = make(chan struct{})
	go func() { _ = p.cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}

func (k *kubelet) dumpLogs(ps map[string]*process) {
	for name, p := range ps {
		b, _ := os.ReadFile(p.log)
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		k.t.Logf("--- %s log (end):\n%s", name, b)
	}
}

// waitHTTP waits for a 200 from url while the process runs.
func waitHTTP(t *testing.T, p *process, url string, client *http.Client, timeout time.Duration) {
	t.Helper()
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited:\n%s", p.name, readFile(t, p.log))
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: %s not ready after %s (%s):\n%s", p.name, url, timeout, last, readFile(t, p.log))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func randHex(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chartcheck CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), pool: pool}
}

// issue returns Secret data as cert-manager writes it: tls.crt, tls.key, ca.crt.
func (ca *testCA) issue(t *testing.T, cn string, names []string, client bool) map[string]string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var crt, k bytes.Buffer
	_ = pem.Encode(&crt, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	_ = pem.Encode(&k, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	return map[string]string{"tls.crt": crt.String(), "tls.key": k.String(), "ca.crt": ca.pem}
}

// checkDecisions: lines of a flood and of an allow-listed address go to
// ingest; the detector decides the flood only, query serves it to a bouncer
// key, the webhook gets it; then a new rules version (mode simulate) swapped
// into the detector's and query's ConfigMap volumes is applied by both.
func checkDecisions(t *testing.T, k *kubelet, objs []Object, stage map[string]*process, httpPort map[string]int,
	client *http.Client, api map[string]string, bouncerKey string, hooks chan string) {
	t.Helper()
	get := func(path string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://localhost:%d%s", httpPort["query"], path), nil)
		for h, v := range hdr {
			req.Header.Set(h, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	bearer := map[string]string{"Authorization": "Bearer " + api["query-token"]}
	var body strings.Builder
	now := time.Now().UTC().Format("02/Jan/2006:15:04:05 +0000")
	for i := 0; i < 6; i++ {
		for _, ip := range []string{"203.0.113.77", "192.0.2.7"} {
			fmt.Fprintf(&body, "%s - - [%s] \"GET /e2e-%d HTTP/1.1\" 200 2 \"-\" \"e2e\"\n", ip, now, i)
		}
	}
	req, _ := http.NewRequest("POST", fmt.Sprintf("https://localhost:%d/api/v1/ingest?source=e2e", httpPort["ingest"]), strings.NewReader(body.String()))
	req.Header.Set("Authorization", "Bearer "+api["ingest-token"])
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: %s", resp.Status)
	}
	deadline := time.Now().Add(90 * time.Second)
	var list string
	for {
		code, out := get("/api/v1/decisions", bearer)
		if code == http.StatusOK && strings.Contains(out, `"key":"203.0.113.77/32"`) {
			list = out
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("no decision for the flood within 90s; last answer %d %s", code, out)
			k.dumpLogs(stage)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("decisions: %s", list)
	if !strings.Contains(list, `"rule":"e2e-flood"`) || strings.Contains(list, "192.0.2.7") || !strings.Contains(list, `"mode":"enforce"`) {
		t.Errorf("decisions: want e2e-flood for 203.0.113.77 only, mode enforce: %s", list)
	}
	// A bouncer: X-Api-Key only, as CrowdSec's bouncers send it.
	code, out := get("/v1/decisions?ip=203.0.113.77", map[string]string{"X-Api-Key": bouncerKey})
	t.Logf("bouncer API with X-Api-Key only (query token on): %d %s", code, strings.TrimSpace(out))
	// With the query token as well (what passes today under api.auth).
	withKey := map[string]string{"X-Api-Key": bouncerKey, "Authorization": bearer["Authorization"]}
	if code, out := get("/v1/decisions?ip=203.0.113.77", withKey); code != http.StatusOK || !strings.Contains(out, `"scenario":"logtally/e2e-flood"`) || !strings.Contains(out, `"value":"203.0.113.77"`) {
		t.Errorf("bouncer API: %d %s", code, out)
	}
	if code, out := get("/v1/decisions/stream?startup=true", withKey); code != http.StatusOK || !strings.Contains(out, "203.0.113.77") {
		t.Errorf("bouncer stream: %d %s", code, out)
	}
	if code, _ := get("/v1/decisions?ip=203.0.113.77", map[string]string{"X-Api-Key": "wrong", "Authorization": bearer["Authorization"]}); code != http.StatusForbidden {
		t.Errorf("bouncer API with a wrong key: %d, want 403", code)
	}
	select {
	case h := <-hooks:
		if !strings.HasPrefix(h, "POST /hook ") || !strings.Contains(h, `"event":"decision"`) || !strings.Contains(h, "203.0.113.77") {
			t.Errorf("webhook got %s", h)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the webhook got nothing within 30s")
	}

	// A new rules version, swapped in as the kubelet does.
	cm := find(objs, "ConfigMap", "logtally-rules")
	rules := strings.Replace(str(Get(cm, "data", "rules.yaml")), "mode: enforce", "mode: simulate", 1)
	if !strings.Contains(rules, "mode: simulate") {
		t.Fatalf("rules.yaml without mode: enforce:\n%s", rules)
	}
	for _, s := range []string{"detector", "query"} {
		stage[s].writeConfigMap(t, rulesDir, map[string]string{"rules.yaml": rules})
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		code, out := get("/api/v1/decisions", bearer)
		if code == http.StatusOK && strings.Contains(out, `"mode":"simulate"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("query did not apply the new rules version within 30s: %d %s", code, out)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for deadline = time.Now().Add(30 * time.Second); !strings.Contains(readFile(t, stage["detector"].log), "rules reloaded"); {
		if time.Now().After(deadline) {
			t.Errorf("the detector did not reload the rules within 30s")
			k.dumpLogs(map[string]*process{"detector": stage["detector"]})
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	select {
	case <-stage["detector"].done:
		t.Errorf("the detector exited")
	case <-stage["query"].done:
		t.Errorf("query exited")
	default:
	}
}

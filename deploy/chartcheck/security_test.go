package chartcheck

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Security values (api.auth, api.tls, nats.auth, nats.tls): tokens and
// passwords only as secretKeyRef variables, files only from read-only Secret
// volumes that the config file points at, probes and the helm test matching
// the API's TLS. The checks run on every render of scripts/helm-check.sh
// (production and the ci/ files turn the options on) and on renders of their
// own (helm template, below) for the combinations those files leave out.

// Literal secrets of helm/logtally/ci/all-features-values.yaml.
var ciSecrets = []string{"ci-ingest-token", "ci-query-token", "ci-nats-password", "ci-bouncer-key-1", "ci-bouncer-key-2", "ci-webhook-token", "ci-postgres-password"}

// Variables that carry secrets: never a literal value.
var secretVars = map[string]bool{
	"LOGTALLY_AUTH_INGEST_TOKEN": true, "LOGTALLY_AUTH_QUERY_TOKEN": true,
	"LOGTALLY_NATS_PASSWORD": true, "LOGTALLY_NATS_TOKEN": true,
	"NATS_AUTH_PASSWORD": true, "NATS_AUTH_TOKEN": true,
	"INGEST_TOKEN": true, "QUERY_TOKEN": true,
	"LOGTALLY_DECISIONS_BOUNCER_KEY": true, "LOGTALLY_DECISIONS_WEBHOOK_URL": true, "BOUNCER_KEYS": true,
	"LOGTALLY_EXPORT_POSTGRES_DSN": true,
}

// Config keys that hold secrets: never in a ConfigMap.
var secretKeys = []string{"auth.ingest-token", "auth.query-token", "nats.password", "nats.token", "decisions.bouncer-key", "decisions.webhook-url", "export.postgres.dsn"}

const secretsDir = "/etc/logtally-secrets"

func allRenders() []string { return append(append([]string{}, clusterRenders...), allInOne...) }

// secrets decodes the Secrets of a render: name => key => value.
func secrets(t *testing.T, objs []Object) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, s := range ofKind(objs, "Secret") {
		m := map[string]string{}
		data, _ := s["data"].(map[string]any)
		for k, v := range data {
			b, err := base64.StdEncoding.DecodeString(str(v))
			if err != nil {
				t.Fatalf("%s: data.%s: %v", s.Key(), k, err)
			}
			m[k] = string(b)
		}
		sd, _ := s["stringData"].(map[string]any)
		for k, v := range sd {
			m[k] = str(v)
		}
		out[s.Name()] = m
	}
	return out
}

func containers(ps map[string]any) []any {
	return append(list(ps["initContainers"]), list(ps["containers"])...)
}

// envVar finds a variable of a container.
func envVar(c any, name string) any {
	for _, e := range list(Get(c, "env")) {
		if str(Get(e, "name")) == name {
			return e
		}
	}
	return nil
}

// secretRef is the Secret and key of a secretKeyRef variable ("" when it is none).
func secretRef(c any, name string) (string, string) {
	e := envVar(c, name)
	return str(Get(e, "valueFrom", "secretKeyRef", "name")), str(Get(e, "valueFrom", "secretKeyRef", "key"))
}

func volume(ps map[string]any, name string) any {
	for _, v := range list(ps["volumes"]) {
		if str(Get(v, "name")) == name {
			return v
		}
	}
	return nil
}

// secretFile resolves a file path of a container to the Secret volume that
// provides it: the Secret's name and key, and whether the mount is read-only.
func secretFile(ps map[string]any, c any, file string) (secret, key string, readOnly, ok bool) {
	for _, m := range list(Get(c, "volumeMounts")) {
		mp := str(Get(m, "mountPath"))
		rel, found := strings.CutPrefix(file, mp+"/")
		if !found {
			continue
		}
		v := volume(ps, str(Get(m, "name")))
		if Get(v, "secret") == nil {
			return "", "", false, false
		}
		for _, it := range list(Get(v, "secret", "items")) {
			if str(Get(it, "path")) == rel {
				return str(Get(v, "secret", "secretName")), str(Get(it, "key")), Get(m, "readOnly") == true, true
			}
		}
		return "", "", false, false
	}
	return "", "", false, false
}

func TestNoSecretsInConfigMaps(t *testing.T) {
	for _, r := range allRenders() {
		objs := load(t, r)
		values := append([]string{}, ciSecrets...)
		for _, m := range secrets(t, objs) {
			for _, v := range m {
				values = append(values, strings.TrimSpace(v))
			}
		}
		for _, cm := range ofKind(objs, "ConfigMap") {
			data, _ := cm["data"].(map[string]any)
			for k, d := range data {
				for _, v := range values {
					if len(v) >= 4 && strings.Contains(str(d), v) {
						t.Errorf("%s: %s data.%s holds a secret value", r, cm.Key(), k)
					}
				}
			}
			if doc, ok := data["config.yaml"]; ok {
				var cfg map[string]any
				if err := yaml.Unmarshal([]byte(str(doc)), &cfg); err != nil {
					t.Fatalf("%s: %s: %v", r, cm.Key(), err)
				}
				f := flat(cfg)
				for _, k := range secretKeys {
					if _, ok := f[k]; ok {
						t.Errorf("%s: %s: config.yaml sets %s", r, cm.Key(), k)
					}
				}
			}
		}
		for _, w := range workloads(objs) {
			for _, c := range containers(podSpec(w)) {
				for _, e := range list(Get(c, "env")) {
					if secretVars[str(Get(e, "name"))] && Get(e, "valueFrom", "secretKeyRef") == nil {
						t.Errorf("%s: %s: %s is not a secretKeyRef", r, w.Key(), str(Get(e, "name")))
					}
					for _, v := range values {
						if len(v) >= 4 && strings.Contains(str(Get(e, "value")), v) {
							t.Errorf("%s: %s: variable %s holds a secret value", r, w.Key(), str(Get(e, "name")))
						}
					}
				}
				for _, a := range list(Get(c, "args")) {
					for _, v := range values {
						if len(v) >= 4 && strings.Contains(str(a), v) {
							t.Errorf("%s: %s: an argument holds a secret value", r, w.Key())
						}
					}
				}
			}
		}
	}
}

// TestSecretWiring: every secretKeyRef names a key of the Secret when the
// chart renders it, every LOGTALLY_ variable is a flag, every file setting of
// the config file is a file of a read-only Secret volume, and Secret volumes
// are 0440 under /etc/logtally-secrets.
func TestSecretWiring(t *testing.T) {
	known := flags(t)
	envFlags := map[string]string{}
	for f := range known {
		envFlags["LOGTALLY_"+strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(f))] = f
	}
	for _, r := range allRenders() {
		objs := load(t, r)
		sec := secrets(t, objs)
		for _, w := range workloads(objs) {
			ps := podSpec(w)
			for _, c := range containers(ps) {
				for _, e := range list(Get(c, "env")) {
					name := str(Get(e, "name"))
					if s, k := secretRef(c, name); s != "" {
						if m, rendered := sec[s]; rendered {
							if _, ok := m[k]; !ok {
								t.Errorf("%s: %s: %s refers to key %q, which Secret %s lacks", r, w.Key(), name, k, s)
							}
						}
					}
					if strings.HasPrefix(name, "LOGTALLY_") && envFlags[name] == "" {
						t.Errorf("%s: %s: %s is no flag's variable", r, w.Key(), name)
					}
				}
			}
			for _, v := range list(ps["volumes"]) {
				if Get(v, "secret") == nil {
					continue
				}
				if Get(v, "secret", "defaultMode") != int64(0o440) {
					t.Errorf("%s: %s: Secret volume %s has mode %v, want 0440", r, w.Key(), str(Get(v, "name")), Get(v, "secret", "defaultMode"))
				}
				if m, rendered := sec[str(Get(v, "secret", "secretName"))]; rendered {
					for _, it := range list(Get(v, "secret", "items")) {
						if _, ok := m[str(Get(it, "key"))]; !ok {
							t.Errorf("%s: %s: volume %s projects key %v, which the Secret lacks", r, w.Key(), str(Get(v, "name")), Get(it, "key"))
						}
					}
				}
			}
		}
		for _, d := range logtallyDeployments(objs) {
			ps := podSpec(d)
			c := Get(ps, "containers", 0)
			for _, m := range list(Get(c, "volumeMounts")) {
				if Get(volume(ps, str(Get(m, "name"))), "secret") != nil && (!strings.HasPrefix(str(Get(m, "mountPath")), secretsDir+"/") || Get(m, "readOnly") != true) {
					t.Errorf("%s: %s: Secret volume mounted at %v (read-only %v)", r, d.Key(), Get(m, "mountPath"), Get(m, "readOnly"))
				}
			}
			for k, file := range flat(stageConfig(t, objs, d)) {
				if !strings.HasSuffix(k, "-file") || k == "config.file" {
					continue
				}
				if _, _, ro, ok := secretFile(ps, c, file); !ok || !ro {
					t.Errorf("%s: %s: %s=%s is not a file of a read-only Secret volume", r, d.Key(), k, file)
				}
			}
		}
	}
}

// stageEnv is what a Deployment's logtally container gets from Secrets:
// variable => "secret/key".
func stageEnv(d Object) map[string]string {
	out := map[string]string{}
	for _, e := range list(Get(podSpec(d), "containers", 0, "env")) {
		if s := str(Get(e, "valueFrom", "secretKeyRef", "name")); s != "" {
			out[str(Get(e, "name"))] = s + "/" + str(Get(e, "valueFrom", "secretKeyRef", "key"))
		}
	}
	return out
}

func secretVolumes(ps map[string]any) map[string]string {
	out := map[string]string{}
	for _, v := range list(ps["volumes"]) {
		if s := str(Get(v, "secret", "secretName")); s != "" {
			var items []string
			for _, it := range list(Get(v, "secret", "items")) {
				items = append(items, str(Get(it, "key"))+">"+str(Get(it, "path")))
			}
			out[str(Get(v, "name"))] = s + ":" + strings.Join(items, ",")
		}
	}
	return out
}

func natsConf(t *testing.T, objs []Object) string {
	t.Helper()
	for _, cm := range ofKind(objs, "ConfigMap") {
		if c, ok := Get(cm, "data", "nats.conf").(string); ok {
			return c
		}
	}
	t.Fatal("no nats.conf")
	return ""
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestSecurityOffByDefault(t *testing.T) {
	for _, r := range []string{"cluster", "small"} {
		objs := load(t, r)
		if s := ofKind(objs, "Secret"); len(s) != 0 {
			t.Errorf("%s: renders Secrets %v", r, s)
		}
		for _, w := range workloads(objs) {
			if v := secretVolumes(podSpec(w)); len(v) != 0 {
				t.Errorf("%s: %s mounts Secrets %v", r, w.Key(), v)
			}
			for _, c := range containers(podSpec(w)) {
				for _, e := range list(Get(c, "env")) {
					if Get(e, "valueFrom", "secretKeyRef") != nil {
						t.Errorf("%s: %s: %s from a Secret", r, w.Key(), str(Get(e, "name")))
					}
				}
			}
		}
		for _, d := range logtallyDeployments(objs) {
			for k := range flat(stageConfig(t, objs, d)) {
				if strings.HasPrefix(k, "auth.") || strings.HasPrefix(k, "api.") || k == "nats.user" || strings.HasPrefix(k, "nats.tls.") {
					t.Errorf("%s: %s: config sets %s", r, d.Key(), k)
				}
			}
		}
	}
	if c := natsConf(t, load(t, "cluster")); strings.Contains(c, "authorization") || strings.Contains(c, "tls {") {
		t.Errorf("cluster: nats.conf has authorization or tls:\n%s", c)
	}
}

// TestProductionSecurity: values-production.yaml references existing Secrets.
func TestProductionSecurity(t *testing.T) {
	objs := load(t, "production")
	if s := ofKind(objs, "Secret"); len(s) != 0 {
		t.Errorf("production renders Secrets %v: it should only reference existing ones", s)
	}
	nats := find(objs, "StatefulSet", "logtally-nats")
	for _, s := range stages {
		d := byComponent(objs, "Deployment", s)
		want := map[string]string{"LOGTALLY_NATS_PASSWORD": "logtally-nats-auth/password"}
		switch s {
		case "ingest":
			want["LOGTALLY_AUTH_INGEST_TOKEN"] = "logtally-api-auth/ingest-token"
		case "query":
			want["LOGTALLY_AUTH_QUERY_TOKEN"] = "logtally-api-auth/query-token"
			want["LOGTALLY_DECISIONS_BOUNCER_KEY"] = "logtally-bouncer-keys/bouncer-keys"
		}
		if got := stageEnv(d); !equalMaps(got, want) {
			t.Errorf("%s: Secret variables %v, want %v", s, got, want)
		}
		vols := map[string]string{
			"api-tls": "logtally-api-tls:tls.crt>tls.crt,tls.key>tls.key",
			"nats-ca": "logtally-nats-tls:ca.crt>ca.crt",
		}
		if got := secretVolumes(podSpec(d)); !equalMaps(got, vols) {
			t.Errorf("%s: Secret volumes %v, want %v", s, got, vols)
		}
		cfg := flat(stageConfig(t, objs, d))
		for k, v := range map[string]string{
			"nats.url":             "tls://" + nats.Name() + ":4222",
			"nats.user":            "logtally",
			"nats.tls.ca-file":     secretsDir + "/nats-ca/ca.crt",
			"api.tls.cert-file":    secretsDir + "/api-tls/tls.crt",
			"api.tls.key-file":     secretsDir + "/api-tls/tls.key",
			"nats.tls.cert-file":   "",
			"auth.protect-metrics": "",
		} {
			if cfg[k] != v {
				t.Errorf("%s: %s = %q, want %q", s, k, cfg[k], v)
			}
		}
	}
	// The chart's NATS: password from the same Secret, TLS from logtally-nats-tls.
	c := Get(podSpec(nats), "containers", 0)
	if s, k := secretRef(c, "NATS_AUTH_PASSWORD"); s != "logtally-nats-auth" || k != "password" {
		t.Errorf("NATS password from %s/%s", s, k)
	}
	if v := str(Get(envVar(c, "NATS_AUTH_PASSWORD_QUOTED"), "value")); v != "'$(NATS_AUTH_PASSWORD)'" {
		t.Errorf("NATS_AUTH_PASSWORD_QUOTED = %q", v)
	}
	if got, want := secretVolumes(podSpec(nats)), map[string]string{"tls": "logtally-nats-tls:tls.crt>tls.crt,tls.key>tls.key"}; !equalMaps(got, want) {
		t.Errorf("NATS Secret volumes %v, want %v", got, want)
	}
	conf := natsConf(t, objs)
	for _, frag := range []string{"user: \"logtally\"", "password: $NATS_AUTH_PASSWORD_QUOTED", "cert_file: /etc/nats-tls/tls.crt", "key_file: /etc/nats-tls/tls.key"} {
		if !strings.Contains(conf, frag) {
			t.Errorf("nats.conf lacks %q", frag)
		}
	}
	if strings.Contains(conf, "verify") {
		t.Errorf("nats.conf verifies client certificates without nats.tls.clientCert")
	}
}

// TestAllFeaturesSecurity: Secrets created by the chart, mutual TLS on the API
// and on NATS, /metrics protected.
func TestAllFeaturesSecurity(t *testing.T) {
	objs := load(t, "all-features")
	sec := secrets(t, objs)
	if got := sec["logtally-api-auth"]; got["ingest-token"] != "ci-ingest-token" || got["query-token"] != "ci-query-token" {
		t.Errorf("Secret logtally-api-auth: %v", got)
	}
	if got := sec["logtally-nats-auth"]; got["password"] != "ci-nats-password" || len(got) != 1 {
		t.Errorf("Secret logtally-nats-auth: %v", got)
	}
	if got := sec["logtally-bouncer-keys"]; got["bouncer-keys"] != "ci-bouncer-key-1,ci-bouncer-key-2" || len(got) != 1 {
		t.Errorf("Secret logtally-bouncer-keys: %v", got)
	}
	if got := sec["logtally-detector-webhook"]; got["webhook-url"] != "https://hooks.example.com/services/ci-webhook-token" || len(got) != 1 {
		t.Errorf("Secret logtally-detector-webhook: %v", got)
	}
	if got := sec["logtally-export-postgres"]; got["dsn"] != "postgres://logtally:ci-postgres-password@postgres.db.svc:5432/logtally?sslmode=require" || len(got) != 1 {
		t.Errorf("Secret logtally-export-postgres: %v", got)
	}
	for _, s := range stagesOf(objs) {
		d := byComponent(objs, "Deployment", s)
		// protect-metrics: every stage needs the query token.
		want := map[string]string{"LOGTALLY_NATS_PASSWORD": "logtally-nats-auth/password", "LOGTALLY_AUTH_QUERY_TOKEN": "logtally-api-auth/query-token"}
		switch s {
		case "ingest":
			want["LOGTALLY_AUTH_INGEST_TOKEN"] = "logtally-api-auth/ingest-token"
		case "query":
			want["LOGTALLY_DECISIONS_BOUNCER_KEY"] = "logtally-bouncer-keys/bouncer-keys"
		case "detector":
			want["LOGTALLY_DECISIONS_WEBHOOK_URL"] = "logtally-detector-webhook/webhook-url"
		}
		if s == "export" {
			want["LOGTALLY_EXPORT_POSTGRES_DSN"] = "logtally-export-postgres/dsn"
		}
		if got := stageEnv(d); !equalMaps(got, want) {
			t.Errorf("%s: Secret variables %v, want %v", s, got, want)
		}
		cfg := flat(stageConfig(t, objs, d))
		for k, v := range map[string]string{
			"nats.user":              "logtally-ci",
			"nats.tls.cert-file":     secretsDir + "/nats-client-tls/tls.crt",
			"nats.tls.key-file":      secretsDir + "/nats-client-tls/tls.key",
			"api.tls.client-ca-file": secretsDir + "/api-client-ca/ca.crt",
			"auth.protect-metrics":   "true",
		} {
			if cfg[k] != v {
				t.Errorf("%s: %s = %q, want %q", s, k, cfg[k], v)
			}
		}
		ps := podSpec(d)
		for file, want := range map[string]string{
			secretsDir + "/api-client-ca/ca.crt":    "logtally-api-client-ca/ca.crt",
			secretsDir + "/nats-client-tls/tls.key": "logtally-nats-client/tls.key",
		} {
			if s, k, _, ok := secretFile(ps, Get(ps, "containers", 0), file); !ok || s+"/"+k != want {
				t.Errorf("%s: %s comes from %s/%s, want %s", d.Key(), file, s, k, want)
			}
		}
	}
	// NATS requires client certificates signed by the CA.
	conf := natsConf(t, objs)
	for _, frag := range []string{`user: "logtally-ci"`, "ca_file: /etc/nats-tls/ca.crt", "verify: true"} {
		if !strings.Contains(conf, frag) {
			t.Errorf("nats.conf lacks %q", frag)
		}
	}
	// ServiceMonitors: https, the CA, the server name, the query token.
	for _, sm := range ofKind(objs, "ServiceMonitor") {
		ep := Get(sm, "spec", "endpoints", 0)
		if component(sm) == "nats" {
			if Get(ep, "scheme") != nil || Get(ep, "authorization") != nil {
				t.Errorf("%s: the exporter endpoint got the API's TLS or token", sm.Key())
			}
			continue
		}
		if str(Get(ep, "scheme")) != "https" ||
			str(Get(ep, "tlsConfig", "ca", "secret", "name")) != "logtally-api-tls" ||
			str(Get(ep, "tlsConfig", "serverName")) != "logtally-"+component(sm)+".logtally.svc" ||
			str(Get(ep, "tlsConfig", "keySecret", "name")) != "prometheus-client" ||
			str(Get(ep, "authorization", "credentials", "name")) != "logtally-api-auth" ||
			str(Get(ep, "authorization", "credentials", "key")) != "query-token" {
			t.Errorf("%s: endpoint %v", sm.Key(), ep)
		}
	}
	// The helm test: https to the Services' names, tokens, CA and client certificate.
	pod := ofKind(objs, "Pod")[0]
	c := Get(podSpec(pod), "containers", 0)
	for name, want := range map[string]string{"INGEST_URL": "https://logtally-ingest.logtally.svc:8080", "QUERY_URL": "https://logtally-query.logtally.svc:8080"} {
		if got := str(Get(envVar(c, name), "value")); got != want {
			t.Errorf("test pod %s = %q, want %q", name, got, want)
		}
	}
	for name, want := range map[string]string{"INGEST_TOKEN": "logtally-api-auth/ingest-token", "QUERY_TOKEN": "logtally-api-auth/query-token", "BOUNCER_KEYS": "logtally-bouncer-keys/bouncer-keys"} {
		if s, k := secretRef(c, name); s+"/"+k != want {
			t.Errorf("test pod %s from %s/%s, want %s", name, s, k, want)
		}
	}
	curlTLS := strings.Fields(str(Get(envVar(c, "CURL_TLS"), "value")))
	ps := podSpec(pod)
	for i, want := range map[int]string{1: "logtally-api-tls/ca.crt", 3: "logtally-test-client/tls.crt", 5: "logtally-test-client/tls.key"} {
		if len(curlTLS) < 6 {
			t.Fatalf("test pod CURL_TLS %v", curlTLS)
		}
		if s, k, _, ok := secretFile(ps, c, curlTLS[i]); !ok || s+"/"+k != want {
			t.Errorf("test pod: %s %s comes from %s/%s, want %s", curlTLS[i-1], curlTLS[i], s, k, want)
		}
	}
	script := str(Get(c, "command", 2))
	for _, frag := range []string{`-H "Authorization: Bearer $INGEST_TOKEN"`, `-H "Authorization: Bearer $QUERY_TOKEN"`, "${CURL_TLS:-}", `"$QUERY_URL/api/v1/decisions"`, `-H "X-Api-Key: $key"`} {
		if !strings.Contains(script, frag) {
			t.Errorf("test script lacks %s", frag)
		}
	}
}

// TestAllInOneSecurity: API settings apply, NATS settings (embedded server) do not.
func TestAllInOneSecurity(t *testing.T) {
	objs := load(t, "allinone-all-features")
	d := ofKind(objs, "Deployment")[0]
	if got, want := stageEnv(d), map[string]string{"LOGTALLY_AUTH_QUERY_TOKEN": "logtally-api-auth/query-token",
		"LOGTALLY_DECISIONS_BOUNCER_KEY": "logtally-bouncer-keys/keys", "LOGTALLY_DECISIONS_WEBHOOK_URL": "logtally-webhook/webhook-url",
		"LOGTALLY_EXPORT_POSTGRES_DSN": "logtally-postgres/dsn"}; !equalMaps(got, want) {
		t.Errorf("Secret variables %v, want %v", got, want)
	}
	cfg := flat(stageConfig(t, objs, d))
	if cfg["auth.protect-metrics"] != "true" || cfg["api.tls.cert-file"] != secretsDir+"/api-tls/tls.crt" || cfg["nats.url"] != "" {
		t.Errorf("config %v", cfg)
	}
	for k := range cfg {
		if strings.HasPrefix(k, "nats.") && k != "nats.url" && k != "nats.replicas" {
			t.Errorf("all-in-one config sets %s", k)
		}
	}
	c := Get(podSpec(ofKind(objs, "Pod")[0]), "containers", 0)
	if got := str(Get(envVar(c, "CURL_TLS"), "value")); got != "--insecure" {
		t.Errorf("test pod CURL_TLS %q (no CA: --insecure)", got)
	}
	if envVar(c, "INGEST_TOKEN") != nil || str(Get(envVar(c, "QUERY_URL"), "value")) != "https://logtally.logtally.svc:8080" {
		t.Errorf("test pod env %v", Get(c, "env"))
	}
}

// TestExternalNATSSecurity: a creds file and the CA of an existing cluster.
func TestExternalNATSSecurity(t *testing.T) {
	objs := load(t, "external-nats")
	for _, s := range stagesOf(objs) {
		d := byComponent(objs, "Deployment", s)
		cfg := flat(stageConfig(t, objs, d))
		if cfg["nats.creds-file"] != secretsDir+"/nats-auth/nats.creds" || cfg["nats.tls.ca-file"] != secretsDir+"/nats-ca/ca.crt" ||
			!strings.HasPrefix(cfg["nats.url"], "nats://nats-0.nats.example:4222") {
			t.Errorf("%s: config %v", s, cfg)
		}
		if got, want := secretVolumes(podSpec(d))["nats-auth"], "logtally-nats-creds:nats.creds>nats.creds"; got != want {
			t.Errorf("%s: nats-auth volume %q, want %q", s, got, want)
		}
		if got := stageEnv(d)["LOGTALLY_DECISIONS_WEBHOOK_URL"]; (s == "detector") != (got == "logtally-webhook/url") {
			t.Errorf("%s: webhook URL from %q", s, got)
		}
		if got := stageEnv(d)["LOGTALLY_EXPORT_POSTGRES_DSN"]; (s == "export") != (got == "logtally-postgres/url") {
			t.Errorf("%s: PostgreSQL DSN from %q", s, got)
		}
	}
}

// --- renders of our own ---------------------------------------------------

// kubeVersion is the Kubernetes version scripts/helm-lib.sh assumes: the
// k8s.io/kubernetes version of tools/kube/go.mod.
func kubeVersion(t *testing.T) string {
	b, err := os.ReadFile("../../tools/kube/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s\.io/kubernetes v(\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("tools/kube/go.mod: no k8s.io/kubernetes")
	}
	return string(m[1])
}

// helmTemplate renders helm/logtally with the helm on PATH (scripts/helm-check.sh
// puts the pinned one there) and extra arguments (--set ...).
func helmTemplate(t *testing.T, args ...string) ([]Object, error) {
	t.Helper()
	dir(t) // only under scripts/helm-check.sh
	helm, err := exec.LookPath("helm")
	if err != nil {
		t.Fatalf("helm is not on PATH: %v", err)
	}
	cmd := exec.Command(helm, append([]string{"template", "logtally", "../../helm/logtally", "--namespace", "logtally", "--kube-version", kubeVersion(t)}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &helmError{strings.TrimSpace(stderr.String())}
	}
	return DecodeObjects(stdout.Bytes())
}

type helmError struct{ msg string }

func (e *helmError) Error() string { return e.msg }

func sets(kv ...string) []string {
	var out []string
	for _, s := range kv {
		out = append(out, "--set", s)
	}
	return out
}

func TestNATSAuthTypes(t *testing.T) {
	const pub = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"
	for _, c := range []struct {
		name    string
		set     []string
		env     map[string]string // stage variables from Secrets
		cfg     map[string]string
		vols    map[string]string
		conf    []string
		natsEnv map[string]string // NATS variables from Secrets
	}{
		{
			name:    "token",
			set:     sets("nats.auth.type=token", "nats.auth.token=t0k3n-value"),
			env:     map[string]string{"LOGTALLY_NATS_TOKEN": "logtally-nats-auth/token"},
			conf:    []string{"token: $NATS_AUTH_TOKEN_QUOTED"},
			natsEnv: map[string]string{"NATS_AUTH_TOKEN": "logtally-nats-auth/token"},
		},
		{
			name:    "token from an existing Secret",
			set:     sets("nats.auth.type=token", "nats.auth.existingSecret=my-nats", "nats.auth.tokenKey=tok"),
			env:     map[string]string{"LOGTALLY_NATS_TOKEN": "my-nats/tok"},
			conf:    []string{"token: $NATS_AUTH_TOKEN_QUOTED"},
			natsEnv: map[string]string{"NATS_AUTH_TOKEN": "my-nats/tok"},
		},
		{
			name: "nkey",
			set:  sets("nats.auth.type=nkey", "nats.auth.nkeySeed=SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY", "nats.auth.nkeyPublicKey="+pub),
			env:  map[string]string{},
			cfg:  map[string]string{"nats.nkey-seed-file": secretsDir + "/nats-auth/nkey.seed"},
			vols: map[string]string{"nats-auth": "logtally-nats-auth:nkey.seed>nkey.seed"},
			conf: []string{"nkey: " + pub},
		},
		{
			name:    "user from an existing Secret",
			set:     sets("nats.auth.type=user", "nats.auth.existingSecret=my-nats", "nats.auth.user=svc"),
			env:     map[string]string{"LOGTALLY_NATS_PASSWORD": "my-nats/password"},
			cfg:     map[string]string{"nats.user": "svc"},
			conf:    []string{`user: "svc"`, "password: $NATS_AUTH_PASSWORD_QUOTED"},
			natsEnv: map[string]string{"NATS_AUTH_PASSWORD": "my-nats/password"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs, err := helmTemplate(t, c.set...)
			if err != nil {
				t.Fatal(err)
			}
			existing := strings.Contains(strings.Join(c.set, " "), "existingSecret")
			if n := len(ofKind(objs, "Secret")); (n == 1) == existing {
				t.Errorf("%d Secrets rendered (existingSecret: %v)", n, existing)
			}
			for _, s := range stages {
				d := byComponent(objs, "Deployment", s)
				if got := stageEnv(d); !equalMaps(got, c.env) {
					t.Errorf("%s: Secret variables %v, want %v", s, got, c.env)
				}
				cfg := flat(stageConfig(t, objs, d))
				for k, v := range c.cfg {
					if cfg[k] != v {
						t.Errorf("%s: %s = %q, want %q", s, k, cfg[k], v)
					}
				}
				vols := c.vols
				if vols == nil {
					vols = map[string]string{}
				}
				if got := secretVolumes(podSpec(d)); !equalMaps(got, vols) {
					t.Errorf("%s: Secret volumes %v, want %v", s, got, vols)
				}
			}
			conf := natsConf(t, objs)
			for _, frag := range c.conf {
				if !strings.Contains(conf, frag) {
					t.Errorf("nats.conf lacks %q:\n%s", frag, conf)
				}
			}
			sts := ofKind(objs, "StatefulSet")[0]
			got := stageEnv(sts)
			if c.natsEnv == nil {
				c.natsEnv = map[string]string{}
			}
			if !equalMaps(got, c.natsEnv) {
				t.Errorf("NATS Secret variables %v, want %v", got, c.natsEnv)
			}
		})
	}
}

// TestAPIMutualTLSProbes: with a client CA the probes are TCP checks, and the
// helm test without a client certificate says why it cannot run.
func TestAPIMutualTLSProbes(t *testing.T) {
	for _, allInOne := range []bool{false, true} {
		set := sets("api.tls.enabled=true", "api.tls.secretName=api", "api.tls.clientCA.enabled=true", "api.tls.clientCA.key=client-ca.crt")
		if allInOne {
			set = append(set, sets("allInOne.enabled=true")...)
		}
		objs, err := helmTemplate(t, set...)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range logtallyDeployments(objs) {
			c := Get(podSpec(d), "containers", 0)
			for _, p := range []string{"readinessProbe", "livenessProbe"} {
				if str(Get(c, p, "tcpSocket", "port")) != "http" || Get(c, p, "httpGet") != nil {
					t.Errorf("%s: %s %v", d.Key(), p, Get(c, p))
				}
			}
			if got := secretVolumes(podSpec(d))["api-client-ca"]; got != "api:client-ca.crt>ca.crt" {
				t.Errorf("%s: api-client-ca volume %q", d.Key(), got)
			}
		}
		pod := ofKind(objs, "Pod")[0]
		if !strings.Contains(str(Get(podSpec(pod), "containers", 0, "command", 2)), "set tests.clientCert.secretName") {
			t.Errorf("all-in-one %v: the test pod does not explain the missing client certificate", allInOne)
		}
	}
}

func TestSecurityValueErrors(t *testing.T) {
	for _, c := range []struct {
		set  []string
		want string
	}{
		{sets("api.auth.enabled=true"), "api.auth.enabled needs api.auth.existingSecret"},
		{sets("api.auth.protectMetrics=true"), "api.auth.protectMetrics needs"},
		{sets("api.auth.enabled=true", "api.auth.ingestToken=x", "api.auth.protectMetrics=true"), "api.auth.protectMetrics needs"},
		{sets("api.tls.enabled=true"), "api.tls.enabled needs api.tls.secretName"},
		{sets("api.tls.clientCA.enabled=true"), "api.tls.clientCA.enabled needs api.tls.enabled"},
		{sets("nats.auth.type=user"), "nats.auth.type=user needs nats.auth.existingSecret or nats.auth.password"},
		{sets("nats.auth.type=token"), "nats.auth.type=token needs nats.auth.existingSecret or nats.auth.token"},
		{sets("nats.auth.type=creds", "nats.auth.existingSecret=c"), "needs nats.external.url"},
		{sets("nats.auth.type=nkey", "nats.auth.existingSecret=n"), "needs nats.auth.nkeyPublicKey"},
		{sets("nats.tls.enabled=true"), "nats.tls.enabled needs nats.tls.secretName"},
		{sets("nats.tls.clientCert.enabled=true"), "nats.tls.clientCert.enabled needs nats.tls.enabled"},
		{sets("allInOne.enabled=true", "nats.tls.enabled=true", "nats.tls.secretName=x"), "do not apply to allInOne"},
		{sets("query.config.auth.query-token=x"), "would put a secret into a ConfigMap"},
		{sets("config.auth.ingest-token=x"), "would put a secret into a ConfigMap"},
		{sets("nats.auth.type=user", "nats.auth.password=it's"), "nats/auth/password"},
		{sets("nats.auth.type=basic"), "nats/auth/type"},
		{sets("detector.config.decisions.bouncer-key=x"), "would put a secret into a ConfigMap"},
		{sets("config.decisions.webhook-url=https://x"), "would put a secret into a ConfigMap"},
		{sets("query.decisions.existingSecret=b", "query.decisions.bouncerKeys[0]=k"), "with existingSecret put them into that Secret"},
		{sets("detector.webhook.existingSecret=w", "detector.webhook.url=https://x"), "with existingSecret put it into that Secret"},
		{sets(`query.decisions.bouncerKeys[0]=a\,b`), "query/decisions/bouncerKeys/0"},
		{sets("detector.webhook.url=ftp://x"), "detector/webhook/url"},
	} {
		_, err := helmTemplate(t, c.set...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.set, err, c.want)
		}
	}
}

package chartcheck

import (
	"reflect"
	"strings"
	"testing"
)

// The export stage (export.*): a Deployment only with export.enabled,
// without HPA; the PostgreSQL DSN only as a secretKeyRef variable; the
// Parquet files on a volume at -export.parquet.dir, written by one replica
// (strategy Recreate); NetworkPolicies with PostgreSQL's egress; all-in-one
// gets the same sinks.

const parquetDir = "/var/lib/logtally/parquet"

// exportRenders are the renders whose values turn export on.
var exportRenders = map[string]bool{"all-features": true, "external-nats": true}

// volumeAt is the volume a container mounts at path (nil when none).
func volumeAt(ps map[string]any, path string) any {
	for _, m := range list(Get(ps, "containers", 0, "volumeMounts")) {
		if str(Get(m, "mountPath")) == path {
			return volume(ps, str(Get(m, "name")))
		}
	}
	return nil
}

func TestExportDeployment(t *testing.T) {
	for _, r := range clusterRenders {
		objs := load(t, r)
		d := byComponent(objs, "Deployment", "export")
		if !exportRenders[r] {
			for _, o := range objs {
				if strings.HasPrefix(component(o), "export") {
					t.Errorf("%s: export is off but %s is rendered", r, o.Key())
				}
			}
			continue
		}
		if d == nil {
			t.Fatalf("%s: no export Deployment", r)
		}
		if h := byComponent(objs, "HorizontalPodAutoscaler", "export"); h != nil {
			t.Errorf("%s: the export stage has an HPA; its replicas do the same work", r)
		}
		svc := byComponent(objs, "Service", "export")
		if svc == nil {
			t.Fatalf("%s: no export Service (metrics)", r)
		}
		if got, want := servicePorts(t, objs, svc), map[portSpec]bool{{8080, "TCP"}: true}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: export Service ports %v", r, got)
		}
		if ports := list(Get(podSpec(d), "containers", 0, "ports")); len(ports) != 1 || str(Get(ports[0], "name")) != "http" {
			t.Errorf("%s: export container ports %v, want http only", r, ports)
		}
		cfg := flat(stageConfig(t, objs, d))
		parquet := volumeAt(podSpec(d), parquetDir)
		switch r {
		case "all-features":
			// Parquet: one replica, Recreate, the chart's claim at -export.parquet.dir.
			if Get(d, "spec", "replicas") != int64(1) || str(Get(d, "spec", "strategy", "type")) != "Recreate" {
				t.Errorf("%s: export with parquet: replicas %v strategy %v, want 1 and Recreate", r, Get(d, "spec", "replicas"), Get(d, "spec", "strategy", "type"))
			}
			for k, v := range map[string]string{"export.interval": "2s", "export.parquet.dir": parquetDir, "export.parquet.close-after": "30m", "log.level": "debug"} {
				if cfg[k] != v {
					t.Errorf("%s: export %s = %q, want %q", r, k, cfg[k], v)
				}
			}
			claim := str(Get(parquet, "persistentVolumeClaim", "claimName"))
			pvc := find(objs, "PersistentVolumeClaim", claim)
			if claim != "logtally-export-parquet" || pvc == nil {
				t.Fatalf("%s: %s is not the claim logtally-export-parquet (volume %v)", r, parquetDir, parquet)
			}
			if str(Get(pvc, "spec", "storageClassName")) != "fast-ssd" || str(Get(pvc, "spec", "resources", "requests", "storage")) != "50Gi" ||
				str(Get(pvc, "metadata", "annotations", "helm.sh/resource-policy")) != "keep" {
				t.Errorf("%s: %s %v", r, pvc.Key(), pvc["spec"])
			}
			if byComponent(objs, "PodDisruptionBudget", "export") != nil {
				t.Errorf("%s: export.pdb.enabled=false still renders a PDB", r)
			}
			if byComponent(objs, "ServiceMonitor", "export") == nil {
				t.Errorf("%s: no export ServiceMonitor", r)
			}
			if !hasArg(d, "-log.format=json") {
				t.Errorf("%s: export extraArgs not passed", r)
			}
			if str(Get(podSpec(d), "priorityClassName")) != "high" || Get(podSpec(d), "affinity") != nil {
				t.Errorf("%s: export priorityClassName/podAntiAffinity none not applied", r)
			}
			if ann := str(Get(d, "spec", "template", "metadata", "annotations", "checksum/secrets")); len(ann) != 64 {
				t.Errorf("%s: export pod has no checksum of the Secrets it reads", r)
			}
		case "external-nats":
			// PostgreSQL only: replicas may be more than one, rolling.
			if Get(d, "spec", "replicas") != int64(2) || str(Get(d, "spec", "strategy", "type")) != "RollingUpdate" {
				t.Errorf("%s: export without parquet: replicas %v strategy %v, want 2 and RollingUpdate", r, Get(d, "spec", "replicas"), Get(d, "spec", "strategy", "type"))
			}
			if parquet != nil || cfg["export.parquet.dir"] != "" || cfg["export.interval"] != "1s" {
				t.Errorf("%s: export without parquet: volume %v, config %v", r, parquet, cfg)
			}
			if byComponent(objs, "PodDisruptionBudget", "export") == nil {
				t.Errorf("%s: no export PDB", r)
			}
		}
		// Only the export pods get the DSN and the Parquet volume.
		for _, o := range logtallyDeployments(objs) {
			if component(o) == "export" {
				continue
			}
			if _, ok := stageEnv(o)["LOGTALLY_EXPORT_POSTGRES_DSN"]; ok || volumeAt(podSpec(o), parquetDir) != nil {
				t.Errorf("%s: %s gets the export stage's DSN or volume", r, o.Key())
			}
			if c := flat(stageConfig(t, objs, o)); c["export.parquet.dir"] != "" || c["export.interval"] != "" {
				t.Errorf("%s: %s gets export settings", r, o.Key())
			}
		}
	}
}

// TestExportAllInOne: -target=all gets the export sinks with export.enabled,
// and none without.
func TestExportAllInOne(t *testing.T) {
	objs := load(t, "allinone-all-features")
	d := ofKind(objs, "Deployment")[0]
	cfg := flat(stageConfig(t, objs, d))
	if cfg["export.parquet.dir"] != parquetDir || cfg["export.parquet.close-after"] != "15m" || cfg["export.interval"] != "1s" {
		t.Errorf("allinone-all-features: export config %v", cfg)
	}
	if got := str(Get(volumeAt(podSpec(d), parquetDir), "persistentVolumeClaim", "claimName")); got != "logtally-parquet" {
		t.Errorf("allinone-all-features: %s from claim %q, want the existing logtally-parquet", parquetDir, got)
	}
	if got := stageEnv(d)["LOGTALLY_EXPORT_POSTGRES_DSN"]; got != "logtally-postgres/dsn" {
		t.Errorf("allinone-all-features: DSN from %q", got)
	}
	for _, pvc := range ofKind(objs, "PersistentVolumeClaim") {
		t.Errorf("allinone-all-features: existing claims, yet %s is rendered", pvc.Key())
	}
	small := ofKind(load(t, "small"), "Deployment")[0]
	if c := flat(stageConfig(t, load(t, "small"), small)); c["export.parquet.dir"] != "" || volumeAt(podSpec(small), parquetDir) != nil {
		t.Errorf("small: export is off but the pod gets a Parquet directory")
	}
	// All-in-one with the chart's Secret and claim, parquet on an emptyDir.
	for _, c := range []struct {
		set   []string
		claim string
	}{
		{sets("allInOne.enabled=true", "export.enabled=true", "export.parquet.enabled=true", "export.postgres.dsn=host=db user=x password=y"), "logtally-export-parquet"},
		{sets("allInOne.enabled=true", "export.enabled=true", "export.parquet.enabled=true", "export.parquet.persistence.enabled=false"), ""},
	} {
		objs, err := helmTemplate(t, c.set...)
		if err != nil {
			t.Fatal(err)
		}
		d := ofKind(objs, "Deployment")[0]
		v := volumeAt(podSpec(d), parquetDir)
		if c.claim == "" {
			if Get(v, "emptyDir") == nil || find(objs, "PersistentVolumeClaim", "logtally-export-parquet") != nil {
				t.Errorf("%v: Parquet volume %v, want an emptyDir and no claim", c.set, v)
			}
			continue
		}
		if str(Get(v, "persistentVolumeClaim", "claimName")) != c.claim || find(objs, "PersistentVolumeClaim", c.claim) == nil {
			t.Errorf("%v: Parquet volume %v, want claim %s rendered", c.set, v, c.claim)
		}
		if s := secrets(t, objs)["logtally-export-postgres"]; s["dsn"] != "host=db user=x password=y" {
			t.Errorf("%v: Secret logtally-export-postgres %v", c.set, s)
		}
		if got := stageEnv(d)["LOGTALLY_EXPORT_POSTGRES_DSN"]; got != "logtally-export-postgres/dsn" {
			t.Errorf("%v: DSN from %q", c.set, got)
		}
	}
}

func TestExportNetworkPolicies(t *testing.T) {
	for r, want := range map[string][][]string{
		"all-features":  {{"53/UDP", "53/TCP"}, {"4222/TCP"}, {"5432/TCP", "6432/TCP"}},
		"external-nats": {{"53/UDP", "53/TCP"}, {"4222/TCP"}, {"5432/TCP"}},
	} {
		objs := load(t, r)
		np := byComponent(objs, "NetworkPolicy", "export")
		if np == nil {
			t.Fatalf("%s: no NetworkPolicy of export", r)
		}
		if got := egressPorts(np); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: export egress ports %v, want %v", r, got, want)
		}
		if r == "all-features" {
			if got := str(Get(np, "spec", "egress", 2, "to", 0, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name")); got != "db" {
				t.Errorf("all-features: PostgreSQL egress to %q", got)
			}
			in := list(Get(np, "spec", "ingress"))
			if len(in) != 1 || str(Get(in[0], "ports", 0, "port")) != "http" || Get(in[0], "from", 0, "namespaceSelector") == nil {
				t.Errorf("all-features: export ingress %v", in)
			}
			var client bool
			for _, p := range list(Get(byComponent(objs, "NetworkPolicy", "nats"), "spec", "ingress", 0, "from")) {
				client = client || str(Get(p, "podSelector", "matchLabels", "app.kubernetes.io/component")) == "export"
			}
			if !client {
				t.Errorf("%s: NATS does not admit the export stage", r)
			}
		}
		for _, other := range []string{"ingest", "parser", "aggregator", "query", "detector"} {
			for _, ports := range egressPorts(byComponent(objs, "NetworkPolicy", other)) {
				for _, p := range ports {
					if p == "5432/TCP" {
						t.Errorf("%s: %s may reach PostgreSQL", r, other)
					}
				}
			}
		}
	}
	// Parquet only: no PostgreSQL egress.
	objs, err := helmTemplate(t, sets("networkPolicy.enabled=true", "export.enabled=true", "export.parquet.enabled=true")...)
	if err != nil {
		t.Fatal(err)
	}
	if got := egressPorts(byComponent(objs, "NetworkPolicy", "export")); len(got) != 2 {
		t.Errorf("export with parquet only: egress %v, want DNS and NATS", got)
	}
}

func TestExportValueErrors(t *testing.T) {
	for _, c := range []struct {
		set  []string
		want string
	}{
		{sets("export.enabled=true"), "export.enabled needs a sink"},
		{sets("export.enabled=true", "export.parquet.enabled=true", "export.replicaCount=2"), "more than one replica is for PostgreSQL-only setups"},
		{sets("export.postgres.existingSecret=pg", "export.postgres.dsn=postgres://u:p@h/db"), "with existingSecret put it into that Secret"},
		{sets("export.config.export.postgres.dsn=postgres://u:p@h/db"), "would put a secret"},
		{sets("config.export.postgres.dsn=postgres://u:p@h/db"), "would put a secret"},
		{sets("config.export.parquet.dir=/x"), "export.parquet.dir is set by the chart"},
		{sets("export.postgres.dsn=mysql://u:p@h/db"), "export/postgres/dsn"},
		{sets("export.interval=soon"), "export/interval"},
		{sets("export.parquet.closeAfter=1"), "export/parquet/closeAfter"},
		{sets("export.parquet.persistence.size=lots"), "export/parquet/persistence/size"},
	} {
		_, err := helmTemplate(t, c.set...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.set, err, c.want)
		}
	}
}

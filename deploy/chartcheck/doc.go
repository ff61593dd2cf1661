// Package chartcheck holds the offline checks of the Helm chart helm/logtally,
// run by scripts/helm-check.sh:
//
//   - cmd/openapi2jsonschema turns k8s.io/kubernetes's api/openapi-spec/swagger.json
//     into strict JSON schemas in kubeconform's layout;
//   - cmd/render-k8s writes deploy/k8s (kustomize base and production overlay)
//     from `helm template` output;
//   - the tests (go test ./...) check the rendered chart: stages, ports, probes,
//     hardening, NATS routes, all-in-one mode and the config keys against the
//     binary's flags. They read what the script rendered (CHARTCHECK_DIR).
//     security_test.go checks the security values (Secrets referenced, never
//     in ConfigMaps; files from read-only Secret volumes; probes and helm test
//     matching the API's TLS), also on renders of its own (helm from PATH);
//     detector_test.go and export_test.go check those stages' objects;
//     e2e_test.go runs the rendered NATS and stages locally with every
//     security option on, and the helm test pod's script against them.
//
// It is a module of its own so that the main module does not depend on YAML
// and Kubernetes helpers it does not use.
package chartcheck

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
//
// It is a module of its own so that the main module does not depend on YAML
// and Kubernetes helpers it does not use.
package chartcheck

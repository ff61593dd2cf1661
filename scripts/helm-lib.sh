# shellcheck shell=bash
# Sourced by scripts/helm-*.sh: pinned versions and builders of the
# Kubernetes tools, all from the Go module proxy into $TOOLS_BIN (.bin/).
#   tools/k8s/go.mod   helm, kubeconform, kustomize
#   tools/kube/go.mod  kube-apiserver, kubectl (k8s.io/kubernetes with every
#                      staging module replaced by its published v0.X.Y)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CHART="$ROOT/helm/logtally"
# Kubernetes version assumed by helm lint/template, the JSON schemas and the
# API server: the k8s.io/kubernetes version pinned in tools/kube/go.mod.
KUBE_VERSION="${KUBE_VERSION:-$(awk '$1 == "k8s.io/kubernetes" { sub(/^v/, "", $2); print $2; exit }' "$ROOT/tools/kube/go.mod")}"
KUBE_MINOR="${KUBE_VERSION#*.}"
KUBE_MINOR="${KUBE_MINOR%%.*}"
KUBE_BIN="$TOOLS_BIN/kube-v$KUBE_VERSION"
SCHEMA_DIR="$TOOLS_BIN/kubeconform-schemas/v$KUBE_VERSION"
RELEASE="${RELEASE:-logtally}"
NAMESPACE="${NAMESPACE:-logtally}"

# helm, kubeconform and kustomize (go build skips what is up to date). helm
# gets the version stamps of its Makefile: its own version, and the Kubernetes
# version it assumes without --kube-version (v1.20 when not set).
build_k8s_tools() {
	mkdir -p "$TOOLS_BIN"
	local helm_version kube_major=${KUBE_VERSION%%.*} pkg ld
	helm_version=$(cd "$ROOT/tools/k8s" && go list -m -f '{{.Version}}' helm.sh/helm/v3)
	ld="-X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
	for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
		ld+=" -X $pkg.k8sVersionMajor=$kube_major -X $pkg.k8sVersionMinor=$KUBE_MINOR"
	done
	(cd "$ROOT/tools/k8s" &&
		go build -ldflags "$ld" -o "$TOOLS_BIN/" helm.sh/helm/v3/cmd/helm &&
		go build -o "$TOOLS_BIN/" github.com/yannh/kubeconform/cmd/kubeconform sigs.k8s.io/kustomize/kustomize/v5)
}

# kube-apiserver and kubectl, cached in .bin/kube-v<version>/ (a few minutes cold).
build_kube() {
	if [[ -x $KUBE_BIN/kube-apiserver && -x $KUBE_BIN/kubectl ]] &&
		"$KUBE_BIN/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes v$KUBE_VERSION"; then
		return 0
	fi
	echo "building kube-apiserver and kubectl v$KUBE_VERSION into $KUBE_BIN (minutes when cold)"
	local v="v$KUBE_VERSION" pkg
	local ld="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$KUBE_MINOR -X $pkg.gitTreeState=clean"
	done
	ld+=" -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
	mkdir -p "$KUBE_BIN"
	(cd "$ROOT/tools/kube" && go build -trimpath -ldflags "$ld" -o "$KUBE_BIN/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
}

# Strict JSON schemas of every built-in kind, generated from the swagger.json
# of k8s.io/kubernetes in the module cache.
build_schemas() {
	if [[ -f $SCHEMA_DIR/.complete ]]; then
		return 0
	fi
	local dir
	dir=$(cd "$ROOT/tools/kube" && go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" |
		awk -F'"' '$2 == "Dir" { print $4 }')
	if [[ ! -f $dir/api/openapi-spec/swagger.json ]]; then
		echo "no api/openapi-spec/swagger.json in k8s.io/kubernetes@v$KUBE_VERSION ($dir)" >&2
		return 1
	fi
	rm -rf "$SCHEMA_DIR"
	(cd "$ROOT/deploy/chartcheck" && go run ./cmd/openapi2jsonschema \
		-in "$dir/api/openapi-spec/swagger.json" -out "$SCHEMA_DIR")
	touch "$SCHEMA_DIR/.complete"
}

# helm template with the assumed Kubernetes version: helm_template OUT [helm args...]
helm_template() {
	local out=$1
	shift
	helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$KUBE_VERSION" "$@" >"$out"
}

# deploy/k8s into DIR (default: the committed one).
render_k8s() {
	local out=${1:-$ROOT/deploy/k8s} tmp
	tmp=$(mktemp -d)
	helm_template "$tmp/base.yaml" --skip-tests -f "$CHART/values.yaml"
	helm_template "$tmp/production.yaml" --skip-tests -f "$CHART/values-production.yaml"
	(cd "$ROOT/deploy/chartcheck" && go run ./cmd/render-k8s \
		-base "$tmp/base.yaml" -production "$tmp/production.yaml" -out "$out" -namespace "$NAMESPACE")
	rm -rf "$tmp"
}

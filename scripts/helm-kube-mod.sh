#!/usr/bin/env bash
# Point tools/kube/go.mod (kube-apiserver and kubectl of scripts/helm-check.sh)
# at another Kubernetes release: requires k8s.io/kubernetes vVERSION and
# replaces every staging module it lists (k8s.io/api, k8s.io/client-go, ...)
# with its published v0.MINOR.PATCH. helm-check.sh then assumes that version
# everywhere (helm --kube-version, JSON schemas, API server).
#   scripts/helm-kube-mod.sh 1.33.13
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

v=${1:?usage: $0 KUBERNETES_VERSION (e.g. 1.33.13)}
v=${v#v}
staging="v0.${v#*.}"
dir=$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@v$v" | awk -F'"' '$2 == "Dir" { print $4 }')
if [[ ! -f $dir/go.mod ]]; then
	echo "k8s.io/kubernetes@v$v: not downloaded" >&2
	exit 1
fi
mapfile -t mods < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$dir/go.mod" | sort -u)
if ((${#mods[@]} == 0)); then
	echo "k8s.io/kubernetes@v$v/go.mod replaces no staging modules" >&2
	exit 1
fi
{
	cat <<'HEADER'
// kube-apiserver and kubectl for the server-side dry run of
// scripts/helm-check.sh, built from k8s.io/kubernetes through the module
// proxy. k8s.io/kubernetes requires its staging modules (k8s.io/api, ...) at
// v0.0.0 and replaces them with ./staging/... directories, which do not apply
// to a dependency: every staging module is replaced here with its published
// v0.X.Y of the same minor. The list comes from k8s.io/kubernetes's go.mod;
// scripts/helm-kube-mod.sh rewrites this file for another version.
module github.com/logtally/logtally/tools/kube

HEADER
	echo "go $(go env GOVERSION | sed 's/^go//')"
	echo
	echo "replace ("
	for m in "${mods[@]}"; do
		printf '\t%s => %s %s\n' "$m" "$m" "$staging"
	done
	echo ")"
} >"$ROOT/tools/kube/go.mod"
rm -f "$ROOT/tools/kube/go.sum"
cd "$ROOT/tools/kube"
go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$v" "k8s.io/kubernetes/cmd/kubectl@v$v"
go mod tidy
echo "tools/kube now builds Kubernetes v$v (staging modules $staging); run scripts/helm-check.sh"

#!/usr/bin/env bash
# helm lint / helm template of helm/logtally with the pinned helm (built into
# .bin/ from tools/k8s/go.mod) and the Kubernetes version of tools/kube/go.mod.
#   scripts/helm-tool.sh lint [VALUES_FILE...]       default: every values file, --strict
#   scripts/helm-tool.sh template [VALUES_FILE...]   default: values.yaml; to stdout
# VALUES_FILE is relative to helm/logtally (values-small.yaml, ci/...) or a path.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/helm-lib.sh"
cd "$ROOT"

cmd=${1:-}
shift || true
build_k8s_tools >&2
files=()
for f in "$@"; do
	if [[ -f $CHART/$f ]]; then
		files+=("$CHART/$f")
	else
		files+=("$f")
	fi
done
case $cmd in
lint)
	if ((${#files[@]} == 0)); then
		files=("$CHART"/values*.yaml "$CHART"/ci/*.yaml)
	fi
	for f in "${files[@]}"; do
		echo "-- helm lint --strict -f ${f#"$ROOT"/}"
		helm lint --strict --kube-version "$KUBE_VERSION" --namespace "$NAMESPACE" "$CHART" -f "$f"
	done
	;;
template)
	args=()
	for f in "${files[@]}"; do
		args+=(-f "$f")
	done
	helm_template /dev/stdout "${args[@]}"
	;;
*)
	echo "usage: $0 lint|template [VALUES_FILE...]" >&2
	exit 2
	;;
esac

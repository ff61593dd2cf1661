#!/usr/bin/env bash
# Regenerate deploy/k8s (kustomize base + production overlay) from the chart:
#   base                 = helm template with helm/logtally/values.yaml
#   overlays/production  = values-production.yaml, as patches over the base
# Deterministic; scripts/helm-check.sh fails when the committed files differ.
#   scripts/helm-render-k8s.sh [OUTDIR]     (default deploy/k8s)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/helm-lib.sh"
cd "$ROOT"
build_k8s_tools
render_k8s "${1:-$ROOT/deploy/k8s}"
echo "deploy/k8s rendered (Kubernetes $KUBE_VERSION)"

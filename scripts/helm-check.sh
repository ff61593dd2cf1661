#!/usr/bin/env bash
# Offline checks of the Helm chart (helm/logtally) and deploy/k8s:
#   1. helm lint --strict and helm template for every values file
#      (values.yaml, values-small.yaml, values-production.yaml, ci/*.yaml)
#   2. kubeconform -strict of every render and of `kustomize build` of
#      deploy/k8s, with JSON schemas generated from k8s.io/kubernetes's
#      swagger.json (CRD kinds ScaledObject and ServiceMonitor have none there
#      and are skipped)
#   3. deploy/k8s is what scripts/helm-render-k8s.sh writes
#   4. go test in deploy/chartcheck on the renders (stages, ports, probes,
#      hardening, NATS routes, all-in-one, config keys vs `logtally -h`)
#   5. a real kube-apiserver (built from k8s.io/kubernetes) on etcd, loopback
#      only: helm install --dry-run=server and kubectl apply --dry-run=server
#      of every render (optional objects whose CRDs are missing left out)
# Every tool is built from the Go module proxy into .bin/ (see scripts/helm-lib.sh);
# etcd comes from Debian (etcd-server, installed when missing and root).
#   HELM_CHECK_SERVER=0 scripts/helm-check.sh   skip step 5
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/helm-lib.sh"
cd "$ROOT"

check_start=$SECONDS
current=""
WORK=$(mktemp -d)
PIDS=()
cleanup() {
	local rc=$?
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if ((rc != 0)); then
		echo "== helm-check FAILED: step \"$current\" (exit $rc) after $((SECONDS - check_start))s ==" >&2
		if [[ -f $WORK/apiserver.log ]]; then
			echo "-- last lines of kube-apiserver's log:" >&2
			tail -n 20 "$WORK/apiserver.log" >&2
		fi
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT

step() {
	current=$1
	shift
	echo
	echo "== $current =="
	local start=$SECONDS
	"$@"
	echo "== $current: ok ($((SECONDS - start))s) =="
}

# name => values files (relative to the chart)
declare -A VALUES=(
	[cluster]="values.yaml"
	[small]="values-small.yaml"
	[production]="values-production.yaml"
	[all-features]="ci/all-features-values.yaml"
	[external-nats]="ci/external-nats-values.yaml"
	[allinone-all-features]="ci/allinone-all-features-values.yaml"
)
NAMES=(cluster small production all-features external-nats allinone-all-features)
RENDER="$WORK/render"
mkdir -p "$RENDER"

tools() {
	build_k8s_tools
	helm version --short
	echo "kubeconform $(kubeconform -v)"
	echo "kustomize $(kustomize version)"
	echo "Kubernetes version assumed: $KUBE_VERSION"
}

lint() {
	local n
	for n in "${NAMES[@]}"; do
		echo "-- helm lint --strict -f ${VALUES[$n]}"
		helm lint --strict --quiet --kube-version "$KUBE_VERSION" --namespace "$NAMESPACE" "$CHART" -f "$CHART/${VALUES[$n]}"
	done
}

template() {
	local n
	for n in "${NAMES[@]}"; do
		helm_template "$RENDER/$n.yaml" -f "$CHART/${VALUES[$n]}"
		echo "$n (${VALUES[$n]}): $(grep -c '^kind:' "$RENDER/$n.yaml") objects"
	done
	helm_template "$RENDER/cluster-notests.yaml" --skip-tests -f "$CHART/values.yaml"
	helm_template "$RENDER/production-notests.yaml" --skip-tests -f "$CHART/values-production.yaml"
	kustomize build deploy/k8s/base >"$RENDER/kustomize-base.yaml"
	kustomize build deploy/k8s/overlays/production >"$RENDER/kustomize-production.yaml"
}

schemas() {
	build_schemas
	local files=()
	local n
	for n in "${NAMES[@]}" kustomize-base kustomize-production; do
		files+=("$RENDER/$n.yaml")
	done
	# ScaledObject (KEDA) and ServiceMonitor (Prometheus operator) are CRDs:
	# Kubernetes's OpenAPI has no schema for them.
	kubeconform -strict -summary -output text \
		-schema-location "$SCHEMA_DIR/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
		-skip ScaledObject,ServiceMonitor "${files[@]}"
}

drift() {
	render_k8s "$WORK/k8s" >/dev/null
	if ! diff -ru deploy/k8s "$WORK/k8s"; then
		echo "deploy/k8s is out of date: run task helm:render" >&2
		return 1
	fi
	echo "deploy/k8s is up to date"
}

gotests() {
	go build -o "$WORK/logtally" ./cmd/logtally
	"$WORK/logtally" -h >"$WORK/flags.txt" 2>&1 || true
	(cd deploy/chartcheck && CHARTCHECK_DIR="$RENDER" CHARTCHECK_FLAGS="$WORK/flags.txt" go test -count=1 ./...)
}

free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

ensure_etcd() {
	if command -v etcd >/dev/null; then
		return 0
	fi
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		echo "installing Debian's etcd-server"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
		# The package starts no service here (no init), but stop one if it did.
		systemctl stop etcd 2>/dev/null || true
	else
		echo "etcd is required (Debian: apt-get install etcd-server)" >&2
		return 1
	fi
}

kube_build() {
	build_kube
	"$KUBE_BIN/kube-apiserver" --version
	ensure_etcd
	etcd --version | sed -n 1p # sed reads to the end: head would SIGPIPE etcd under pipefail
}

start_apiserver() {
	local etcd_port peer_port api_port
	etcd_port=$(free_port)
	peer_port=$(free_port)
	api_port=$(free_port)
	mkdir -p "$WORK/etcd" "$WORK/certs"
	etcd --name helm-check --data-dir "$WORK/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-cluster "helm-check=http://127.0.0.1:$peer_port" >"$WORK/etcd.log" 2>&1 &
	PIDS+=($!)
	openssl genrsa -out "$WORK/sa.key" 2048 2>/dev/null
	openssl rsa -in "$WORK/sa.key" -pubout -out "$WORK/sa.pub" 2>/dev/null
	local token
	token=$(openssl rand -hex 16)
	echo "$token,helm-check,helm-check,system:masters" >"$WORK/tokens.csv"
	local i
	for i in $(seq 1 50); do
		if curl -fsS "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1; then
			break
		fi
		sleep 0.2
	done
	# Serving certificate: self-signed by kube-apiserver into --cert-dir.
	"$KUBE_BIN/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$etcd_port" \
		--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
		--cert-dir "$WORK/certs" \
		--token-auth-file "$WORK/tokens.csv" \
		--authorization-mode AlwaysAllow \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$WORK/sa.pub" \
		--service-account-signing-key-file "$WORK/sa.key" \
		--service-cluster-ip-range 10.96.0.0/16 \
		--endpoint-reconciler-type none \
		--enable-priority-and-fairness=false \
		>"$WORK/apiserver.log" 2>&1 &
	PIDS+=($!)
	export KUBECONFIG="$WORK/kubeconfig"
	kubectl config set-cluster helm-check --server "https://127.0.0.1:$api_port" --insecure-skip-tls-verify=true >/dev/null
	kubectl config set-credentials helm-check --token "$token" >/dev/null
	kubectl config set-context helm-check --cluster helm-check --user helm-check >/dev/null
	kubectl config use-context helm-check >/dev/null
	local deadline=$((SECONDS + 180))
	until kubectl get --raw /readyz >/dev/null 2>&1; do
		if ((SECONDS > deadline)); then
			echo "kube-apiserver not ready after 180s" >&2
			return 1
		fi
		if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then
			echo "kube-apiserver exited" >&2
			return 1
		fi
		sleep 1
	done
	kubectl version
	kubectl create namespace "$NAMESPACE"
	# No controller manager runs: create what it would (the default
	# ServiceAccount that pods, such as the helm test pod, are admitted with).
	kubectl -n "$NAMESPACE" create serviceaccount default
}

kubectl() { "$KUBE_BIN/kubectl" "$@"; }

server_dry_run() {
	start_apiserver
	local n
	# Objects of CRDs that this API server does not have (KEDA, Prometheus
	# operator) are turned off; everything else as in the values file.
	local nocrd=(--set parser.keda.enabled=false --set serviceMonitor.enabled=false)
	for n in "${NAMES[@]}"; do
		echo "-- helm install --dry-run=server -f ${VALUES[$n]}"
		helm install "$RELEASE" "$CHART" --namespace "$NAMESPACE" --dry-run=server \
			-f "$CHART/${VALUES[$n]}" "${nocrd[@]}" >"$WORK/install-$n.yaml"
		echo "-- kubectl apply --dry-run=server (${VALUES[$n]})"
		helm_template "$WORK/server-$n.yaml" -f "$CHART/${VALUES[$n]}" "${nocrd[@]}"
		kubectl apply --dry-run=server -n "$NAMESPACE" -f "$WORK/server-$n.yaml" | tail -n +1 >"$WORK/apply-$n.txt"
		echo "   $(wc -l <"$WORK/apply-$n.txt") objects accepted"
	done
	local k
	for k in base overlays/production; do
		echo "-- kubectl apply --dry-run=server -k deploy/k8s/$k"
		kubectl apply --dry-run=server -k "deploy/k8s/$k" >"$WORK/apply-k.txt"
		echo "   $(wc -l <"$WORK/apply-k.txt") objects accepted"
	done
}

step "tools: helm, kubeconform, kustomize (tools/k8s/go.mod)" tools
step "helm lint --strict (every values file)" lint
step "helm template (every values file) and kustomize build deploy/k8s" template
step "kubeconform -strict (Kubernetes $KUBE_VERSION schemas)" schemas
step "deploy/k8s drift" drift
step "go test ./... in deploy/chartcheck" gotests
if [[ ${HELM_CHECK_SERVER:-1} != 0 ]]; then
	step "build kube-apiserver and kubectl v$KUBE_VERSION (tools/kube/go.mod), etcd" kube_build
	step "server-side dry run on kube-apiserver + etcd" server_dry_run
else
	echo "== server-side dry run skipped (HELM_CHECK_SERVER=0) =="
fi
echo "== helm-check: all steps passed ($((SECONDS - check_start))s) =="

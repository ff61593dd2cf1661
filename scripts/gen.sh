#!/usr/bin/env bash
# Regenerate gen/ from proto/ with buf and the pinned plugins.
#   scripts/gen.sh          lint the protos and regenerate
#   scripts/gen.sh --check  also fail if gen/ differs from what is committed
# Run scripts/tools.sh first (the Taskfile and .ci/run do).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

for t in buf protoc-gen-go protoc-gen-go-grpc; do
	if [[ ! -x $TOOLS_BIN/$t ]]; then
		echo "missing $TOOLS_BIN/$t: run scripts/tools.sh (task tools)" >&2
		exit 1
	fi
done

buf lint
buf generate

if [[ ${1:-} == --check ]]; then
	if ! git diff --exit-code --stat -- gen/ || [[ -n $(git status --porcelain --untracked-files=all -- gen/) ]]; then
		git status --porcelain --untracked-files=all -- gen/ >&2
		git diff -- gen/ | sed -n 1,200p >&2
		echo "generated code is out of date: run task gen" >&2
		exit 1
	fi
	echo "gen/ is up to date"
fi

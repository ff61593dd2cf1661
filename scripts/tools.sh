#!/usr/bin/env bash
# Build the pinned development tools into $TOOLS_BIN (default: <repo>/.bin).
#
#  - every `tool` of tools/go.mod (buf, protoc-gen-go-grpc, task, ...), at the
#    versions pinned there;
#  - protoc-gen-go from the main module's go.mod: buf v1.75.0 requires a newer
#    google.golang.org/protobuf than v1.36.12, so protoc-gen-go cannot share
#    tools/go.mod with buf. Building it from the root module pins it to the
#    same google.golang.org/protobuf version as the runtime the generated code
#    links against (v1.36.12), checked by the root go.sum.
#
#   scripts/tools.sh                  build every tool
#   scripts/tools.sh buf protoc-gen-go  build only these (by binary name)
# Go's build cache makes a second run take a few seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PROTOC_GEN_GO=google.golang.org/protobuf/cmd/protoc-gen-go

mkdir -p "$TOOLS_BIN"
mapfile -t all < <(cd "$ROOT/tools" && go list tool)
pkgs=() want_protoc_gen_go=
if (($# == 0)); then
	pkgs=("${all[@]}") want_protoc_gen_go=1
else
	for name in "$@"; do
		if [[ $name == protoc-gen-go ]]; then
			want_protoc_gen_go=1
			continue
		fi
		found=
		for p in "${all[@]}"; do
			if [[ ${p##*/} == "$name" ]]; then
				pkgs+=("$p") found=1
			fi
		done
		if [[ -z $found ]]; then
			echo "unknown tool $name; tools/go.mod has: ${all[*]##*/} (and protoc-gen-go from go.mod)" >&2
			exit 1
		fi
	done
fi

if ((${#pkgs[@]})); then
	(cd "$ROOT/tools" && go build -o "$TOOLS_BIN/" "${pkgs[@]}")
fi
if [[ -n $want_protoc_gen_go ]]; then
	(cd "$ROOT" && go build -o "$TOOLS_BIN/" "$PROTOC_GEN_GO")
fi

echo "tools in $TOOLS_BIN:"
for t in "$TOOLS_BIN"/*; do
	if [[ -f $t && -x $t ]]; then
		echo "  $(basename "$t")"
	fi
done

# shellcheck shell=bash
# Sourced by the other scripts and by .ci/run: repo root, local tool bin dir,
# PATH and the buf cache, all kept inside the repository.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# TOOLS_BIN holds the pinned tools (see scripts/tools.sh); git-ignored.
TOOLS_BIN="${TOOLS_BIN:-$ROOT/.bin}"
export TOOLS_BIN
export PATH="$TOOLS_BIN:$PATH"
# buf caches under ~/.cache/buf by default; keep it next to the tools.
export BUF_CACHE_DIR="${BUF_CACHE_DIR:-$TOOLS_BIN/buf-cache}"

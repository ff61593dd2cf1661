#!/usr/bin/env bash
# Run every fuzz target of the repository for FUZZTIME (default 30s) each.
# Targets are discovered with grep (`func FuzzXxx(` in *_test.go), so new ones
# are picked up without editing this script.
#   FUZZTIME=10s scripts/fuzz.sh [dir ...]    (default dir: the whole repo)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

FUZZTIME="${FUZZTIME:-30s}"
dirs=("$@")
((${#dirs[@]})) || dirs=(.)

mapfile -t targets < <(
	grep -rE --include='*_test.go' \
		--exclude-dir=.git --exclude-dir=testdata --exclude-dir=vendor \
		--exclude-dir=.bin --exclude-dir=bin --exclude-dir=tools \
		'^func Fuzz[A-Za-z0-9_]*\(' "${dirs[@]}" |
		sed -E 's|^([^:]*)/[^/:]*:func (Fuzz[A-Za-z0-9_]*)\(.*|\1 \2|' |
		sort -u
)
if ((${#targets[@]} == 0)); then
	echo "no fuzz targets found"
	exit 0
fi

echo "${#targets[@]} fuzz targets, ${FUZZTIME} each"
for t in "${targets[@]}"; do
	dir=${t% *} name=${t#* }
	[[ $dir == ./* || $dir == /* ]] || dir=./$dir
	echo "-- $name ($dir)"
	go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$dir"
done

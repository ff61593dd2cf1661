#!/usr/bin/env bash
# Run every fuzz target of the repository for FUZZTIME (default 30s) each.
# Targets are discovered with grep (`func FuzzXxx(` in *_test.go), so new ones
# are picked up without editing this script; the ones listed in `required`
# must be found in a run over the whole repo, so that a rename cannot drop
# one silently.
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

# package dir and target that must exist
required=(
	"./internal/counts FuzzDecodeEntries"      # the entry encoding of windows and chunks
	"./internal/counts FuzzUnmarshalManifest" # window manifests (format 1 and 2) and chunks
	"./services/ingest FuzzScanLines"
	"./services/ingest FuzzScanSyslog"
	"./services/ingest FuzzHTTPIngestBody" # plain and gzip ingest bodies against a decoding oracle
	"./services/parser/format FuzzParse"
	"./internal/windows FuzzParseRange" # range parameters through the read model's checks
	"./services/query FuzzQueryAPI" # every HTTP endpoint with arbitrary parameters
)
if (($# == 0)); then
	for r in "${required[@]}"; do
		found=0
		for t in "${targets[@]}"; do
			[[ ./${t#./} == "$r" ]] && found=1
		done
		if ((!found)); then
			echo "fuzz target ${r#* } (${r% *}) not found" >&2
			exit 1
		fi
	done
fi

echo "${#targets[@]} fuzz targets, ${FUZZTIME} each"
for t in "${targets[@]}"; do
	dir=${t% *} name=${t#* }
	[[ $dir == ./* || $dir == /* ]] || dir=./$dir
	echo "-- $name ($dir)"
	go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$dir"
done

#!/usr/bin/env bash
# Fail, listing the files, if any Go file in the repository is not gofmt'ed.
# Checks tracked files plus untracked ones that are not git-ignored.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.go')
if ((${#files[@]} == 0)); then
	echo "no Go files"
	exit 0
fi
unformatted=$(gofmt -l "${files[@]}")
if [[ -n $unformatted ]]; then
	echo "files not formatted with gofmt (run gofmt -w on them):" >&2
	echo "$unformatted" >&2
	exit 1
fi
echo "gofmt: ${#files[@]} files ok"

#!/usr/bin/env bash
# Installs DuckDB for Node.js (@duckdb/node-api, the official npm package,
# with its prebuilt engine) into .bin/duckdb: the export tests read the
# Parquet files back with it (internal/ducktest). Needs node and npm.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION=$(sed -n 's/^const Version = "\(.*\)"$/\1/p' "$ROOT/internal/ducktest/ducktest.go")
DIR="$ROOT/.bin/duckdb"
if [[ -f $DIR/node_modules/@duckdb/node-api/package.json ]] &&
	grep -q "\"version\": \"$VERSION\"" "$DIR/node_modules/@duckdb/node-api/package.json"; then
	echo "duckdb node-api $VERSION: present"
	exit 0
fi
mkdir -p "$DIR"
npm install --prefix "$DIR" --no-audit --no-fund --no-save "@duckdb/node-api@$VERSION" >/dev/null
echo "duckdb node-api $VERSION: installed into $DIR"

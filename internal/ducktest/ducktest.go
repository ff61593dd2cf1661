// Package ducktest runs SQL in a real DuckDB (the @duckdb/node-api npm
// package, run by Node.js) for tests that check files DuckDB must read,
// such as the Parquet export. scripts/duckdb.sh installs it into
// .bin/duckdb (LOGTALLY_DUCKDB_DIR overrides the place). With CI or
// LOGTALLY_REQUIRE_DUCKDB=1 set, a missing DuckDB fails the test instead
// of skipping it.
package ducktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Version is the @duckdb/node-api release scripts/duckdb.sh installs.
const Version = "1.5.6-r.1"

const script = `import { DuckDBInstance } from '@duckdb/node-api';
const db = await DuckDBInstance.create(':memory:');
const c = await db.connect();
const r = await c.runAndReadAll(process.argv[2]);
process.stdout.write(JSON.stringify(r.getRowObjectsJson()));
`

func dir() (string, error) {
	if d := os.Getenv("LOGTALLY_DUCKDB_DIR"); d != "" {
		return d, nil
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), ".bin", "duckdb"), nil
}

// DB runs queries.
type DB struct {
	script string
}

// Open finds DuckDB or skips (fails under CI) the test.
func Open(t testing.TB) *DB {
	t.Helper()
	d, err := dir()
	if err == nil {
		_, err = os.Stat(filepath.Join(d, "node_modules", "@duckdb", "node-api", "package.json"))
	}
	if err == nil {
		_, err = exec.LookPath("node")
	}
	if err != nil {
		msg := fmt.Sprintf("DuckDB for Node.js is not installed (run scripts/duckdb.sh): %v", err)
		if os.Getenv("CI") != "" || os.Getenv("LOGTALLY_REQUIRE_DUCKDB") == "1" {
			t.Fatal(msg + " (required here: CI or LOGTALLY_REQUIRE_DUCKDB=1 is set)")
		}
		t.Skip(msg)
	}
	// The script lives beside node_modules so that Node resolves the
	// package from it.
	path := filepath.Join(d, "query.mjs")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return &DB{script: path}
}

// Query runs one statement and returns its rows as JSON objects (DuckDB's
// JSON form: big integers as strings).
func (db *DB) Query(t testing.TB, sql string) []map[string]any {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("node", db.script, sql)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("duckdb %q: %v\n%s", sql, err, stderr.String())
	}
	var rows []map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &rows); err != nil {
		t.Fatalf("duckdb %q: %v\n%s", sql, err, stdout.String())
	}
	return rows
}

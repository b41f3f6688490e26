#!/usr/bin/env bash
# Runs the whole test suite in the one cargo profile that also builds lake (bundled DuckDB compiles once).
# The PostgreSQL catalog tests get a throwaway cluster (scripts/pg-cluster.sh) unless LAKE_TEST_PG_URI is set.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lake-target}"
if [ -z "${LAKE_TEST_PG_URI:-}" ] && { command -v pg_config >/dev/null || ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; }; then
    pg_dir="$(mktemp -d "${TMPDIR:-/tmp}/lake-pg.XXXXXX")"
    trap 'bash scripts/pg-cluster.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
    LAKE_TEST_PG_URI="$(bash scripts/pg-cluster.sh start "$pg_dir")"
    export LAKE_TEST_PG_URI
fi
cargo test --release --locked "$@"

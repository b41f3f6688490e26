#!/usr/bin/env bash
# Write-path benchmark, in one run on a local warehouse:
#  1. `cargo bench --bench write_path`: lake's Iceberg write vs DuckDB's own COPY TO parquet of the same query;
#  2. peak RSS of `lake plan --auto-apply` on a one-model project producing ROWS rows (memory must stay flat).
# Usage: scripts/bench-write.sh [ROWS]   (default 10000000)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lake-target}"
rows="${1:-10000000}"
cargo build --release --locked --all-targets # the test build's features: no second build of the dependencies
cargo bench --locked --bench write_path -- "$rows"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/models"
printf 'model_defaults:\n  dialect: duckdb\n  start: 2024-01-01\n' >"$work/config.yaml"
cat >"$work/models/big.sql" <<SQL
MODEL (name bench.big, kind FULL);
SELECT range AS id, range * 2 AS amount, 'row-' || range AS label, DATE '2024-01-01' + (range % 365)::INTEGER AS day
FROM range($rows)
SQL
/usr/bin/time -f "%e %M" -o "$work/time" "$CARGO_TARGET_DIR/release/lake" -p "$work" plan --auto-apply >/dev/null 2>"$work/err" \
    || { cat "$work/err"; exit 1; }
read -r secs kib <"$work/time"
printf 'lake plan --auto-apply, one FULL model of %s rows: %.2f s, peak RSS %.0f MiB\n' "$rows" "$secs" "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')"

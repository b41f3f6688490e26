#!/usr/bin/env bash
# Benchmarks lake on generated SQLMesh projects (../shared/bench/gen_project.py, its default mix of FULL and
# INCREMENTAL_BY_TIME_RANGE models):
# first `plan --auto-apply`, a no-op `plan`, and a plan after a leaf edit, at each N. Prints wall time and peak RSS.
# Usage: scripts/bench.sh [N ...]   (default: 200 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lake-target}"
cargo build --release --locked
lake="$CARGO_TARGET_DIR/release/lake"
gen="../shared/bench/gen_project.py"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(200 1000)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

measure() { # label, command...
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err" || { cat "$work/err"; exit 1; }
  read -r secs kib <"$work/time"
  printf '%-6s %-28s %8.2f s %8.1f MiB\n' "$n" "$label" "$secs" "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')"
}

printf '%-6s %-28s %10s %12s\n' "N" "step" "wall" "peak RSS"
for n in "${sizes[@]}"; do
  project="$work/p$n"
  python3 "$gen" "$project" --models "$n" >/dev/null
  measure "first plan --auto-apply" "$lake" -p "$project" plan --auto-apply
  measure "no-op plan" "$lake" -p "$project" plan
  python3 "$gen" "$project" --mutate leaf >/dev/null
  measure "plan after leaf edit" "$lake" -p "$project" plan --auto-apply
  # Exit 1 only says files would change.
  measure "format --check" bash -c '"$0" -p "$1" format --check --json; [ $? -le 1 ]' "$lake" "$project"
  printf 'linter:\n  enabled: true\n  rules: ALL\n  ignored_rules: [nomissingunittest]\n  warn_rules: [nomissingaudits, nomissingowner, noselectstar, noambiguousprojections]\n' >>"$project/config.yaml"
  measure "lint (all rules)" "$lake" -p "$project" lint
done

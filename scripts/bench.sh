#!/usr/bin/env bash
# Benchmarks lake on generated SQLMesh projects (../shared/bench/gen_project.py, its default mix of FULL and
# INCREMENTAL_BY_TIME_RANGE models): first `plan --auto-apply` beside the same models run as raw DuckDB plus
# one Parquet file each (scripts/bench-raw.py) with their ratio, a no-op `plan`, the lineage of every model, a
# dev plan and an apply after a leaf edit, a dev apply after a one-column edit with and without column-aware
# plans (and how many models each built), format and lint, at each N (the first apply with its `--profile` breakdown); `lake --version` 100 times; then
# one model built in 3,000 daily batches, with and without rows. Prints wall time and peak RSS.
# Usage: scripts/bench.sh [N ...]   (default: 1000 10000; BENCH_BATCHES=0 skips the batches case)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lake-target}"
cargo build --release --locked --all-targets # the test build's features: no second build of the dependencies
lake="$CARGO_TARGET_DIR/release/lake"
gen="../shared/bench/gen_project.py"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)
python="${LAKE_TEST_PYTHON:-$HOME/.cache/lake-venv/bin/python}"
"$python" -c 'import duckdb' 2>/dev/null || { echo "bench.sh needs a Python with duckdb (LAKE_TEST_PYTHON; .ci/run makes one)"; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

measure() { # label, command...
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err" || { cat "$work/err"; exit 1; }
  read -r secs kib <"$work/time"
  printf '%-6s %-34s %8.2f s %8.1f MiB\n' "$n" "$label" "$secs" "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')"
}

# Wraps the `category` column of the first model of the first layer in FUNCTION(...): a breaking change to one
# column, which only the children reading it need (the column-aware plan) and every child gets without.
column_edit() { # project, function
  local file
  file="$1/models/$(ls "$1/models" | grep '^m_01_' | sort | head -1)"
  python3 - "$file" "$2" <<'PY'
import re, sys
path, function = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r"^  (.*a\.category.*?)(?: AS category)?$", rf"  {function}(\1) AS category", text, count=1, flags=re.M)
open(path, "w").write(text)
PY
}

printf '%-6s %-34s %10s %12s\n' "N" "step" "wall" "peak RSS"
for n in "${sizes[@]}"; do
  project="$work/p$n"
  python3 "$gen" "$project" --models "$n" >/dev/null
  measure "raw DuckDB + Parquet" "$python" scripts/bench-raw.py "$project" "$(date -u +%F)" "$work/raw$n"
  raw="$secs"
  measure "plan of the fresh project" "$lake" -p "$project" plan --no-prompts
  # The raw run's files are deleted after lake's apply, not before: ext4 makes file creation right after a mass
  # deletion slower (its inode allocator skips recently freed inodes), which would be charged to lake.
  measure "first plan --auto-apply" "$lake" -p "$project" --profile plan --auto-apply
  sed -n '/^profile/,$p' "$work/err" | sed 's/^/       /'
  printf '%-6s %-34s %8.2f x\n' "$n" "first apply / raw" "$(awk -v a="$secs" -v b="$raw" 'BEGIN { print a / b }')"
  measure "no-op plan" "$lake" -p "$project" plan
  leaf="bench.$(ls "$project/models" | grep '^m_' | sort | tail -1 | sed 's/\.sql$//')"
  measure "lineage (every model traced)" "$lake" -p "$project" lineage "$leaf" --format json
  python3 "$gen" "$project" --mutate leaf >/dev/null
  measure "dev plan after leaf edit" "$lake" -p "$project" plan bench_dev --no-prompts
  measure "plan after leaf edit" "$lake" -p "$project" plan --auto-apply
  column_edit "$project" TRIM
  measure "dev apply, column edit" "$lake" -p "$project" plan bench_columns --auto-apply
  printf '%-6s %-34s %s\n' "$n" "  column-aware: built" "$(grep -o '[0-9]* models\? built' "$work/err")"
  column_edit "$project" LTRIM
  printf 'plan:\n  column_aware: false\n' >>"$project/config.yaml"
  measure "same, column_aware: false" "$lake" -p "$project" plan bench_all --auto-apply
  printf '%-6s %-34s %s\n' "$n" "  every child: built" "$(grep -o '[0-9]* models\? built' "$work/err")"
  sed -i '/^plan:$/,$d' "$project/config.yaml"
  # Exit 1 only says files would change.
  measure "format --check" bash -c '"$0" -p "$1" format --check --json; [ $? -le 1 ]' "$lake" "$project"
  printf 'linter:\n  enabled: true\n  rules: ALL\n  ignored_rules: [nomissingunittest]\n  warn_rules: [nomissingaudits, nomissingowner, noselectstar, noambiguousprojections]\n' >>"$project/config.yaml"
  measure "lint (all rules)" "$lake" -p "$project" lint
  rm -rf "$work/raw$n"
done

n="-"
measure "100 x lake --version" bash -c 'for _ in $(seq 100); do "$0" --version >/dev/null; done' "$lake"
printf '%-6s %-34s %8.2f ms\n' "$n" "per lake --version" "$(awk -v s="$secs" 'BEGIN { print s * 10 }')"

# One INCREMENTAL_BY_TIME_RANGE model in daily batches (batch_size 1, lookback 3, partitioned_by, an audit)
# from 2018-01-01: 3,000 batches, as a dbt-converted event project has. "with rows": ten rows every day, the
# batches evaluated `concurrent_tasks` at once (the default) and one at a time (`batch_concurrency 1`);
# "empty": rows on the first days only, so almost every batch writes nothing.
batches_project() { # folder, days with rows
  mkdir -p "$1/models" "$1/seeds"
  printf 'model_defaults:\n  dialect: duckdb\n  start: 2018-01-01\n' >"$1/config.yaml"
  "$python" - "$1/seeds/events.csv" "$2" <<'PY'
import csv, datetime, sys
with open(sys.argv[1], "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(["event_id", "event_date", "amount"])
    day0 = datetime.date(2018, 1, 1)
    for d in range(int(sys.argv[2])):
        for i in range(10):
            out.writerow([d * 10 + i, day0 + datetime.timedelta(days=d), round(d * 0.5 + i, 2)])
PY
  cat >"$1/models/events.sql" <<'SQL'
MODEL (name bench.events, kind SEED (path '../seeds/events.csv'),
  columns (event_id INT, event_date DATE, amount DOUBLE));
SQL
  cat >"$1/models/daily_events.sql" <<'SQL'
MODEL (
  name bench.daily_events,
  kind INCREMENTAL_BY_TIME_RANGE (time_column event_date, batch_size 1, lookback 3),
  partitioned_by event_date,
  audits (not_null(columns := (event_id)))
);
SELECT event_id, event_date, amount * 2 AS amount FROM bench.events
WHERE event_date BETWEEN @start_ds AND @end_ds
SQL
}
if [ "${BENCH_BATCHES:-1}" != 0 ]; then
  end="2026-03-20 12:00:00" # 2018-01-01 .. 2026-03-19: 3,000 daily intervals
  # label:days with rows:batch_concurrency (empty: the default, `concurrent_tasks`)
  for variant in "with rows:3000:" "with rows, one at a time:3000:1" "empty:5:"; do
    IFS=: read -r label days lanes <<<"$variant"; n=3000
    project="$work/batches-${label//[ ,]/-}"
    batches_project "$project" "$days"
    [ -z "$lanes" ] || sed -i "s/batch_size 1, lookback 3/&, batch_concurrency $lanes/" "$project/models/daily_events.sql"
    measure "3000 batches ($label)" "$lake" -p "$project" plan --auto-apply --execution-time "$end"
    printf '%-6s %-34s %8.1f ms\n' "$n" "per batch ($label)" "$(awk -v s="$secs" 'BEGIN { print s * 1000 / 3000 }')"
  done
fi

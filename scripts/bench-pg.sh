#!/usr/bin/env bash
# Benchmarks `lake serve --pg-port` against DuckDB in-process on the same files: queries per second with 1 and 16
# clients for a point lookup and an aggregate over the largest model of a generated project of N models
# (../shared/bench/gen_project.py, applied to prod), and rows per second of a 1-million-row result streamed to
# psycopg; then the time until the first answer, and pgbench (PostgreSQL's load client) on the same queries in
# simple, extended and prepared mode and with 200 connections of which 100 query at once (p99). The in-process side opens the same Parquet files (the server's own view definitions) in Python's
# duckdb, so the ratio is what the protocol and the server cost.
# Usage: scripts/bench-pg.sh [N] [SECONDS]   (default: 1000 models, 5 s per level)
# Needs a Python with psycopg and duckdb (LAKE_TEST_PYTHON, or the venv .ci/run makes).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lake-target}"
n="${1:-1000}"
seconds="${2:-5}"
python="${LAKE_TEST_PYTHON:-$HOME/.cache/lake-venv/bin/python}"
# LAKE_BIN compares another build (e.g. an earlier commit's binary) on the same machine and data.
if [ -z "${LAKE_BIN:-}" ]; then
    cargo build --release --locked --all-targets # the test build's features: no second build of the dependencies
fi
lake="${LAKE_BIN:-$CARGO_TARGET_DIR/release/lake}"
work="$(mktemp -d)"
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
python3 ../shared/bench/gen_project.py "$work/p" --models "$n" >/dev/null
"$lake" -p "$work/p" plan --auto-apply >/dev/null 2>&1
started="$(date +%s.%N)"
"$lake" -p "$work/p" serve --pg-port 0 --no-rest --json --max-concurrent-queries 16 >"$work/addr" 2>/dev/null &
server=$!
# Up to 10 minutes to start (N=10,000 takes a while), as long as the server is alive.
for _ in $(seq 6000); do
    [ -s "$work/addr" ] && break
    kill -0 "$server" 2>/dev/null || { echo "lake serve exited before it was ready" >&2; exit 1; }
    sleep 0.1
done
address="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pg"])' "$work/addr")"
host="${address%:*}"
port="${address##*:}"
# Ready: the first query answered, counted from the command's start.
pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
if [ -x "$pgbin/psql" ]; then
    until "$pgbin/psql" -X -A -t -h "$host" -p "$port" -U lake -d prod -c 'select 1' >/dev/null 2>&1; do sleep 0.05; done
    echo "ready to answer: $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s after lake serve started"
fi
"$python" - "$address" "$seconds" "$work" <<'PY'
import re, sys, threading, time

import duckdb
import psycopg

host, port = sys.argv[1].rsplit(":", 1)
seconds = float(sys.argv[2])
dsn = f"host={host} port={port} dbname=prod user=lake"
server = psycopg.connect(dsn, autocommit=True)

# The in-process reference: the server's views of the physical tables, recreated in a local DuckDB.
local = duckdb.connect()
views = server.execute(
    "select schema_name, view_name, sql from duckdb_views() "
    "where starts_with(schema_name, 'lake__') and database_name not in ('prod') and sql like '%read_parquet%'"
).fetchall()
for schema, name, sql in views:
    local.execute(f'create schema if not exists "{schema}"')
    body = sql[sql.index(" AS ") + 4:].rstrip(";")
    local.execute(f'create or replace view "{schema}"."{name}" as {body}')
sizes = sorted(
    ((local.execute(f'select count(*) from "{s}"."{n}"').fetchone()[0], s, n) for s, n, _ in views),
    reverse=True,
)
rows, schema, name = sizes[0]
table = f'"{schema}"."{name}"'
columns = [c[0] for c in local.execute(f"describe {table}").fetchall()]
key = columns[0]
value = local.execute(f"select {key} from {table} limit 1 offset {rows // 2}").fetchone()[0]
print(f"{len(views)} physical tables; the largest is {schema}.{name} with {rows:,} rows")
# pgbench's scripts (below, after this program): the same two queries, the key as a pgbench variable.
work = sys.argv[3]
lookup = f"select * from {table} where {key} = :key limit 1"
if isinstance(value, int):
    lookup = f"\\set key {value}\n" + lookup
else:
    lookup = lookup.replace(":key", "'" + str(value).replace("'", "''") + "'")
open(f"{work}/lookup.sql", "w").write(lookup + "\n")
open(f"{work}/aggregate.sql", "w").write(f"select count(*), count(distinct {key}) from {table}\n")

queries = {
    "point lookup": (f"select * from {table} where {key} = %s limit 1", (value,)),
    "aggregate": (f"select count(*), count(distinct {key}) from {table}", None),
}

def rate(run, clients):
    done, lock = [0], threading.Lock()
    deadline = time.monotonic() + seconds
    def client():
        go = run()
        mine = 0
        while time.monotonic() < deadline:
            go()
            mine += 1
        with lock:
            done[0] += mine
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for t in threads: t.start()
    for t in threads: t.join()
    return done[0] / (time.monotonic() - started)

def over_pg(sql, params):
    def make():
        conn = psycopg.connect(dsn, autocommit=True)
        return lambda: conn.execute(sql, params).fetchall()
    return make

def in_process(sql, params):
    duck_sql = sql.replace("%s", "?")
    def make():
        cursor = local.cursor()
        return lambda: cursor.execute(duck_sql, params or []).fetchall()
    return make

print(f"{'query':<14} {'clients':>7} {'lake serve q/s':>15} {'DuckDB q/s':>11} {'ratio':>6}")
for label, (sql, params) in queries.items():
    for clients in (1, 16):
        served = rate(over_pg(sql, params), clients)
        direct = rate(in_process(sql, params), clients)
        print(f"{label:<14} {clients:>7} {served:>15,.0f} {direct:>11,.0f} {direct / served:>5.1f}x")

scan = "select i, i * 2 as twice, 'row ' || i::varchar as label from range(1000000) t(i)"
for label, fetch in (
    ("psycopg, text", lambda: psycopg.connect(dsn, autocommit=True).execute(scan).fetchall()),
    ("psycopg, binary", lambda: psycopg.connect(dsn, autocommit=True).cursor(binary=True).execute(scan).fetchall()),
    ("DuckDB in-process", lambda: local.execute(scan).fetchall()),
):
    started = time.monotonic()
    got = len(fetch())
    elapsed = time.monotonic() - started
    print(f"1M-row scan, {label:<18} {got / elapsed:>12,.0f} rows/s ({elapsed:.2f} s)")
PY

# PostgreSQL's own load client on the same queries: simple, extended and prepared protocol, then 200 open
# connections with 100 of them querying at once (p99 from pgbench's per-transaction log).
[ -x "$pgbin/pgbench" ] || { echo "no pgbench: skipping its figures"; exit 0; }
pgbench() { # label, script, clients, mode, extra args...
    local label="$1" script="$2" clients="$3" mode="$4"; shift 4
    "$pgbin/pgbench" -n -h "$host" -p "$port" -U lake -f "$work/$script" -T "$seconds" -c "$clients" \
        -j "$(( clients < 2 ? 1 : 2 ))" -M "$mode" "$@" prod >"$work/pgbench.out" 2>&1 || true
    local tps latency failed
    tps="$(awk '/^tps/ { print $3 }' "$work/pgbench.out")"
    latency="$(awk '/latency average/ { print $4 }' "$work/pgbench.out")"
    failed="$(awk '/number of failed transactions/ { print $5 }' "$work/pgbench.out")"
    printf 'pgbench %-34s %4s clients %9.0f q/s %8s ms  failed %s\n' "$label ($mode)" "$clients" "${tps:-0}" "${latency:--}" "${failed:-?}"
}
for mode in simple extended prepared; do pgbench "point lookup" lookup.sql 1 "$mode"; done
for mode in simple extended; do pgbench "point lookup" lookup.sql 16 "$mode"; done
pgbench "aggregate" aggregate.sql 1 simple
"$python" -c 'import psycopg, sys, time
conns = [psycopg.connect(sys.argv[1], autocommit=True) for _ in range(100)]
time.sleep(float(sys.argv[2]))' "host=$host port=$port dbname=prod user=lake" "$(( seconds + 5 ))" &
idle=$!
sleep 2
( cd "$work" && pgbench "point lookup, 100 more idle" lookup.sql 100 simple -l )
wait "$idle"
p99="$(cat "$work"/pgbench_log.* 2>/dev/null | awk '{ print $3 }' | sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int(NR * 0.99)] / 1000 }')"
echo "pgbench 200 connections, 100 querying: p99 ${p99:-?} ms"

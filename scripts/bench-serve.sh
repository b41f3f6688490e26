#!/usr/bin/env bash
# Benchmarks `lake serve`'s REST catalog: load-table requests per second and latency percentiles with 1 and 16
# concurrent clients, on a generated project of N models applied to prod (../shared/bench/gen_project.py), with
# its catalog in SQLite (the default) or in a throwaway PostgreSQL cluster (scripts/pg-cluster.sh).
# Usage: scripts/bench-serve.sh [N] [SECONDS] [sqlite|postgres]   (default: 1000 models, 5 s per level, sqlite)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lake-target}"
n="${1:-1000}"
seconds="${2:-5}"
catalog="${3:-sqlite}"
# LAKE_BIN compares another build (e.g. an earlier commit's binary) on the same machine and data.
if [ -z "${LAKE_BIN:-}" ]; then
    cargo build --release --locked --all-targets # the test build's features: no second build of the dependencies
fi
lake="${LAKE_BIN:-$CARGO_TARGET_DIR/release/lake}"
work="$(mktemp -d)"
server=""
pg=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null
    [ -n "$pg" ] && bash scripts/pg-cluster.sh stop "$pg" && rm -rf "$pg"
    rm -rf "$work"
}
trap cleanup EXIT
python3 ../shared/bench/gen_project.py "$work/p" --models "$n" >/dev/null
case "$catalog" in
sqlite) ;;
postgres)
    # Its own folder under /tmp: the cluster may run as the `postgres` user, who cannot enter "$work".
    pg="$(mktemp -d "${TMPDIR:-/tmp}/lake-bench-pg.XXXXXX")"
    uri="$(bash scripts/pg-cluster.sh start "$pg")"
    printf 'storage:\n  catalog:\n    type: postgres\n    uri: %s\n' "$uri" >>"$work/p/config.yaml"
    ;;
*) echo "usage: $0 [N] [SECONDS] [sqlite|postgres]" >&2; exit 2 ;;
esac
echo "catalog: $catalog"
"$lake" -p "$work/p" plan --auto-apply >/dev/null 2>&1
"$lake" -p "$work/p" serve --port 0 --json >"$work/addr" 2>/dev/null &
server=$!
# Up to 10 minutes to start (N=10,000 takes a while), as long as the server is alive.
for _ in $(seq 6000); do
    [ -s "$work/addr" ] && break
    kill -0 "$server" 2>/dev/null || { echo "lake serve exited before it was ready" >&2; exit 1; }
    sleep 0.1
done
uri="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rest"])' "$work/addr")"
python3 - "$uri" "$seconds" <<'PY'
import http.client, json, sys, threading, time, urllib.parse

uri, seconds = sys.argv[1], float(sys.argv[2])
host = urllib.parse.urlparse(uri).netloc

def get(conn, path):
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, (path, response.status, body[:200])
    return body

conn = http.client.HTTPConnection(host)
tables = []
for ns in json.loads(get(conn, "/v1/namespaces"))["namespaces"]:
    name = ns[0]
    for ident in json.loads(get(conn, f"/v1/namespaces/{name}/tables?pageSize=100000"))["identifiers"]:
        tables.append(f"/v1/namespaces/{name}/tables/{ident['name']}")
print(f"{len(tables)} tables in the catalog")
print(f"{'clients':>8} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8}")
for clients in (1, 16):
    latencies, lock = [], threading.Lock()
    deadline = time.monotonic() + seconds
    def client(offset):
        c = http.client.HTTPConnection(host)
        mine, i = [], offset
        while time.monotonic() < deadline:
            started = time.monotonic()
            get(c, tables[i % len(tables)])
            mine.append(time.monotonic() - started)
            i += clients
        with lock:
            latencies.extend(mine)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    started = time.monotonic()
    for t in threads: t.start()
    for t in threads: t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
    print(f"{clients:>8} {len(latencies) / elapsed:>11.0f} {pct(0.50):>8.2f} {pct(0.99):>8.2f}")
PY

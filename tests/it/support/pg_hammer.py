"""Thirty-two psycopg clients run one query over and over through `lake serve --pg-port` until a stop file
appears, as dashboards do while a plan promotes.

usage: pg_hammer.py HOST PORT STOP_FILE SQL
Says `ready` on stderr once every client has answered once, then prints {"queries", "errors", "results":
[distinct results], "final": the result of one more query after the stop} as JSON. A query that fails lands in
"errors".
"""
import json
import os
import sys
import threading
import time
import traceback

import psycopg

host, port, stop_file, sql = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
CLIENTS = 32
lock = threading.Lock()
ready = threading.Barrier(CLIENTS, action=lambda: print("ready", file=sys.stderr, flush=True))
queries, errors, results = [0], [], set()


def run(conn):
    return json.dumps(conn.execute(sql).fetchall(), default=str)


def client(n):
    # Half the clients use the simple protocol, half the extended one (psycopg's default).
    conn = psycopg.connect(host=host, port=port, dbname="prod", user="lake", autocommit=True)
    if n % 2:
        conn.cursor_factory = psycopg.ClientCursor
    with lock:
        results.add(run(conn))
    ready.wait(timeout=120)
    while True:
        try:
            seen = run(conn)
            with lock:
                queries[0] += 1
                results.add(seen)
        except Exception:
            with lock:
                errors.append(traceback.format_exc(limit=3))
        # The stop file ends the run; the deadline only keeps a broken test from hanging CI.
        if os.path.exists(stop_file) or time.monotonic() - started > 300:
            return


started = time.monotonic()
threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
final = run(psycopg.connect(host=host, port=port, dbname="prod", user="lake", autocommit=True))
print(json.dumps({
    "queries": queries[0],
    "seconds": round(time.monotonic() - started, 1),
    "errors": errors[:5],
    "results": sorted(results),
    "final": final,
}))

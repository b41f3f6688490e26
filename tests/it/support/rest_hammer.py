"""Eight clients load and scan tables through lake's REST catalog until a stop file appears, as readers do while
a plan commits.

usage: rest_hammer.py URI STOP_FILE TABLE...
Says `ready` on stderr once every client has loaded each table, then prints {"loads", "errors", "counts": {table: [distinct row counts]}, "locations": {table: distinct metadata
files seen}} as JSON. A read that fails, or sees a table half-written, lands in "errors".
"""
import json
import os
import sys
import threading
import time
import traceback

from pyiceberg.catalog import load_catalog

uri, stop_file, tables = sys.argv[1], sys.argv[2], sys.argv[3:]
lock = threading.Lock()
ready = threading.Barrier(8, action=lambda: print("ready", file=sys.stderr, flush=True))
loads, errors = [0], []
counts = {t: set() for t in tables}
locations = {t: set() for t in tables}


def client(n):
    catalog = load_catalog(f"lake{n}", type="rest", uri=uri)
    for name in tables:
        catalog.load_table(name).scan().to_arrow()
    ready.wait(timeout=120)
    i = n
    while True:
        name = tables[i % len(tables)]
        i += 1
        try:
            table = catalog.load_table(name)
            rows = table.scan().to_arrow().num_rows
            with lock:
                loads[0] += 1
                counts[name].add(rows)
                locations[name].add(table.metadata_location)
        except Exception:
            with lock:
                errors.append(traceback.format_exc(limit=3))
        # The stop file ends the run; the deadline only keeps a broken test from hanging CI.
        if os.path.exists(stop_file) or time.monotonic() - started > 300:
            return


started = time.monotonic()
threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({
    "loads": loads[0],
    "seconds": round(time.monotonic() - started, 1),
    "errors": errors[:5],
    "counts": {t: sorted(c) for t, c in counts.items()},
    "locations": {t: len(l) for t, l in locations.items()},
}))

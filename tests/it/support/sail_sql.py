"""Runs SQL on Sail, a Spark Connect engine, with lake serve as its Iceberg REST catalog `lake`: starts
`sail spark server`, then sends each statement through the Spark Connect client (pyspark-client).

usage: sail_sql.py URI WORKDIR SQL...
Prints one {"columns", "rows"} per statement as a JSON list (values as JSON sees them).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

from pyspark.sql import SparkSession

uri, workdir, statements = sys.argv[1], sys.argv[2], sys.argv[3:]
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
sail = shutil.which("sail", path=os.path.dirname(sys.executable)) or "sail"
env = dict(os.environ, SAIL_CATALOG__LIST=f'[{{type="iceberg-rest", name="lake", uri="{uri}"}}]')
server = subprocess.Popen(
    [sail, "spark", "server", "--ip", "127.0.0.1", "--port", str(port), "-C", workdir],
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
)
try:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"sail did not start: {server.stderr.read().decode()}")
            time.sleep(0.2)
    spark = SparkSession.builder.remote(f"sc://127.0.0.1:{port}").getOrCreate()
    out = []
    for statement in statements:
        frame = spark.sql(statement)
        out.append({"columns": frame.columns, "rows": [list(row) for row in frame.collect()]})
    spark.stop()
    print(json.dumps(out, default=str))
finally:
    server.terminate()
    server.wait(timeout=30)

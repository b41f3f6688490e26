"""Writes through lake's REST catalog with pyiceberg: creates a namespace and a table, appends, then appends
from a stale copy of the table as a second client would. The server refuses that commit (409), pyiceberg
rebases it on the new snapshot and retries, so both appends land and neither is lost.

usage: rest_write.py URI
Prints {"rows", "snapshots", "linear"} as JSON; "linear" says every snapshot is an ancestor of the current one.
"""
import json
import sys

import pyarrow as pa
from pyiceberg.catalog import load_catalog

catalog = load_catalog("lake", type="rest", uri=sys.argv[1])
catalog.create_namespace("ext")
rows = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": pa.array(["a", "b", "c"])})
table = catalog.create_table("ext.events", schema=rows.schema)
table.append(rows)
# A second client's copy, taken before the next append lands: its commit must be refused, not merged.
stale = catalog.load_table("ext.events")
table.append(rows.slice(0, 1))
stale.append(rows)
fresh = catalog.load_table("ext.events")
by_id = {s.snapshot_id: s for s in fresh.metadata.snapshots}
chain, current = 0, fresh.current_snapshot()
while current is not None:
    chain += 1
    current = by_id.get(current.parent_snapshot_id)
print(json.dumps({
    "rows": fresh.scan().to_arrow().num_rows,
    "snapshots": len(by_id),
    # Every snapshot is an ancestor of the current one: none was lost or forked off.
    "linear": chain == len(by_id),
}))

"""Manages tables through lake's REST catalog with pyiceberg, as a data tool would: namespace properties, a
staged create committed in one transaction with its first rows, rename, drop then register, purge, and
namespace drop.

usage: rest_manage.py URI
Prints what each step observed as JSON.
"""
import json
import sys

import pyarrow as pa
from pyiceberg.catalog import load_catalog
from pyiceberg.exceptions import NamespaceNotEmptyError, NoSuchTableError

catalog = load_catalog("lake", type="rest", uri=sys.argv[1])
out = {}
catalog.create_namespace("tools", {"owner": "alice", "stale": "x"})
summary = catalog.update_namespace_properties("tools", removals={"stale", "never"}, updates={"team": "data"})
out["properties"] = {
    "removed": sorted(summary.removed),
    "updated": sorted(summary.updated),
    "missing": sorted(summary.missing),
    "now": catalog.load_namespace_properties("tools"),
}

rows = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": pa.array(["a", "b", "c"])})
# A staged create: nothing exists until the transaction commits the table and its first snapshot together.
txn = catalog.create_table_transaction("tools.staged", schema=rows.schema)
out["staged_visible_before_commit"] = catalog.table_exists("tools.staged")
txn.append(rows)
txn.commit_transaction()
staged = catalog.load_table("tools.staged")
out["staged"] = {"rows": staged.scan().to_arrow().num_rows, "snapshots": len(staged.metadata.snapshots)}

catalog.rename_table("tools.staged", "tools.renamed")
out["renamed"] = {
    "old_exists": catalog.table_exists("tools.staged"),
    "rows": catalog.load_table("tools.renamed").scan().to_arrow().num_rows,
}

# Dropped without purge, the files stay and the table can be registered again from its metadata file.
metadata_location = catalog.load_table("tools.renamed").metadata_location
catalog.drop_table("tools.renamed")
registered = catalog.register_table("tools.registered", metadata_location)
out["registered"] = {"rows": registered.scan().to_arrow().num_rows, "location": registered.metadata_location}

try:
    catalog.drop_namespace("tools")
    out["drop_non_empty"] = "dropped"
except NamespaceNotEmptyError:
    out["drop_non_empty"] = "refused"

catalog.purge_table("tools.registered")
try:
    catalog.load_table("tools.registered")
    out["purged"] = False
except NoSuchTableError:
    out["purged"] = True
catalog.drop_namespace("tools")
out["namespaces_after"] = sorted(".".join(n) for n in catalog.list_namespaces())
print(json.dumps(out))

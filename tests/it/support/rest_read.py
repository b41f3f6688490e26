"""Reads lake's REST catalog with two independent clients: pyiceberg's RestCatalog and DuckDB's iceberg extension.

usage: rest_read.py URI EXTENSION_DIR TABLE...
Prints {"namespaces": [...], "pyiceberg": {table: {rows, columns}}, "duckdb": {table: rows}} as JSON.
"""
import glob
import json
import sys

import duckdb
from pyiceberg.catalog import load_catalog

uri, extension_dir, tables = sys.argv[1], sys.argv[2], sys.argv[3:]
out = {"pyiceberg": {}, "duckdb": {}}
catalog = load_catalog("lake", type="rest", uri=uri)
out["namespaces"] = sorted(".".join(n) for n in catalog.list_namespaces())
for name in tables:
    arrow = catalog.load_table(name).scan().to_arrow()
    out["pyiceberg"][name] = {"rows": arrow.num_rows, "columns": arrow.column_names}

con = duckdb.connect(config={"allow_unsigned_extensions": "true", "autoinstall_known_extensions": "false"})
for extension in ("avro", "httpfs", "iceberg"):
    path = glob.glob(f"{extension_dir}/**/{extension}.duckdb_extension", recursive=True)[0]
    con.execute(f"LOAD '{path}'")
con.execute(f"ATTACH 'lake' AS lake (TYPE iceberg, ENDPOINT '{uri}', AUTHORIZATION_TYPE 'none')")
for name in tables:
    out["duckdb"][name] = con.execute(f"SELECT count(*) FROM lake.{name}").fetchone()[0]
print(json.dumps(out))

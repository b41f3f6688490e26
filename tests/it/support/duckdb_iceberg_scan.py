"""Reads one Iceberg table with DuckDB's own iceberg extension (a reader independent of lake and pyiceberg).

usage: duckdb_iceberg_scan.py EXTENSION_DIR METADATA_LOCATION SQL_OVER_t
Prints the query's rows as JSON.
"""
import glob
import json
import sys

import duckdb

extension_dir, metadata, sql = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect(config={"allow_unsigned_extensions": "true", "autoinstall_known_extensions": "false"})
for name in ("avro", "iceberg"):
    path = glob.glob(f"{extension_dir}/**/{name}.duckdb_extension", recursive=True)[0]
    con.execute(f"LOAD '{path}'")
con.execute(f"CREATE VIEW t AS SELECT * FROM iceberg_scan('{metadata}')")
print(json.dumps(con.execute(sql).fetchall(), default=str))

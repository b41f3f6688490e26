"""Reads one table of lake's Iceberg SQL catalog with pyiceberg: its partition spec, its data files with their
partition values, and what a filtered scan plans and returns (the files a reader prunes).

usage: partition_scan.py CATALOG_URI WAREHOUSE TABLE ROW_FILTER
"""
import json
import sys

from pyiceberg.catalog.sql import SqlCatalog

uri, warehouse, name, row_filter = sys.argv[1:5]
table = SqlCatalog("lake", uri=uri, warehouse=warehouse).load_table(name)
spec = table.spec()
all_files = list(table.scan().plan_files())
filtered = table.scan(row_filter=row_filter)
print(json.dumps({
    "spec": [f"{field.name}:{field.transform}" for field in spec.fields],
    "files": sorted(repr(task.file.partition) for task in all_files),
    "rows": table.scan().to_arrow().num_rows,
    "filtered_files": len(list(filtered.plan_files())),
    "filtered_rows": filtered.to_arrow().num_rows,
}, default=str))

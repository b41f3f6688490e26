"""Dumps every table of lake's Iceberg SQL catalog as pyiceberg reads it: rows, columns, snapshot operations.

usage: read_catalog.py CATALOG_URI WAREHOUSE [PROPERTIES_JSON]
PROPERTIES_JSON may name the catalog (`catalog_name`, default `lake`); the rest go to SqlCatalog.
"""
import json
import sys

from pyiceberg.catalog.sql import SqlCatalog

uri, warehouse = sys.argv[1], sys.argv[2]
properties = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
name = properties.pop("catalog_name", "lake")
catalog = SqlCatalog(name, uri=uri, warehouse=warehouse, **properties)
tables = {}
for namespace in catalog.list_namespaces():
    for ident in catalog.list_tables(namespace):
        table = catalog.load_table(ident)
        data = table.scan().to_arrow()
        snapshots = sorted(table.snapshots(), key=lambda s: s.sequence_number)
        tables[".".join(ident)] = {
            "rows": sorted([list(r.values()) for r in data.to_pylist()], key=repr),
            "columns": [f"{field.name}:{field.field_type}" for field in table.schema().fields],
            "operations": [s.summary.operation.value for s in snapshots],
            "metadata": table.metadata_location,
            "properties": dict(table.properties),
        }
print(json.dumps(tables, default=str, sort_keys=True))

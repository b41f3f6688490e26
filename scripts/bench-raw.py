"""The no-framework reference of scripts/bench.sh: a generated SQLMesh project run as plain DuckDB.

Each model's MODEL block is stripped, SEED models load their CSV, `@start_ds`/`@end_ds` become the project's
start and the end date given, and every model is created with one CREATE TABLE AS in dependency order and
copied to one Parquet file: the least work any tool can do to build the same tables.

Usage: python bench-raw.py PROJECT END_DATE WORK_DIR   (needs the duckdb module)
"""

import graphlib
import pathlib
import re
import sys

import duckdb

NAME = re.compile(r"^\s*name\s+([\w.]+)\s*,", re.MULTILINE)
SEED_PATH = re.compile(r"path\s+'([^']+)'")
REFERENCE = re.compile(r"\b([a-z_][\w]*\.[a-z_][\w]*)\b", re.IGNORECASE)
START = re.compile(r"^\s*start:\s*'?([\d-]+)'?", re.MULTILINE)


def model_block_end(text: str) -> int:
    """Offset just past the `MODEL (...);` header (parentheses balanced, strings skipped)."""
    depth, i, quote = 0, text.index("MODEL"), None
    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text.index(";", i) + 1
        i += 1
    raise ValueError("unbalanced MODEL block")


def main() -> None:
    project, end, work = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
    start = START.search((project / "config.yaml").read_text()).group(1)
    models = {}
    for path in sorted((project / "models").glob("*.sql")):
        text = path.read_text()
        header_end = model_block_end(text)
        header, body = text[:header_end], text[header_end:].strip().rstrip(";")
        name = NAME.search(header).group(1)
        seed = SEED_PATH.search(header) if "SEED" in header else None
        if seed:
            csv = (path.parent / seed.group(1)).resolve()
            body = f"SELECT * FROM read_csv('{csv}')"
        body = body.replace("@start_ds", f"'{start}'").replace("@end_ds", f"'{end}'")
        models[name] = body
    graph = {
        name: {ref for ref in REFERENCE.findall(body) if ref in models and ref != name}
        for name, body in models.items()
    }
    work.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(work / "raw.duckdb"))
    for schema in sorted({name.split(".")[0] for name in models}):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for name in graphlib.TopologicalSorter(graph).static_order():
        con.execute(f"CREATE OR REPLACE TABLE {name} AS {models[name]}")
        con.execute(f"COPY {name} TO '{work / (name + '.parquet')}' (FORMAT parquet, COMPRESSION zstd)")
    con.close()


if __name__ == "__main__":
    main()

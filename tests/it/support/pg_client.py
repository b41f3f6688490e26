"""Drives `lake serve --pg-port` with real PostgreSQL clients and prints what they saw as one JSON object.

Usage: pg_client.py HOST PORT

psycopg 3 (simple and extended protocol, text and binary results, parameters, cancel, statement_timeout) and
SQLAlchemy's PostgreSQL dialect (inspect). Values are compared here against Python's exact values; the Rust test
asserts on the printed verdicts.
"""

import datetime
import decimal
import json
import sys
import threading
import time
import uuid

import psycopg

host, port = sys.argv[1], int(sys.argv[2])
out = {}


def connect(dbname):
    return psycopg.connect(host=host, port=port, dbname=dbname, user="lake", autocommit=True)


prod = connect("prod")
dev = connect("dev")

# Each database is an environment; the same name reads that environment's version.
out["prod_columns"] = [d.name for d in prod.execute("select * from demo.full_model").description]
out["dev_columns"] = [d.name for d in dev.execute("select * from demo.full_model").description]
out["prod_rows"] = prod.execute("select item_id, num_orders from demo.full_model order by 1").fetchall()

# Extended protocol with parameters, text and binary.
out["param_text"] = prod.execute(
    "select num_orders from demo.full_model where item_id = %s", (1,)
).fetchall()
out["param_binary"] = prod.cursor(binary=True).execute(
    "select num_orders from demo.full_model where item_id = %b", (1,)
).fetchall()
out["params_typed"] = prod.execute(
    "select %s::varchar || '!' , %s + 1, %s::date + 1",
    ("x", 41, datetime.date(2024, 1, 1)),
).fetchone()
out["params_typed"] = [str(v) for v in out["params_typed"]]

# Binary parameters of each type psycopg sends that way come back equal.
BINARY_PARAMS = (
    True, 7, 2**40, 1.25, "text", b"\x00\xff", decimal.Decimal("-123.4500"), datetime.date(2024, 2, 29),
    datetime.time(23, 59, 58, 123000), datetime.datetime(2024, 1, 2, 3, 4, 5, 678000),
    datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
)
row = prod.cursor(binary=True).execute(
    "select " + ", ".join(["%b"] * len(BINARY_PARAMS)), BINARY_PARAMS
).fetchone()
out["params_binary_types"] = {
    str(i): repr(got) for i, (got, want) in enumerate(zip(row, BINARY_PARAMS)) if got != want
}

# A JDBC-shaped flow on libpq's own calls: a named statement with declared parameter types, described before
# it is bound, then executed twice with a binary parameter and binary results.
pg = prod.pgconn
prepared = pg.prepare(b"jdbc_s1", b"select num_orders from demo.full_model where item_id = $1", [23])
described = pg.describe_prepared(b"jdbc_s1")
runs = []
for item in (1, 2):
    result = pg.exec_prepared(b"jdbc_s1", [item.to_bytes(4, "big")], param_formats=[1], result_format=1)
    runs.append(int.from_bytes(result.get_value(0, 0), "big", signed=True))
out["jdbc"] = {
    "prepared": psycopg.pq.ExecStatus(prepared.status).name,
    "params": [described.param_type(i) for i in range(described.nparams)],
    "fields": [(described.fname(i).decode(), described.ftype(i)) for i in range(described.nfields)],
    "runs": runs,
}

# Several statements in one simple query: every result arrives; the last one is what fetch returns.
cur = prod.cursor()
cur.execute("select 1 as a; select 2 as b", prepare=False)
seen = [cur.fetchall()]
while cur.nextset():
    seen.append(cur.fetchall())
out["multi"] = seen

TYPES = """select true as b, 1::tinyint as t, 2::smallint as s, 3::int as i, 4::bigint as l,
  170141183460469231731687303715884105727::hugeint as h, -12.345::decimal(10,3) as d, 1.5::float as f,
  2.5::double as db, 'héllo' as v, date '2024-01-02' as dt, time '12:34:56.789' as tm,
  timestamp '2024-01-02 03:04:05.123456' as ts, timestamptz '2024-01-02 03:04:05+00' as tz,
  interval '1 day 2 hours' as iv, '6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid as u,
  '\\x01\\x02'::blob as bl, '{"a": [1, 2]}'::json as j, [1, 2, 3] as li, ['a', NULL] as ls,
  {'a': 1, 'b': 'x'} as st, map(['k'], [1]) as mp, NULL::int as n"""
EXPECTED = [
    True, 1, 2, 3, 4, decimal.Decimal("170141183460469231731687303715884105727"), decimal.Decimal("-12.345"),
    1.5, 2.5, "héllo", datetime.date(2024, 1, 2), datetime.time(12, 34, 56, 789000),
    datetime.datetime(2024, 1, 2, 3, 4, 5, 123456),
    datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
    datetime.timedelta(days=1, hours=2), uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8"), b"\x01\x02",
    {"a": [1, 2]}, [1, 2, 3], ["a", None], {"a": 1, "b": "x"}, {"k": 1}, None,
]
for mode, binary in (("text", False), ("binary", True)):
    row = prod.cursor(binary=binary).execute(TYPES).fetchone()
    out[f"types_{mode}"] = {
        str(i): repr(got) for i, (got, want) in enumerate(zip(row, EXPECTED)) if got != want
    }
out["type_oids"] = [d.type_code for d in prod.execute(TYPES).description]


def sqlstate(conn, sql):
    try:
        conn.execute(sql)
        return "no error"
    except psycopg.Error as e:
        return e.sqlstate


out["errors"] = {
    sql: sqlstate(prod, sql)
    for sql in [
        "select * from no_such_table",
        "select no_such_column from demo.full_model",
        "selec 1",
        "create table t (a int)",
        "insert into demo.full_model values (1, 2)",
        "copy (select 1) to 'x.csv'",
        "attach ':memory:' as other",
        "select * from read_csv('/etc/passwd')",
        "set memory_limit = '1GB'",
    ]
}
# Refused again from the server's memory of each statement; `use` is refused too, so a pooled session stays
# on the environment the server chose for it.
out["errors_again"] = {
    sql: sqlstate(prod, sql)
    for sql in ["create table t (a int)", "attach ':memory:' as other", "use memory", "use prod"]
}
# COPY … TO STDOUT through psycopg's copy API: CSV with a header, and a table's rows read back as tuples.
with prod.cursor() as cur:
    with cur.copy(
        "COPY (select 1 as id, 'a,b' as name, null as note union all select 2, 'x\"y', 'z' order by id)"
        " TO STDOUT (FORMAT csv, HEADER)"
    ) as copy:
        out["copy_csv"] = b"".join(bytes(block) for block in copy).decode()
    with cur.copy("COPY demo.full_model TO STDOUT") as copy:
        out["copy_rows"] = sorted(list(row) for row in copy.rows())
    out["copy_rowcount"] = cur.rowcount
# The connection still answers after every refusal.
out["after_errors"] = prod.execute("select count(*) from demo.full_model").fetchone()[0]

# A cancelled long query gets 57014, and the connection keeps working.
long_query = "select count(*) from range(100000000000) a"
slow = connect("prod")
timer = threading.Timer(1.0, slow.cancel)
timer.start()
started = time.time()
out["cancel"] = sqlstate(slow, long_query)
out["cancel_took_s"] = round(time.time() - started, 1)
out["after_cancel"] = slow.execute("select 42").fetchone()[0]

# statement_timeout, set as PostgreSQL clients set it.
slow.execute("set statement_timeout = '500ms'")
out["timeout"] = sqlstate(slow, long_query)
out["after_timeout"] = slow.execute("select 43").fetchone()[0]

# Client chatter drivers send.
out["show"] = prod.execute("show standard_conforming_strings").fetchone()[0]
out["version"] = prod.execute("select pg_catalog.version()").fetchone()[0]
with prod.transaction():
    prod.execute("select 1")

# SQLAlchemy's PostgreSQL dialect, as BI tools and notebooks use it.
import sqlalchemy as sa

engine = sa.create_engine(f"postgresql+psycopg://lake@{host}:{port}/dev")
with engine.connect() as conn:
    inspector = sa.inspect(conn)
    out["sa_schemas"] = inspector.get_schema_names()
    out["sa_tables"] = sorted(inspector.get_table_names(schema="demo"))
    columns = inspector.get_columns("full_model", schema="demo")
    out["sa_columns"] = [c["name"] for c in columns]
    out["sa_types"] = [str(c["type"]) for c in columns]
    out["sa_rows"] = conn.execute(sa.text("select count(*) from demo.full_model")).scalar()

print(json.dumps(out, default=str))

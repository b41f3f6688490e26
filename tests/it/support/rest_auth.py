"""Reads one table through lake's REST catalog, authenticated.

usage: rest_auth.py URI token|credential|duckdb SECRET TABLE [EXTENSION_DIR]
`token` sends the secret as a bearer token with pyiceberg; `credential` runs pyiceberg's OAuth2 client
credentials with it as the client secret; `duckdb` attaches with DuckDB's iceberg extension, which runs the same
OAuth2 exchange (CLIENT_ID, CLIENT_SECRET, OAUTH2_SERVER_URI). Prints the table's row count.
"""
import glob
import sys

uri, mode, secret, table = sys.argv[1:5]
if mode == "duckdb":
    import duckdb

    con = duckdb.connect(config={"allow_unsigned_extensions": "true", "autoinstall_known_extensions": "false"})
    for extension in ("avro", "httpfs", "iceberg"):
        path = glob.glob(f"{sys.argv[5]}/**/{extension}.duckdb_extension", recursive=True)[0]
        con.execute(f"LOAD '{path}'")
    con.execute(
        f"ATTACH 'lake' AS lake (TYPE iceberg, ENDPOINT '{uri}', CLIENT_ID 'lake', CLIENT_SECRET '{secret}', "
        f"OAUTH2_SERVER_URI '{uri}/v1/oauth/tokens')"
    )
    print(con.execute(f"SELECT count(*) FROM lake.{table}").fetchone()[0])
else:
    from pyiceberg.catalog import load_catalog

    auth = {"token": secret} if mode == "token" else {"credential": f"lake:{secret}"}
    catalog = load_catalog("lake", type="rest", uri=uri, **auth)
    print(catalog.load_table(table).scan().to_arrow().num_rows)

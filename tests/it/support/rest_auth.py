"""Reads one table through lake's REST catalog with pyiceberg, authenticated.

usage: rest_auth.py URI token|credential SECRET TABLE
`token` sends the secret as a bearer token; `credential` runs OAuth2 client credentials with it as the
client secret. Prints the table's row count.
"""
import sys

from pyiceberg.catalog import load_catalog

uri, mode, secret, table = sys.argv[1:5]
auth = {"token": secret} if mode == "token" else {"credential": f"lake:{secret}"}
catalog = load_catalog("lake", type="rest", uri=uri, **auth)
print(catalog.load_table(table).scan().to_arrow().num_rows)

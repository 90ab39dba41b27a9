"""Runs one parameterised statement through the `trino` Python client as the API service would:
its service token as a bearer token, qmark parameters. Prints the rows as JSON, each row's
values joined with `|`.

Usage: trino_query.py HOST PORT SERVICE_TOKEN SQL PARAMS_JSON

PARAMS_JSON is a list of strings, numbers or {"utc_ms": N} for a timestamp with time zone.
"""

import datetime
import json
import sys

import trino
from trino.auth import JWTAuthentication


def param(p):
    if isinstance(p, dict) and "utc_ms" in p:
        return datetime.datetime.fromtimestamp(p["utc_ms"] / 1000, tz=datetime.timezone.utc)
    return p


def main():
    host, port, token, sql, params = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    conn = trino.dbapi.connect(
        host=host, port=port, user="api-service", auth=JWTAuthentication(token),
        http_scheme="http", allow_insecure_auth=True, catalog="archive", schema="oms",
    )
    cur = conn.cursor()
    cur.execute(sql, [param(p) for p in json.loads(params)])
    print(json.dumps(["|".join(str(v) for v in row) for row in cur.fetchall()]))


if __name__ == "__main__":
    main()

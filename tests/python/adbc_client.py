"""A real Flight SQL client nobody here wrote (Python ADBC) against orderlake-server.

Usage: adbc_client.py URI USER PASSWORD

Runs a query, a parameterized query, adbc_get_objects, adbc_get_info, the current catalog and
schema, a cancel, a refused DDL and a bad password; asserts each; prints one JSON line per check
and exits non-zero on the first failure.
"""

import json
import sys
import time

import adbc_driver_flightsql.dbapi as flightsql
from adbc_driver_manager import Error as AdbcError

from background import SLOW_QUERY, in_background


def check(name, ok, detail=""):
    print(json.dumps({"check": name, "ok": bool(ok), "detail": str(detail)[:500]}), flush=True)
    if not ok:
        sys.exit(1)


def connect(uri, user, password):
    return flightsql.connect(uri, db_kwargs={"username": user, "password": password})


def main():
    uri, user, password = sys.argv[1:4]
    conn = connect(uri, user, password)
    cur = conn.cursor()

    cur.execute("SELECT order_id, status FROM orders ORDER BY order_id")
    rows = cur.fetchall()
    check("query", rows == [("10000003", "PAID"), ("A-1", "DELIVERED"), ("A-2", "CANCELLED")], rows)

    cur.execute("SELECT status, item_count FROM orders WHERE order_id = ?", parameters=("A-1",))
    rows = cur.fetchall()
    check("parameterized query", rows == [("DELIVERED", 2)], rows)

    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    catalogs = {c["catalog_name"] for c in objects}
    tables = {
        (c["catalog_name"], s["db_schema_name"], t["table_name"], t["table_type"])
        for c in objects
        for s in (c["catalog_db_schemas"] or [])
        for t in (s["db_schema_tables"] or [])
    }
    check("get_objects catalogs", catalogs == {"archive", "system"}, catalogs)
    check(
        "get_objects tables",
        ("archive", "oms", "order_events", "TABLE") in tables
        and ("archive", "oms", "orders", "VIEW") in tables,
        sorted(tables),
    )
    columns = [
        col["column_name"]
        for c in objects
        for s in (c["catalog_db_schemas"] or [])
        for t in (s["db_schema_tables"] or [])
        if t["table_name"] == "orders"
        for col in (t["table_columns"] or [])
    ]
    check("get_objects columns", "item_count" in columns and "status" in columns, columns)

    info = conn.adbc_get_info()
    check("get_info", info.get("vendor_name") == "orderlake", info)

    check("current catalog", conn.adbc_current_catalog == "archive", conn.adbc_current_catalog)
    check("current schema", conn.adbc_current_db_schema == "oms", conn.adbc_current_db_schema)

    try:
        cur.execute("DROP TABLE order_events")
        check("ddl refused", False, "DROP TABLE succeeded")
    except AdbcError as e:
        check("ddl refused", "refused" in str(e) and "PERMISSION" in str(e).upper(), e)

    slow = conn.cursor()
    worker, outcome = in_background(lambda: (slow.execute(SLOW_QUERY), slow.fetchall()))
    time.sleep(1.5)
    slow.adbc_cancel()
    worker.join(timeout=30)
    check(
        "cancel",
        not worker.is_alive() and outcome.get("error") is not None and outcome["seconds"] < 20,
        outcome,
    )

    cur.execute("SELECT count(*) FROM order_events")
    check("healthy after cancel", cur.fetchall() == [(9,)])
    conn.close()

    try:
        bad = connect(uri, user, "not the password")
        bad.cursor().execute("SELECT 1")
        check("bad password refused", False, "query ran")
    except AdbcError as e:
        check("bad password refused", "UNAUTHENTICATED" in str(e).upper(), e)

    print(json.dumps({"check": "all", "ok": True}), flush=True)


if __name__ == "__main__":
    main()

"""A real Flight SQL client nobody here wrote (Python ADBC) against orderlake-server.

Usage: adbc_client.py URI USER PASSWORD

Runs a query, parameterized queries with a value of every type the archive has, adbc_get_objects,
adbc_get_info, the current catalog and schema, a cancel, a refused DDL and a bad password; asserts
each; prints one JSON line per check and exits non-zero on the first failure.
"""

import datetime
import decimal
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


def count(cur, sql, parameters=None):
    cur.execute(sql, parameters=parameters)
    return cur.fetchall()[0][0]


def check_parameter_types(cur):
    """A bound value of each type the archive has selects what the same value written into the
    SQL selects (and something)."""
    events = "SELECT count(*) FROM order_events WHERE "
    utc = datetime.timezone.utc
    cases = [
        ("string", "order_id = ?", "A-1", "order_id = 'A-1'"),
        ("int", "kafka_offset = ?", 3, "kafka_offset = 3"),
        ("decimal", "total_amount = ?", decimal.Decimal("30.00"), "total_amount = 30.00"),
        (
            "timestamp",
            "kafka_timestamp >= ?",
            datetime.datetime(2024, 3, 2, tzinfo=utc),
            "kafka_timestamp >= TIMESTAMP '2024-03-02 00:00:00 UTC'",
        ),
        ("date", "event_date = ?", datetime.date(2024, 3, 1), "event_date = DATE '2024-03-01'"),
        ("list", "array_has(?, order_id)", ["A-1", "A-2"], "order_id IN ('A-1', 'A-2')"),
    ]
    for name, bound, value, literal in cases:
        got = count(cur, events + bound, (value,))
        want = count(cur, events + literal)
        check(f"{name} parameter", got == want and want > 0, f"bound {got}, literal {want}")

    cur.execute("SELECT kafka_value FROM order_events WHERE decode_error IS NOT NULL LIMIT 1")
    raw = cur.fetchall()[0][0]
    got = count(cur, events + "kafka_value = ?", (raw,))
    check("binary parameter", isinstance(raw, bytes) and got >= 1, f"{got} rows for {raw[:40]!r}")

    got = count(cur, events + "order_id = ?", (None,))
    check("null parameter compares to nothing", got == 0, got)
    got = count(cur, events + "? IS NULL", (None,))
    check("null parameter is null", got == count(cur, "SELECT count(*) FROM order_events"), got)


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

    check_parameter_types(cur)

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

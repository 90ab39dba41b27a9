"""A real Flight SQL client nobody here wrote (Python ADBC) against orderlake-server.

Usage: adbc_client.py URI USER PASSWORD [ROOT_CERT_PEM]
       adbc_client.py --token-expiry URI USER PASSWORD TTL_SECONDS

Runs a query, parameterized queries with a value of every type the archive has, adbc_get_objects
at every depth and with filters, adbc_get_table_schema, adbc_get_table_types, adbc_get_info, the
current catalog and schema, execute_schema, a cancel, a refused DDL and a bad password; with --token-expiry, what
a connection sees once its sign-in token expires, and that a new connection works. Asserts each;
prints one JSON line per check and exits non-zero on the first failure.
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


# PEM of the CA to trust for a grpc+tls:// URI (the optional last argument of the flows).
TLS_ROOT_CERTS = None


def connect(uri, user, password):
    options = {"username": user, "password": password}
    if TLS_ROOT_CERTS:
        options["adbc.flight.sql.client_option.tls_root_certs"] = TLS_ROOT_CERTS
    return flightsql.connect(uri, db_kwargs=options)


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


def check_metadata_depths(conn):
    """What a tree view asks level by level, and with the filters a search box sends."""
    only = conn.adbc_get_objects(depth="catalogs").read_all().to_pylist()
    check(
        "get_objects catalogs only",
        {c["catalog_name"] for c in only} == {"archive", "system"}
        and all(not c["catalog_db_schemas"] for c in only),
        only,
    )
    schemas = conn.adbc_get_objects(depth="db_schemas", catalog_filter="archive").read_all().to_pylist()
    check(
        "get_objects schemas of one catalog",
        [c["catalog_name"] for c in schemas] == ["archive"]
        and sorted(s["db_schema_name"] for s in schemas[0]["catalog_db_schemas"])
        == ["information_schema", "oms"]
        and all(not s["db_schema_tables"] for s in schemas[0]["catalog_db_schemas"]),
        schemas,
    )
    views = conn.adbc_get_objects(
        depth="tables", catalog_filter="archive", db_schema_filter="oms",
        table_name_filter="order%", table_types_filter=["VIEW"],
    ).read_all().to_pylist()
    listed = sorted(
        (t["table_name"], t["table_type"], t["table_columns"])
        for c in views for s in c["catalog_db_schemas"] or [] for t in s["db_schema_tables"] or []
    )
    check(
        "get_objects tables by name pattern and type",
        [(n, k) for n, k, _ in listed]
        == [("order_items", "VIEW"), ("order_status_history", "VIEW"), ("orders", "VIEW")]
        and all(not cols for _, _, cols in listed),
        listed,
    )
    found = conn.adbc_get_objects(
        depth="columns", catalog_filter="archive", db_schema_filter="oms",
        table_name_filter="order_events", column_name_filter="kafka_%",
    ).read_all().to_pylist()
    columns = [
        (col["column_name"], col["ordinal_position"])
        for c in found for s in c["catalog_db_schemas"] or [] for t in s["db_schema_tables"] or []
        for col in t["table_columns"] or []
    ]
    check(
        "get_objects columns by name pattern",
        columns and all(n.startswith("kafka_") for n, _ in columns)
        and "kafka_value" in {n for n, _ in columns},
        columns,
    )
    schema = conn.adbc_get_table_schema("order_events", catalog_filter="archive", db_schema_filter="oms")
    check(
        "get_table_schema",
        str(schema.field("total_amount").type) == "decimal128(18, 4)"
        and str(schema.field("event_time").type).startswith("timestamp[us, tz=")
        and schema.field("items").type.value_type.num_fields == 4,
        schema,
    )
    view_schema = conn.adbc_get_table_schema("orders", catalog_filter="archive", db_schema_filter="oms")
    check("get_table_schema of a view", "item_count" in view_schema.names, view_schema)
    try:
        conn.adbc_get_table_schema("no_such_table", catalog_filter="archive", db_schema_filter="oms")
        check("get_table_schema of a missing table", False, "a schema came back")
    except AdbcError as e:
        check("get_table_schema of a missing table", "NOT_FOUND" in str(e).upper() or "not found" in str(e), e)
    types = set(conn.adbc_get_table_types())
    check("get_table_types", {"TABLE", "VIEW"} <= types, types)


def token_expiry(uri, user, password, ttl):
    conn = connect(uri, user, password)
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM order_events")
    check("query before the token expires", cur.fetchall() == [(9,)])
    time.sleep(ttl + 1.5)
    try:
        cur.execute("SELECT count(*) FROM order_events")
        cur.fetchall()
        check("an expired token is refused", False, "the query ran")
    except AdbcError as e:
        check(
            "an expired token is refused",
            "UNAUTHENTICATED" in str(e).upper() and "expired" in str(e),
            e,
        )
    conn.close()
    again = connect(uri, user, password)
    acur = again.cursor()
    acur.execute("SELECT count(*) FROM order_events")
    check("a new connection signs in again", acur.fetchall() == [(9,)])
    again.close()
    print(json.dumps({"check": "all", "ok": True}), flush=True)


def main():
    global TLS_ROOT_CERTS
    uri, user, password = sys.argv[1:4]
    if len(sys.argv) > 4:
        with open(sys.argv[4]) as pem:
            TLS_ROOT_CERTS = pem.read()
    conn = connect(uri, user, password)
    cur = conn.cursor()

    cur.execute("SELECT order_id, status FROM orders ORDER BY order_id")
    rows = cur.fetchall()
    check("query", rows == [("10000003", "PAID"), ("A-1", "DELIVERED"), ("A-2", "CANCELLED")], rows)

    cur.execute("SELECT status, item_count FROM orders WHERE order_id = ?", parameters=("A-1",))
    rows = cur.fetchall()
    check("parameterized query", rows == [("DELIVERED", 2)], rows)

    # The schema of a query without running it.
    schema = cur.adbc_execute_schema("SELECT order_id, total_amount, items FROM order_events")
    check("execute_schema", schema.names == ["order_id", "total_amount", "items"], schema)

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
    check_metadata_depths(conn)

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
    if sys.argv[1] == "--token-expiry":
        token_expiry(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
    else:
        main()

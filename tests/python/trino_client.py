"""The real `trino` Python client (DB-API and its SQLAlchemy dialect, as Superset uses it) against
orderlake-server's Trino front door.

Usage: trino_client.py HOST PORT USER PASSWORD SERVICE_TOKEN

Checks queries and every column type of the archive and the views, qmark parameters (EXECUTE
IMMEDIATE) and the legacy PREPARE/EXECUTE/DEALLOCATE sequence, USE, errors with their Trino names
and locations, a result of a million rows paged to the end, cancel mid-stream,
system.runtime.queries and kill_query (a user's own queries only), a service token as a bearer
token, SQLAlchemy's inspector, and a wrong password. Prints one JSON line per check and exits non-zero on the first
failure.
"""

import datetime
import decimal
import json
import sys
import time

import requests
import sqlalchemy
import trino
from trino.auth import BasicAuthentication, JWTAuthentication
from trino.exceptions import HttpError, TrinoUserError, TrinoQueryError

from background import SLOW_QUERY, in_background


def check(name, ok, detail=""):
    print(json.dumps({"check": name, "ok": bool(ok), "detail": str(detail)[:500]}), flush=True)
    if not ok:
        sys.exit(1)


def connect(host, port, user, password, **kwargs):
    return trino.dbapi.connect(
        host=host,
        port=port,
        user=user,
        auth=BasicAuthentication(user, password),
        http_scheme="http",
        allow_insecure_auth=True,
        catalog="archive",
        schema="oms",
        **kwargs,
    )


def expect_error(cur, sql, name, params=None):
    try:
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(sql, params)
        cur.fetchall()
    except (TrinoUserError, TrinoQueryError) as e:
        return e if e.error_name == name else f"{e.error_name}: {e.message}"
    return "no error"


def main():
    host, port, user, password, token = (
        sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    )
    conn = connect(host, port, user, password)
    cur = conn.cursor()

    cur.execute("SELECT order_id, status FROM orders ORDER BY order_id")
    rows = cur.fetchall()
    check(
        "query",
        rows == [["10000003", "PAID"], ["A-1", "DELIVERED"], ["A-2", "CANCELLED"]],
        rows,
    )
    check("query id", bool(cur.query_id) and cur.stats["state"] == "FINISHED", cur.stats)

    cur.execute(
        "SELECT order_id, total_amount, event_time, event_date, kafka_value, kafka_partition, "
        "kafka_offset, items, kafka_headers FROM order_events "
        "WHERE event_id = 'e1'"
    )
    row = cur.fetchone()
    types = {d[0]: d[1] for d in cur.description}
    check(
        "type names",
        types["total_amount"] == "decimal(18,4)"
        and types["event_time"] == "timestamp(6) with time zone"
        and types["event_date"] == "date"
        and types["kafka_value"] == "varbinary"
        and types["kafka_partition"] == "integer"
        and types["kafka_offset"] == "bigint"
        and types["items"].startswith("array(row(")
        and types["kafka_headers"].startswith("array(row("),
        types,
    )
    (order_id, amount, event_time, event_date, value, partition, offset, items, _headers) = row
    check(
        "values",
        order_id == "A-1"
        and amount == decimal.Decimal("30.0000")
        and event_time == datetime.datetime(2024, 3, 1, 10, 0, tzinfo=datetime.timezone.utc)
        and event_date == datetime.date(2024, 3, 1)
        and isinstance(value, bytes)
        and json.loads(value)["event_id"] == "e1"
        and partition == 0
        and offset == 0,
        row,
    )
    check(
        "array of rows",
        isinstance(items, list) and len(items) == 2 and items[0][0] == "SKU-1",
        items,
    )

    cur.execute("DESCRIBE order_events")
    described = {r[0]: r[1] for r in cur.fetchall()}
    check(
        "DESCRIBE with Trino type names",
        described.get("total_amount") == "decimal(18,4)"
        and described.get("event_time") == "timestamp(6) with time zone"
        and described.get("items") == "array(row(sku varchar, quantity bigint, unit_price decimal(18,4), sale_price decimal(18,4)))"
        and described.get("order_id") == "varchar",
        described,
    )
    cur.execute("SHOW CREATE VIEW orders")
    created = cur.fetchall()
    check(
        "SHOW CREATE VIEW",
        len(created) == 1 and created[0][0].startswith("CREATE VIEW archive.oms.orders AS\n"),
        created,
    )
    cur.execute("SHOW TABLES")
    shown = [r[0] for r in cur.fetchall()]
    check(
        "SHOW TABLES lists the current schema",
        shown == sorted(shown) and "order_events" in shown and "orders" in shown
        and "queries" not in shown and cur.description[0][0] == "Table",
        shown,
    )
    cur.execute("SHOW TABLES FROM system.runtime")
    check("SHOW TABLES FROM", cur.fetchall() == [["queries"]])
    cur.execute("SHOW SESSION")
    defaults = {r[0]: (r[1], r[2]) for r in cur.fetchall()}
    check(
        "SHOW SESSION lists the properties at the server's limits",
        cur.description[0][0] == "Name"
        and set(defaults) == {"query_max_run_time", "query_max_execution_time", "query_max_memory"}
        and all(value == default for value, default in defaults.values()),
        defaults,
    )
    cur.execute("SHOW FUNCTIONS")
    functions = {r[0]: r[3] for r in cur.fetchall()}
    check(
        "SHOW FUNCTIONS",
        functions.get("date_diff") == "scalar" and functions.get("count_if") == "aggregate"
        and functions.get("row_number") == "window",
        len(functions),
    )
    cur.execute("SHOW COLUMNS FROM orders")
    check("SHOW COLUMNS", [r[0] for r in cur.fetchall()][:2] == ["order_id", "status"])

    cur.execute("SELECT status, item_count FROM orders WHERE order_id = ?", ["A-1"])
    check("qmark parameter", cur.fetchall() == [["DELIVERED", 2]])
    cur.execute(
        "SELECT count(*) FROM order_events WHERE total_amount = ? AND event_date = ? "
        "AND event_time < ?",
        [
            decimal.Decimal("30.0000"),
            datetime.date(2024, 3, 1),
            datetime.datetime(2024, 3, 2, tzinfo=datetime.timezone.utc),
        ],
    )
    check("typed parameters", cur.fetchall() == [[1]])

    legacy = connect(host, port, user, password, legacy_prepared_statements=True)
    lcur = legacy.cursor()
    lcur.execute("SELECT status FROM orders WHERE order_id = ? AND item_count = ?", ["A-2", 1])
    check("PREPARE and EXECUTE with the header", lcur.fetchall() == [["CANCELLED"]])
    legacy.close()

    e = expect_error(cur, "SELEC order_id FROM orders", "SYNTAX_ERROR")
    check(
        "syntax error with location",
        isinstance(e, TrinoUserError) and e.error_location == (1, 1),
        getattr(e, "error_location", e),
    )
    for name, sql, error in [
        ("table not found", "SELECT * FROM no_such_table", "TABLE_NOT_FOUND"),
        ("column not found", "SELECT no_such_column FROM orders", "COLUMN_NOT_FOUND"),
        ("writes refused", "DELETE FROM order_events", "PERMISSION_DENIED"),
        ("unknown session property", "SET SESSION nope = 1", "INVALID_SESSION_PROPERTY"),
    ]:
        e = expect_error(cur, sql, error)
        check(name, isinstance(e, TrinoUserError), e)

    # Session properties: the client keeps what SET SESSION answers and sends it back.
    limited = connect(host, port, user, password)
    scur = limited.cursor()
    scur.execute("SET SESSION query_max_run_time = '1s'")
    scur.fetchall()
    props = limited._client_session.properties
    check("SET SESSION kept by the client", props.get("query_max_run_time") == "1s", props)
    scur.execute("SHOW SESSION")
    shown = {r[0]: r[1] for r in scur.fetchall()}
    check("SHOW SESSION shows what was set", shown.get("query_max_run_time") == "1s" and "query_max_memory" in shown, shown)
    e = expect_error(scur, SLOW_QUERY, "EXCEEDED_TIME_LIMIT")
    check(
        "the session's time limit stops a query",
        isinstance(e, TrinoQueryError) and "1s time limit" in e.message,
        e,
    )
    scur.execute("RESET SESSION query_max_run_time")
    scur.fetchall()
    check("RESET SESSION", "query_max_run_time" not in limited._client_session.properties,
          limited._client_session.properties)
    e = expect_error(scur, "SET SESSION query_max_memory = 'lots'", "INVALID_SESSION_PROPERTY")
    check("a value the property cannot take", isinstance(e, TrinoUserError), e)

    e = expect_error(cur, "USE archive.no_such_schema", "SCHEMA_NOT_FOUND")
    check("USE an unknown schema", isinstance(e, TrinoUserError), e)
    bare = trino.dbapi.connect(
        host=host, port=port, user=user, auth=BasicAuthentication(user, password),
        http_scheme="http", allow_insecure_auth=True,
    )
    bcur = bare.cursor()
    bcur.execute("USE archive.oms")
    bcur.fetchall()
    check(
        "USE sets the session",
        bare._client_session.catalog == "archive" and bare._client_session.schema == "oms",
        (bare._client_session.catalog, bare._client_session.schema),
    )
    bcur.execute("SELECT count(*) FROM orders")
    check("short names after USE", bcur.fetchall() == [[3]])

    started = time.monotonic()
    cur.execute("SELECT x, 'row ' || CAST(x AS VARCHAR) AS label FROM generate_series(1, 1000000) AS t(x)")
    count, total, labels = 0, 0, True
    while True:
        batch = cur.fetchmany(50000)
        if not batch:
            break
        count += len(batch)
        total += sum(r[0] for r in batch)
        labels = labels and all(r[1] == f"row {r[0]}" for r in batch)
    check(
        "a million rows paged to the end",
        count == 1_000_000 and total == 1_000_000 * 1_000_001 // 2 and labels,
        {"rows": count, "seconds": round(time.monotonic() - started, 2)},
    )

    # Cancel mid-stream (DELETE of the nextUri), then kill_query by the owner, then a kill by
    # another user (the API service's token, as a bearer token), which is refused.
    service = trino.dbapi.connect(
        host=host, port=port, user="api-service", auth=JWTAuthentication(token),
        http_scheme="http", allow_insecure_auth=True, catalog="archive", schema="oms",
    )
    for how in ["cancel", "kill_query", "another user's kill"]:
        slow = conn.cursor()
        worker, outcome = in_background(lambda slow=slow: (slow.execute(SLOW_QUERY), slow.fetchall()))
        deadline = time.monotonic() + 10
        while slow.query_id is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        if how == "cancel":
            slow.cancel()
        elif how == "kill_query":
            cur.execute(f"CALL system.runtime.kill_query(query_id => '{slow.query_id}', message => 'test')")
            cur.fetchall()
        else:
            e = expect_error(
                service.cursor(),
                f"CALL system.runtime.kill_query(query_id => '{slow.query_id}')",
                "PERMISSION_DENIED",
            )
            check("another user's query cannot be killed", isinstance(e, TrinoUserError), e)
            running = conn.cursor()
            running.execute(
                "SELECT state FROM system.runtime.queries WHERE query_id = ?", [slow.query_id]
            )
            check("system.runtime.queries lists it running", running.fetchall() == [["RUNNING"]])
            slow.cancel()
        worker.join(timeout=30)
        error = outcome.get("error")
        check(
            how,
            not worker.is_alive() and outcome["seconds"] < 20
            and getattr(error, "error_name", None) == "USER_CANCELED",
            outcome,
        )
        ended = conn.cursor()
        ended.execute(
            'SELECT state, "user", error_code, query, source, lane, started IS NOT NULL, '
            "analysis_time_ms >= 0, queued_time_ms >= 0 FROM system.runtime.queries WHERE query_id = ?",
            [slow.query_id],
        )
        row = ended.fetchall()
        check(
            f"system.runtime.queries after {how}",
            row == [["FAILED", user, "USER_CANCELED", SLOW_QUERY, "trino-python-client", "general", True, True, True]],
            row,
        )
    e = expect_error(cur, "CALL system.runtime.kill_query(query_id => 'no-such-query')", "NOT_FOUND")
    check("kill_query of an unknown query", isinstance(e, TrinoUserError), e)

    cur.execute("SELECT count(*) FROM order_events")
    check("healthy after cancel", cur.fetchall() == [[9]])

    engine = sqlalchemy.create_engine(
        f"trino://{user}@{host}:{port}/archive/oms",
        connect_args={
            "auth": BasicAuthentication(user, password),
            "http_scheme": "http",
            "allow_insecure_auth": True,
        },
    )
    inspector = sqlalchemy.inspect(engine)
    schemas = inspector.get_schema_names()
    check("sqlalchemy schemas", "oms" in schemas, schemas)
    tables = inspector.get_table_names(schema="oms")
    check("sqlalchemy tables", sorted(tables) == ["daily_activity", "order_events"], tables)
    views = inspector.get_view_names(schema="oms")
    check("sqlalchemy views", "orders" in views and "order_events" not in views, views)
    columns = {c["name"]: c["type"] for c in inspector.get_columns("order_events", schema="oms")}
    check(
        "sqlalchemy columns with Trino types",
        str(columns.get("total_amount")) == "DECIMAL(18, 4)"
        and getattr(columns.get("event_time"), "timezone", False)
        and str(columns.get("order_id")) == "VARCHAR",
        {k: str(v) for k, v in columns.items()},
    )
    with engine.connect() as c:
        chart = c.execute(
            sqlalchemy.text(
                "SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY status LIMIT 100"
            )
        ).fetchall()
    check("chart-style query", [tuple(r) for r in chart] == [("CANCELLED", 1), ("DELIVERED", 1), ("PAID", 1)], chart)

    # The statements the Trino JDBC driver's DatabaseMetaData sends (DBeaver's tree), verbatim.
    jdbc = conn.cursor()
    jdbc.execute("SELECT TABLE_CAT\nFROM system.jdbc.catalogs\nORDER BY TABLE_CAT")
    check("jdbc getCatalogs", jdbc.fetchall() == [["archive"], ["system"]])
    jdbc.execute(
        "SELECT TABLE_SCHEM, TABLE_CATALOG\nFROM system.jdbc.schemas\n"
        "WHERE TABLE_CATALOG = 'archive'\nORDER BY TABLE_CATALOG, TABLE_SCHEM"
    )
    check("jdbc getSchemas", jdbc.fetchall() == [["oms", "archive"]])
    jdbc.execute("SELECT TABLE_TYPE\nFROM system.jdbc.table_types\nORDER BY TABLE_TYPE")
    check("jdbc getTableTypes", jdbc.fetchall() == [["TABLE"], ["VIEW"]])
    jdbc.execute(
        "SELECT TABLE_CAT, TABLE_SCHEM, TABLE_NAME, TABLE_TYPE, REMARKS,\n"
        "  TYPE_CAT, TYPE_SCHEM, TYPE_NAME, \n  SELF_REFERENCING_COL_NAME, REF_GENERATION\n"
        "FROM system.jdbc.tables\n"
        "WHERE TABLE_CAT = 'archive' AND TABLE_SCHEM LIKE 'oms' ESCAPE '\\' "
        "AND TABLE_NAME LIKE '%' ESCAPE '\\' AND TABLE_TYPE IN ('TABLE', 'VIEW')\n"
        "ORDER BY TABLE_TYPE, TABLE_CAT, TABLE_SCHEM, TABLE_NAME"
    )
    listed = [(r[2], r[3], bool(r[4])) for r in jdbc.fetchall()]
    check(
        "jdbc getTables",
        ("order_events", "TABLE", True) in listed and ("orders", "VIEW", True) in listed
        and all(name != "queries" for name, _, _ in listed),
        listed,
    )
    jdbc.execute(
        "SELECT TABLE_CAT, TABLE_SCHEM, TABLE_NAME, COLUMN_NAME, DATA_TYPE,\n"
        "  TYPE_NAME, COLUMN_SIZE, BUFFER_LENGTH, DECIMAL_DIGITS, NUM_PREC_RADIX,\n"
        "  NULLABLE, REMARKS, COLUMN_DEF, SQL_DATA_TYPE, SQL_DATETIME_SUB,\n"
        "  CHAR_OCTET_LENGTH, ORDINAL_POSITION, IS_NULLABLE,\n"
        "  SCOPE_CATALOG, SCOPE_SCHEMA, SCOPE_TABLE,\n"
        "  SOURCE_DATA_TYPE, IS_AUTOINCREMENT, IS_GENERATEDCOLUMN\n"
        "FROM system.jdbc.columns\n"
        "WHERE TABLE_CAT = 'archive' AND TABLE_SCHEM LIKE 'oms' ESCAPE '\\' "
        "AND TABLE_NAME LIKE 'order\\_events' ESCAPE '\\'\n"
        "ORDER BY TABLE_CAT, TABLE_SCHEM, TABLE_NAME, ORDINAL_POSITION"
    )
    described = {r[3]: (r[4], r[5], r[6], r[8], r[16]) for r in jdbc.fetchall()}
    check(
        "jdbc getColumns",
        described.get("total_amount") == (3, "decimal(18,4)", 18, 4, described["total_amount"][4])
        and described.get("event_time")[:2] == (2014, "timestamp(6) with time zone")
        and described.get("order_id")[:2] == (12, "varchar")
        and described.get("items")[:2] == (2003, "array(row(sku varchar, quantity bigint, unit_price decimal(18,4), sale_price decimal(18,4)))")
        and sorted(v[4] for v in described.values()) == list(range(1, len(described) + 1)),
        described,
    )
    jdbc.execute(
        "SELECT  CAST(NULL AS varchar) TABLE_CAT,  CAST(NULL AS varchar) TABLE_SCHEM,  "
        "CAST(NULL AS varchar) TABLE_NAME,  CAST(NULL AS varchar) COLUMN_NAME,  "
        "CAST(NULL AS smallint) KEY_SEQ,  CAST(NULL AS varchar) PK_NAME WHERE false"
    )
    check("jdbc getPrimaryKeys", jdbc.fetchall() == [] and len(jdbc.description) == 6)
    jdbc.execute(
        "SELECT TYPE_NAME, DATA_TYPE, PRECISION, LITERAL_PREFIX, LITERAL_SUFFIX,\n"
        "CREATE_PARAMS, NULLABLE, CASE_SENSITIVE, SEARCHABLE, UNSIGNED_ATTRIBUTE,\n"
        "FIXED_PREC_SCALE, AUTO_INCREMENT, LOCAL_TYPE_NAME, MINIMUM_SCALE, MAXIMUM_SCALE,\n"
        "SQL_DATA_TYPE, SQL_DATETIME_SUB, NUM_PREC_RADIX\n"
        "FROM system.jdbc.types\nORDER BY DATA_TYPE"
    )
    types = {r[0]: (r[1], r[2], r[8], r[17]) for r in jdbc.fetchall()}
    check(
        "jdbc getTypeInfo",
        types.get("bigint") == (-5, 19, 3, 10)
        and types.get("varchar") == (12, 2147483647, 3, None)
        and types.get("timestamp with time zone", (None,))[0] == 2014
        and types.get("decimal", (None,))[0] == 3
        and types.get("array", (None,))[0] == 2003
        and types.get("map", (None, None, None))[2] == 0,
        types,
    )
    # What the driver reads for user-defined types, procedures, pseudo-columns and the rest:
    # nothing in this archive, with the columns DatabaseMetaData promises.
    for table, width, order in [
        ("udts", 7, "DATA_TYPE, TYPE_CAT, TYPE_SCHEM, TYPE_NAME"),
        ("super_types", 6, "TYPE_CAT, TYPE_SCHEM, TYPE_NAME"),
        ("super_tables", 4, "TABLE_CAT, TABLE_SCHEM, TABLE_NAME"),
        ("attributes", 21, "TYPE_CAT, TYPE_SCHEM, TYPE_NAME, ORDINAL_POSITION"),
        ("procedures", 6, "PROCEDURE_CAT, PROCEDURE_SCHEM, PROCEDURE_NAME, SPECIFIC_NAME"),
        ("procedure_columns", 20, "PROCEDURE_CAT, PROCEDURE_SCHEM, PROCEDURE_NAME, SPECIFIC_NAME"),
        ("pseudo_columns", 12, "TABLE_CAT, TABLE_SCHEM, TABLE_NAME, COLUMN_NAME"),
    ]:
        jdbc.execute(f"SELECT * FROM system.jdbc.{table} WHERE 1 = 1 ORDER BY {order}")
        rows = jdbc.fetchall()
        check(f"jdbc {table}", rows == [] and len(jdbc.description) == width, (rows, jdbc.description))

    # The session's time zone (X-Trino-Time-Zone): current_timestamp is shown in it.
    berlin = connect(host, port, user, password, timezone="Europe/Berlin")
    zcur = berlin.cursor()
    zcur.execute(
        "SELECT current_timestamp, "
        "at_timezone(from_iso8601_timestamp('2024-07-01T10:00:00Z'), 'Asia/Tokyo')"
    )
    now, tokyo = zcur.fetchall()[0]
    check(
        "session time zone",
        str(getattr(now.tzinfo, "key", now.tzinfo)) == "Europe/Berlin"
        and tokyo.hour == 19 and str(getattr(tokyo.tzinfo, "key", tokyo.tzinfo)) == "Asia/Tokyo",
        (now, tokyo),
    )
    # The client checks zone names itself, so an unknown one goes over plain HTTP.
    answer = requests.post(
        f"http://{host}:{port}/v1/statement", data="SELECT 1", auth=(user, password),
        headers={"X-Trino-User": user, "X-Trino-Time-Zone": "Mars/Olympus_Mons"}, timeout=10,
    ).json()
    while "error" not in answer and answer.get("nextUri"):
        answer = requests.get(answer["nextUri"], auth=(user, password), timeout=10).json()
    check(
        "unknown time zone refused",
        answer.get("error", {}).get("errorName") == "GENERIC_USER_ERROR"
        and "Mars/Olympus_Mons" in answer["error"]["message"],
        answer,
    )

    info = requests.get(f"http://{host}:{port}/v1/info", timeout=10).json()
    check("server info", info["coordinator"] is True and "orderlake" in info["nodeVersion"]["version"], info)

    try:
        bad = connect(host, port, user, "not the password")
        bad.cursor().execute("SELECT 1")
        check("bad password refused", False, "query ran")
    except HttpError as e:
        check("bad password refused", "401" in str(e), e)

    print(json.dumps({"check": "all", "ok": True}), flush=True)


if __name__ == "__main__":
    main()

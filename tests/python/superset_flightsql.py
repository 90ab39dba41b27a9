"""Superset's path to orderlake-server through Flight SQL: the `flightsql-dbapi` package's
SQLAlchemy dialect (`datafusion+flightsql://`), a client nobody here wrote, driven as Superset
drives it: the inspector's schemas, tables and columns, then chart-style aggregate queries.

Usage: superset_flightsql.py HOST PORT USER PASSWORD

Prints one JSON line per check and exits non-zero on the first failure.
"""

import json
import sys
from urllib.parse import quote

import sqlalchemy
from sqlalchemy import inspect, text

# Registers the `datafusion+flightsql` dialect.
import flightsql.sqlalchemy  # noqa: F401


def check(name, ok, detail=""):
    print(json.dumps({"check": name, "ok": bool(ok), "detail": str(detail)[:500]}), flush=True)
    if not ok:
        sys.exit(1)


def main():
    host, port, user, password = sys.argv[1:5]
    engine = sqlalchemy.create_engine(
        f"datafusion+flightsql://{quote(user)}:{quote(password)}@{host}:{port}?insecure=true"
    )
    inspector = inspect(engine)

    schemas = inspector.get_schema_names()
    check("schemas", "oms" in schemas and "information_schema" in schemas, schemas)

    tables = set(inspector.get_table_names(schema="oms"))
    expected = {
        "order_events",
        "daily_activity",
        "orders",
        "order_items",
        "order_status_history",
        "customer_purchase_summary",
        "daily_order_kpis",
        "legacy_orders_current",
    }
    check("tables of oms: exactly the archive's tables and views", tables == expected, sorted(tables))
    check("has_table", inspector.has_table("orders", schema="oms"))

    columns = {c["name"]: c["type"] for c in inspector.get_columns("orders", schema="oms")}
    check(
        "columns of a view",
        {"order_id", "customer_id", "status", "item_count", "total_amount"} <= set(columns),
        columns,
    )
    events = {c["name"] for c in inspector.get_columns("order_events", schema="oms")}
    check("columns of the archive", {"kafka_value", "event_date", "items"} <= events, sorted(events))

    with engine.connect() as conn:
        # A bar chart: orders by status.
        rows = conn.execute(
            text(
                "SELECT status AS status, count(*) AS count FROM oms.orders "
                "GROUP BY status ORDER BY count DESC LIMIT 100"
            )
        ).fetchall()
        check(
            "chart: orders by status",
            sorted(rows) == [("CANCELLED", 1), ("DELIVERED", 1), ("PAID", 1)],
            rows,
        )
        # A time series: events per day, as Superset writes its time grain.
        rows = conn.execute(
            text(
                "SELECT date_trunc('day', event_time) AS __timestamp, count(*) AS events "
                "FROM oms.order_events WHERE event_time IS NOT NULL "
                "GROUP BY date_trunc('day', event_time) ORDER BY __timestamp"
            )
        ).fetchall()
        check("chart: events per day", len(rows) >= 3 and sum(r[1] for r in rows) >= 7, rows)
        # Superset writes filter values into the SQL it sends.
        rows = conn.execute(
            text("SELECT order_id FROM oms.orders WHERE customer_id = 'C-1' ORDER BY order_id")
        ).fetchall()
        check("filter", rows == [("A-1",), ("A-2",)], rows)
        try:
            conn.execute(text("DROP TABLE oms.order_events"))
            check("ddl refused", False, "DROP TABLE succeeded")
        except Exception as e:  # this driver raises pyarrow's Flight errors as they come
            check("ddl refused", "refused" in str(e), e)

    # With the dialect's prepared statements on, values travel as Flight SQL parameters, each in
    # a dense union (how this client always sends them).
    prepared = sqlalchemy.create_engine(
        f"datafusion+flightsql://{quote(user)}:{quote(password)}@{host}:{port}"
        "?insecure=true&feature-sqlalchemy-prepared-statements=on"
    )
    with prepared.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT order_id FROM oms.orders WHERE customer_id = :c AND item_count >= :n "
                "ORDER BY order_id"
            ),
            {"c": "C-1", "n": 1},
        ).fetchall()
        check("filter with bound values (dense unions)", rows == [("A-1",), ("A-2",)], rows)
        rows = conn.execute(text("SELECT :v AS v"), {"v": "untyped"}).fetchall()
        check("an untyped parameter takes its value's type", rows == [("untyped",)], rows)

    print(json.dumps({"check": "all", "ok": True}), flush=True)


if __name__ == "__main__":
    main()

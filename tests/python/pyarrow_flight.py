"""pyarrow's own Flight client (plain Flight: the user builds the Flight SQL commands) against
orderlake-server, through what such a user does: sign in, query, the schema of a query before
running it, the actions the server offers, catalogs, schemas and tables (with their schemas),
SQL info, a prepared statement (created, run, closed), a service token, a result of 5M rows
read batch by batch, a cancel, and the errors a user meets (syntax, unknown table, DDL, a bad
token), each as the exception pyarrow raises for its status.

Usage: pyarrow_flight.py URI USER PASSWORD SERVICE_TOKEN [ROOT_CERT_PEM]

Asserts each step; prints one JSON line per check and exits non-zero on the first failure.
"""

import json
import os
import sys
import time

import pyarrow as pa
import pyarrow.flight as flight

import flight_sql_messages as sql
from background import SLOW_QUERY, in_background


def check(name, ok, detail=""):
    print(json.dumps({"check": name, "ok": bool(ok), "detail": str(detail)[:500]}), flush=True)
    if not ok:
        sys.exit(1)


def expect_error(name, kind, words, call):
    try:
        call()
    except kind as e:
        check(name, all(w in str(e) for w in words), e)
        return
    except Exception as e:  # noqa: BLE001 (the wrong kind is the failure reported)
        check(name, False, f"{type(e).__name__}: {e}")
    check(name, False, "no error")


# Every client made, closed before the interpreter exits: a pyarrow Flight client (or a reader
# an exception still holds) torn down during interpreter shutdown can crash it ("double free"
# after every check passed, once in a TLS run).
CLIENTS = []


def client(uri, root_cert):
    kwargs = {"tls_root_certs": root_cert} if root_cert else {}
    made = flight.FlightClient(uri, **kwargs)
    CLIENTS.append(made)
    return made


class Session:
    def __init__(self, uri, root_cert, header):
        self.client = client(uri, root_cert)
        self.options = flight.FlightCallOptions(headers=[header] if header else [])

    def info(self, command):
        return self.client.get_flight_info(flight.FlightDescriptor.for_command(command), self.options)

    def read(self, command):
        info = self.info(command)
        return self.client.do_get(info.endpoints[0].ticket, self.options).read_all()

    def action(self, kind, body):
        return [r.body.to_pybytes() for r in self.client.do_action(flight.Action(kind, body), self.options)]


def main():
    uri, user, password, token = sys.argv[1:5]
    root_cert = open(sys.argv[5], "rb").read() if len(sys.argv) > 5 else None
    signing_in = client(uri, root_cert)
    header = signing_in.authenticate_basic_token(user, password)
    check("basic sign-in returns a bearer token", header[0].lower() == b"authorization" and header[1].startswith(b"Bearer "), header[0])
    s = Session(uri, root_cert, header)

    counts = s.read(sql.statement_query(
        "SELECT order_id, count(*) AS events FROM order_events WHERE order_id IS NOT NULL "
        "GROUP BY order_id ORDER BY order_id"))
    check("a statement query", counts.column_names == ["order_id", "events"] and counts.num_rows > 1
          and sum(counts.column("events").to_pylist()) > 0, counts.to_pylist())

    schema = s.client.get_schema(flight.FlightDescriptor.for_command(
        sql.statement_query("SELECT order_id, total_amount, event_time FROM order_events")), s.options).schema
    check("the schema of a query before it runs", schema.names == ["order_id", "total_amount", "event_time"]
          and pa.types.is_decimal(schema.field("total_amount").type)
          and pa.types.is_timestamp(schema.field("event_time").type), schema)

    actions = {a.type for a in s.client.list_actions(s.options)}
    check("the actions a Flight SQL server offers",
          {"CreatePreparedStatement", "ClosePreparedStatement", "CancelFlightInfo"} <= actions, actions)

    catalogs = s.read(sql.get_catalogs()).column("catalog_name").to_pylist()
    check("catalogs", "archive" in catalogs and "system" in catalogs, catalogs)
    schemas = s.read(sql.get_db_schemas("archive")).to_pylist()
    check("the archive catalog's schemas", {"catalog_name": "archive", "db_schema_name": "oms"} in schemas, schemas)
    tables = s.read(sql.get_tables("archive", "oms", "order%", include_schema=True))
    names = tables.column("table_name").to_pylist()
    check("tables by pattern", "order_events" in names and "orders" in names
          and all(n.startswith("order") for n in names), names)
    events = names.index("order_events")
    table_schema = pa.ipc.read_schema(pa.py_buffer(tables.column("table_schema")[events].as_py()))
    check("a table's schema in the listing", "order_id" in table_schema.names and "kafka_value" in table_schema.names,
          table_schema.names)

    info = s.read(sql.get_sql_info())
    check("SQL info", info.num_rows > 0 and info.column_names[:2] == ["info_name", "value"], info.schema)

    lookup = "SELECT status FROM order_events WHERE order_id = 'A-1' ORDER BY event_time"
    created = sql.unpacked(s.action("CreatePreparedStatement", sql.create_prepared_statement(lookup))[0],
                           "ActionCreatePreparedStatementResult")
    handle = created[1][0]
    prepared_schema = pa.ipc.read_schema(pa.py_buffer(created[2][0]))
    statuses = s.read(sql.prepared_statement_query(handle)).column("status").to_pylist()
    direct = s.read(sql.statement_query(lookup)).column("status").to_pylist()
    check("a prepared statement answers as the statement does", prepared_schema.names == ["status"]
          and statuses == direct and len(statuses) > 1, statuses)
    # Handles are stateless (they carry the statement): closing one is acknowledged, and what
    # another user may do with a handle is what they may do with its SQL (hostile_requests.rs).
    closed = s.action("ClosePreparedStatement", sql.close_prepared_statement(handle))
    check("closing a prepared statement is acknowledged", closed == [], closed)
    service = Session(uri, root_cert, (b"authorization", b"Bearer " + token.encode()))
    check("the API service's token runs queries too",
          service.read(sql.statement_query(lookup)).column("status").to_pylist() == direct)

    info = s.info(sql.statement_query("SELECT x FROM generate_series(1, 5000000) AS t(x)"))
    reader = s.client.do_get(info.endpoints[0].ticket, s.options)
    rows = batches = 0
    for chunk in reader:
        rows += chunk.data.num_rows
        batches += 1
    check("5M rows read batch by batch", rows == 5_000_000 and batches > 10, (rows, batches))

    slow = s.info(sql.statement_query(SLOW_QUERY))

    def drain():
        # Batch by batch: pyarrow's read_all turns a CANCELLED status into KeyboardInterrupt
        # (its signal handling takes the code for an interrupted wait).
        for _ in s.client.do_get(slow.endpoints[0].ticket, s.options):
            pass

    worker, outcome = in_background(drain)
    time.sleep(1)
    request = sql.field(1, slow.serialize())
    result = sql.read_fields(s.action("CancelFlightInfo", request)[0])
    worker.join(timeout=30)
    check("CancelFlightInfo cancels a running query", result.get(1) == [1] and not worker.is_alive()
          and isinstance(outcome.get("error"), flight.FlightCancelledError), (result, outcome))
    outcome.clear()  # the error's traceback holds the cancelled reader

    expect_error("a syntax error is INVALID_ARGUMENT with its place", pa.ArrowInvalid, ["Line: 1, Column: 1"],
                 lambda: s.read(sql.statement_query("SELEC 1")))
    expect_error("an unknown table is NOT_FOUND naming it", pa.ArrowKeyError, ["no_such_table"],
                 lambda: s.read(sql.statement_query("SELECT * FROM no_such_table")))
    expect_error("DDL is refused", flight.FlightUnauthorizedError, ["DROP TABLE is refused"],
                 lambda: s.read(sql.statement_query("DROP TABLE order_events")))
    bad = Session(uri, root_cert, (b"authorization", b"Bearer not-a-token"))
    expect_error("a bad token is UNAUTHENTICATED", flight.FlightUnauthenticatedError, [],
                 lambda: bad.read(sql.statement_query("SELECT 1")))
    expect_error("a wrong password is UNAUTHENTICATED", flight.FlightUnauthenticatedError, [],
                 lambda: client(uri, root_cert).authenticate_basic_token(user, password + "x"))
    check("the server still answers", s.read(sql.statement_query("SELECT 1 AS one")).to_pylist() == [{"one": 1}])
    check("all", True)


if __name__ == "__main__":
    try:
        main()
    finally:
        for made in CLIENTS:
            made.close()
    # Every check has passed and been printed: leave without the interpreter's teardown, in which
    # pyarrow's gRPC objects have still crashed it ("double free or corruption") after a TLS run
    # with all clients closed. A failed check or an exception exits non-zero above, as before.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

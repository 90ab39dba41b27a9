"""Signs in to orderlake-server with real Flight clients nobody here wrote, for every credential.

Usage: sign_in.py URI CREDENTIALS_JSON

CREDENTIALS_JSON is a list of [user, password] pairs configured on the server. For each pair,
Python ADBC (the Go driver, which sends Basic credentials as unpadded base64) and pyarrow's Flight
client (padded) sign in and run a query; a wrong password is refused by both. Prints one JSON
line per check and exits non-zero on the first failure.
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.flight as flight
from adbc_driver_manager import Error as AdbcError

from flight_sql_messages import statement_query


def check(name, ok, detail=""):
    print(json.dumps({"check": name, "ok": bool(ok), "detail": str(detail)[:500]}), flush=True)
    if not ok:
        sys.exit(1)


def adbc_query(uri, user, password):
    conn = flightsql.connect(uri, db_kwargs={"username": user, "password": password})
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM order_events")
        return cur.fetchall()
    finally:
        conn.close()


def pyarrow_query(uri, user, password):
    client = flight.FlightClient(uri)
    try:
        header = client.authenticate_basic_token(user, password)
        options = flight.FlightCallOptions(headers=[header])
        descriptor = flight.FlightDescriptor.for_command(statement_query("SELECT count(*) AS n FROM order_events"))
        info = client.get_flight_info(descriptor, options)
        table = client.do_get(info.endpoints[0].ticket, options).read_all()
        return table.column(0).to_pylist()
    finally:
        client.close()


def main():
    uri, credentials = sys.argv[1], json.loads(sys.argv[2])
    expected_count = None
    for user, password in credentials:
        label = f"{user}:{password!r} ({len((user + ':' + password).encode()) % 3} mod 3)"
        rows = adbc_query(uri, user, password)
        expected_count = expected_count or rows[0][0]
        check(f"adbc signs in as {label}", rows == [(expected_count,)] and expected_count > 0, rows)
        counts = pyarrow_query(uri, user, password)
        check(f"pyarrow signs in as {label}", counts == [expected_count], counts)

        wrong = password + "x"
        try:
            adbc_query(uri, user, wrong)
            check(f"adbc refuses a wrong password for {user}", False, "query ran")
        except AdbcError as e:
            check(f"adbc refuses a wrong password for {user}", "UNAUTHENTICATED" in str(e).upper(), e)
        try:
            pyarrow_query(uri, user, wrong)
            check(f"pyarrow refuses a wrong password for {user}", False, "query ran")
        except flight.FlightUnauthenticatedError as e:
            check(f"pyarrow refuses a wrong password for {user}", "malformed" not in str(e), e)

    print(json.dumps({"check": "all", "ok": True}), flush=True)


if __name__ == "__main__":
    main()

"""Fetches one query's rows to the end through Flight SQL (ADBC), Trino's protocol with the trino
client, and Trino's protocol with plain HTTP and JSON parsing (no row mapping: the server's share),
alternating, and prints rows/s, MB/s and the time to the first row of each (medians).

Usage: bench_fetch.py HOST FLIGHT_PORT TRINO_PORT USER PASSWORD ROWS REPS

MB/s counts the result's size as Arrow holds it (the same for both), so the two rates compare
the protocols, not their encodings; Trino's JSON bytes on the wire are printed beside.
"""

import statistics
import sys
import time

import adbc_driver_flightsql.dbapi as flightsql
import requests
import trino
from trino.auth import BasicAuthentication


def main():
    host, flight_port, trino_port, user, password = sys.argv[1:6]
    rows, reps = int(sys.argv[6]), int(sys.argv[7])
    sql = (
        "SELECT order_id, customer_id, status, event_time, total_amount, event_date "
        f"FROM order_events LIMIT {rows}"
    )
    flight = flightsql.connect(
        f"grpc://{host}:{flight_port}", db_kwargs={"username": user, "password": password}
    )
    wire = {"bytes": 0}
    tr = trino.dbapi.connect(
        host=host, port=int(trino_port), user=user, auth=BasicAuthentication(user, password),
        http_scheme="http", allow_insecure_auth=True, catalog="archive", schema="oms",
    )
    tr._http_session.hooks["response"].append(
        lambda r, *a, **k: wire.__setitem__("bytes", wire["bytes"] + len(r.content))
    )

    def via_flight():
        cur = flight.cursor()
        started = time.perf_counter()
        cur.execute(sql)
        reader = cur.fetch_record_batch()
        first, n, size = None, 0, 0
        for batch in reader:
            if first is None and batch.num_rows:
                first = time.perf_counter() - started
            n += batch.num_rows
            size += batch.nbytes
        return time.perf_counter() - started, first, n, size

    def via_trino():
        cur = tr.cursor()
        started = time.perf_counter()
        cur.execute(sql)
        first, n = None, 0
        while True:
            batch = cur.fetchmany(10000)
            if not batch:
                break
            if first is None:
                first = time.perf_counter() - started
            n += len(batch)
        return time.perf_counter() - started, first, n, None

    def via_http():
        # The protocol alone: pages fetched and parsed as JSON, rows counted, no row mapping.
        session = requests.Session()
        session.auth = (user, password)
        headers = {"X-Trino-User": user, "X-Trino-Catalog": "archive", "X-Trino-Schema": "oms"}
        started = time.perf_counter()
        page = session.post(
            f"http://{host}:{trino_port}/v1/statement", data=sql, headers=headers
        ).json()
        first, n = None, 0
        while True:
            if page.get("data"):
                if first is None:
                    first = time.perf_counter() - started
                n += len(page["data"])
            if "nextUri" not in page:
                break
            page = session.get(page["nextUri"], headers=headers).json()
        assert "error" not in page, page["error"]
        return time.perf_counter() - started, first, n, None

    results = {
        "Flight SQL (ADBC)": [],
        "Trino protocol (trino client)": [],
        "Trino protocol (HTTP and JSON only)": [],
    }
    arrow_bytes = None
    wire_per_run = []
    for _ in range(reps + 1):  # the first round warms up
        results["Flight SQL (ADBC)"].append(via_flight())
        before = wire["bytes"]
        results["Trino protocol (trino client)"].append(via_trino())
        wire_per_run.append(wire["bytes"] - before)
        results["Trino protocol (HTTP and JSON only)"].append(via_http())
    arrow_bytes = results["Flight SQL (ADBC)"][-1][3]
    print(f"query: {sql}")
    print(f"result: {arrow_bytes / 1e6:.1f} MB as Arrow; Trino JSON on the wire "
          f"{statistics.median(wire_per_run[1:]) / 1e6:.1f} MB")
    print("| front door | rows | seconds | rows/s | MB/s (Arrow size) | first row |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        runs = runs[1:]
        seconds = statistics.median(r[0] for r in runs)
        first = statistics.median(r[1] for r in runs)
        n = runs[0][2]
        assert all(r[2] == n for r in runs) and n == rows, (name, [r[2] for r in runs])
        print(f"| {name} | {n:,} | {seconds:.2f} | {n / seconds:,.0f} | "
              f"{arrow_bytes / seconds / 1e6:.1f} | {first * 1000:.0f} ms |")


if __name__ == "__main__":
    main()

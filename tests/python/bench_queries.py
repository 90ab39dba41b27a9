"""The DuckDB side of the cold-query benchmark, and the report.

  bench_queries.py prepare QUERIES TABLE_DIR REPS OUT_DIR [PARAMS_JSON]
      chooses the lookup parameters from the archive (or reuses those of an earlier phase),
      writes OUT_DIR/orderlake.json (the queries for the Flight SQL runner), times each query in
      DuckDB over the same Parquet files (OUT_DIR/duckdb.json: median and best milliseconds,
      rows), and records the archive's size (OUT_DIR/archive.json).
  bench_queries.py keys TABLE_DIR N
      prints N order ids, N customer ids and the archive's years, sampled uniformly from the
      table's live files (the load test's keys), as JSON.
  bench_queries.py report OUT_DIR [OUT_DIR_AFTER]
      prints query, orderlake median, DuckDB median, ratio, rows (which must agree) for each
      phase, and the archive's bytes per event against the raw JSON bytes per event.
"""

import json
import math
import os
import re
import statistics
import sys
import time
import tomllib

import duckdb
from deltalake import DeltaTable


def connect(table_dir):
    con = duckdb.connect()
    # Exactly the files the table's current version references (compaction leaves replaced
    # files behind until a vacuum), read with their Hive partition column.
    files = ", ".join("'" + f.replace("'", "''") + "'" for f in DeltaTable(table_dir).file_uris())
    con.execute(
        f"CREATE VIEW order_events AS SELECT * FROM read_parquet([{files}], hive_partitioning = true)"
    )
    return con


def choose_parameters(con):
    # A mid-history Rozana order with a full journey, and the busiest customer of a middle year.
    years = con.sql(
        "SELECT min(year(event_date)), max(year(event_date)) FROM order_events"
    ).fetchall()[0]
    year = (years[0] + years[1]) // 2
    order_id = con.sql(
        "SELECT order_id FROM order_events WHERE order_id LIKE 'ORD-%' "
        f"AND year(event_date) = {int(year)} "
        "GROUP BY order_id HAVING count(*) >= 4 ORDER BY order_id LIMIT 1"
    ).fetchall()[0][0]
    customer_id = con.sql(
        "SELECT customer_id FROM order_events WHERE customer_id IS NOT NULL "
        f"AND year(event_date) = {int(year)} "
        "GROUP BY customer_id ORDER BY count(*) DESC LIMIT 1 OFFSET 10"
    ).fetchall()[0][0]
    # The API's usual question: a customer of median activity (the generator's customers are
    # skewed; the busy one above has a couple of hundred thousand events).
    typical_customer_id = con.sql(
        "WITH c AS (SELECT customer_id, count(*) AS n FROM order_events "
        f"WHERE customer_id IS NOT NULL AND year(event_date) = {int(year)} GROUP BY customer_id) "
        "SELECT customer_id FROM c ORDER BY abs(n - (SELECT median(n) FROM c)), customer_id LIMIT 1"
    ).fetchall()[0][0]
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "typical_customer_id": typical_customer_id,
        "year": year,
        "next_year": year + 1,
    }


def keys(table_dir, n):
    con = connect(table_dir)
    sample = lambda column: [
        r[0]
        for r in con.sql(
            f"SELECT DISTINCT {column} FROM order_events WHERE {column} IS NOT NULL "
            f"USING SAMPLE reservoir({int(n)} ROWS) REPEATABLE (7)"
        ).fetchall()
    ]
    years = con.sql("SELECT DISTINCT year(event_date) FROM order_events ORDER BY 1").fetchall()
    return {
        "order_id": sample("order_id"),
        "customer_id": sample("customer_id"),
        "year": [y[0] for y in years],
    }


def archive_size(con, table_dir):
    events, raw = con.sql(
        "SELECT count(*), sum(coalesce(octet_length(kafka_value), 0)) FROM order_events"
    ).fetchall()[0]
    live = DeltaTable(table_dir).file_uris()
    sizes = sum(os.path.getsize(f.removeprefix("file://")) for f in live)
    return {"events": events, "raw_bytes": raw, "files": len(live), "bytes": sizes}


def prepare(queries_path, table_dir, reps, out_dir, params_path=None):
    with open(queries_path, "rb") as f:
        suite = tomllib.load(f)["query"]
    # BENCH_MATCH: only the queries whose name matches this regular expression (the lookups alone
    # while working on them, say). The first two must stay the explained lookups.
    match = os.environ.get("BENCH_MATCH")
    if match:
        suite = [q for q in suite if re.search(match, q["name"])]
    con = connect(table_dir)
    if params_path:
        params = json.load(open(params_path))["params"]
    else:
        params = choose_parameters(con)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "archive.json"), "w") as f:
        json.dump(archive_size(con, table_dir), f)
    ours, theirs = [], []
    for q in suite:
        sql = q["sql"].format(**params)
        duck_sql = q.get("duckdb", q["sql"]).format(**params)
        ours.append({"name": q["name"], "sql": sql})
        times, rows = [], 0
        con.sql(duck_sql).to_arrow_table()  # warm, as the server runs are after a first one
        for _ in range(reps):
            t = time.perf_counter()
            rows = con.sql(duck_sql).to_arrow_table().num_rows
            times.append((time.perf_counter() - t) * 1000)
        theirs.append(
            {"name": q["name"], "median_ms": statistics.median(times), "best_ms": min(times), "rows": rows}
        )
        print(f"duckdb  {q['name']:<32} {statistics.median(times):10.1f} ms  {rows} rows", flush=True)
    with open(os.path.join(out_dir, "orderlake.json"), "w") as f:
        json.dump({"params": params, "queries": ours}, f)
    with open(os.path.join(out_dir, "duckdb.json"), "w") as f:
        json.dump(theirs, f)


def phase(out_dir):
    duck = {r["name"]: r for r in json.load(open(os.path.join(out_dir, "duckdb.json")))}
    ours = [json.loads(l) for l in open(os.path.join(out_dir, "orderlake.jsonl"))]
    archive = json.load(open(os.path.join(out_dir, "archive.json")))
    return duck, ours, archive


def report(out_dirs):
    phases = [phase(d) for d in out_dirs]
    labels = {"before": "before maintenance", "after": "after maintenance"}

    def label(d):
        base = os.path.basename(os.path.normpath(d))
        if base.startswith("cluster-"):
            return f"{base[len('cluster-'):]} executors"
        return labels.get(base, base)

    names = [label(d) for d in out_dirs] if len(phases) > 1 else [""]
    params = json.load(open(os.path.join(out_dirs[0], "orderlake.json")))["params"]
    print(f"parameters: {params}")
    head = "| query |"
    rule = "|---|"
    for n in names:
        label = f" ({n})" if n else ""
        head += f" orderlake ms{label} | DuckDB ms{label} | ratio{label} |"
        rule += "---:|---:|---:|"
    print(head + " rows (orderlake/DuckDB) |")
    print(rule + "---|")
    for i, first in enumerate(phases[0][1]):
        line = f"| {first['name']} |"
        rows = []
        for duck, ours, _ in phases:
            r = ours[i]
            d = duck[r["name"]]
            ratio = r["median_ms"] / d["median_ms"] if d["median_ms"] else float("inf")
            line += f" {r['median_ms']:.1f} | {d['median_ms']:.1f} | {ratio:.2f} |"
            rows.append(f"{r['rows']}/{d['rows']}" + ("" if r["rows"] == d["rows"] else " ROWS DIFFER"))
        print(line + " " + ", ".join(rows) + " |")
    for n, (duck, ours, _) in zip(names, phases):
        ratios = [r["median_ms"] / duck[r["name"]]["median_ms"] for r in ours]
        geomean = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        print(f"geometric mean of the ratios{' ' + n if n else ''}: {geomean:.2f}")
    for n, (_, _, a) in zip(names, phases):
        print(
            f"archive{' ' + n if n else ''}: {a['events']} events, {a['files']} Parquet files, "
            f"{a['bytes'] / a['events']:.0f} bytes/event on disk vs {a['raw_bytes'] / a['events']:.0f} "
            f"bytes/event of raw JSON values ({a['bytes'] / a['raw_bytes']:.2f}x)"
        )


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], *sys.argv[6:7])
    elif sys.argv[1] == "keys":
        print(json.dumps(keys(sys.argv[2], int(sys.argv[3]))))
    elif sys.argv[1] == "report":
        report(sys.argv[2:])
    else:
        sys.exit(__doc__)

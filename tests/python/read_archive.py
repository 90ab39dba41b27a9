"""Reads an orderlake archive with clients nobody in this project wrote, and prints what they see.

deltalake (delta-rs' Python binding, its own log replay) opens the table transactionally; DuckDB
then aggregates the same snapshot, and for a local table also reads the raw Parquet files with
Hive partitioning, the way a plain Parquet reader would. Usage: read_archive.py TABLE_URI
(S3 settings come from the AWS_* environment variables).
"""

import json
import os
import sys

import duckdb
from deltalake import DeltaTable


def storage_options():
    keys = ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ALLOW_HTTP"]
    return {k: os.environ[k] for k in keys if k in os.environ}


AGGREGATE = """
    SELECT count(*) AS rows,
           count(DISTINCT (kafka_topic, kafka_partition, kafka_offset)) AS distinct_coordinates,
           coalesce(sum(octet_length(kafka_value)), 0) AS value_bytes,
           count(decode_error) AS undecoded,
           count(*) FILTER (WHERE kafka_value IS NULL) AS tombstones,
           count(DISTINCT order_id) AS orders,
           CAST(coalesce(sum(total_amount), 0) AS VARCHAR) AS total_amount
    FROM {source}
"""


def main():
    uri = sys.argv[1]
    dt = DeltaTable(uri, storage_options=storage_options())
    dataset = dt.to_pyarrow_dataset()
    con = duckdb.connect()
    con.register("archive", dataset)
    row = con.execute(AGGREGATE.format(source="archive")).fetchone()
    names = ["rows", "distinct_coordinates", "value_bytes", "undecoded", "tombstones", "orders", "total_amount"]
    report = {"delta_version": dt.version(), "files": len(dt.file_uris()), "deltalake_duckdb": dict(zip(names, row))}
    per_topic = con.execute(
        "SELECT kafka_topic, count(*) FROM archive GROUP BY 1 ORDER BY 1"
    ).fetchall()
    report["per_topic"] = {t: n for t, n in per_topic}
    if not uri.startswith("s3://"):
        # A plain Parquet reader: the files the log lists, Hive partitioning from the paths.
        files = [f.removeprefix("file://") for f in dt.file_uris()]
        src = f"read_parquet({files!r}, hive_partitioning = true)"
        row = con.execute(AGGREGATE.format(source=src)).fetchone()
        report["duckdb_parquet"] = dict(zip(names, row))
        report["duckdb_parquet_dates"] = con.execute(
            f"SELECT count(DISTINCT event_date) FROM {src}"
        ).fetchone()[0]
    print(json.dumps(report))


if __name__ == "__main__":
    main()

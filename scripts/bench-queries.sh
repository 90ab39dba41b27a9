#!/usr/bin/env bash
# The cold-archive benchmark (not a test). Builds a multi-year archive of BENCH_EVENTS generated
# order events through the import path (`generate --into-table`, kept in the cache and reused:
# importing the same stream again adds nothing), then runs the query suite of bench/queries.toml
# through orderlake-server's Flight SQL client and in DuckDB over exactly the table's live Parquet
# files, in the same run, BENCH_REPS times each after a warm-up; then `maintain` (compaction,
# checkpoint, vacuum) and the suite again. Prints medians and ratios before and after maintenance,
# the archive's bytes per event against the raw JSON, and EXPLAIN ANALYZE of the point lookup.
#   ./scripts/bench-queries.sh                                   50M events over 10 years (about 2 hours on 2 cores)
#   BENCH_EVENTS=2000000 BENCH_REPS=3 ./scripts/bench-queries.sh  a quick run
#   BENCH_TABLE=/path/to/table BENCH_MAINTAIN=0 ./scripts/bench-queries.sh
#   BENCH_MATCH='lookup|journey' ./scripts/bench-queries.sh       only the queries whose name matches
#   BENCH_OUT=dir BENCH_PHASES=after ./scripts/bench-queries.sh      the second half of a run
#   BENCH_STORE=s3 BENCH_PHASES=after ./scripts/bench-queries.sh      the server reads a copy of the
#     table on a local S3 server (moto); DuckDB reads the local files (it cannot install httpfs here)
#   BENCH_PARTITIONING=daily ./scripts/bench-queries.sh          a table partitioned by date instead
#     of by month (the default, as the archiver's)
#   BENCH_CODEC=zstd ./scripts/bench-queries.sh                  a table whose columns but the raw
#     record are zstd (the [parquet] codec setting) instead of LZ4
#   BENCH_PHASES="after cluster-1 cluster-2" ./scripts/bench-queries.sh  then the big queries on
#     a Ballista cluster of 1 and of 2 executors on this machine ("cluster-tls-2": 2 executors,
#     TLS between every process)
source "$(dirname "$0")/lib.sh"
cd "$ORDERLAKE_ROOT"
events=${BENCH_EVENTS:-50000000}
years=${BENCH_YEARS:-10}
reps=${BENCH_REPS:-5}
maintain=${BENCH_MAINTAIN:-1}
partitioning=${BENCH_PARTITIONING:-monthly}
codec=${BENCH_CODEC:-lz4}
# Daily tables keep the cache's older name; zstd ones (the codec of tables before LZ4) too.
layout_suffix=$([ "$partitioning" = daily ] || echo "-$partitioning")$([ "$codec" = zstd ] || echo "-$codec")
table=${BENCH_TABLE:-$ORDERLAKE_CACHE/bench/archive-$events-${years}y$layout_suffix/order_events}

ensure_venv
cargo build --release --locked --bin orderlake-archiver --bin orderlake-server --bin orderlake-bench
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d); trap 'stop_services; rm -rf "$work"' EXIT
out=${BENCH_OUT:-$work/out}
mkdir -p "$out"

if [ -z "${BENCH_TABLE:-}" ]; then
  mkdir -p "$table"
  log "importing $events generated events over $years years into $table (nothing is added if it is there)"
  started=$SECONDS
  "$bin/orderlake-archiver" generate --into-table "$table" --events "$events" --years "$years" \
    --partitioning "$partitioning" --codec "$codec" --quiet
  log "import took $((SECONDS - started)) s"
fi

# BENCH_STORE=s3: copy the table as it is to the S3 server; the server reads that copy.
server_table() {
  if [ "${BENCH_STORE:-local}" != s3 ]; then echo "$table"; return; fi
  log "copying $table to s3://$ORDERLAKE_S3_BUCKET/bench/order_events"
  "$PYTHON" - "$table" "$ORDERLAKE_S3_BUCKET" <<'PY' >&2
import os, sys, boto3
from boto3.s3.transfer import TransferConfig
root, bucket = sys.argv[1], sys.argv[2]
s3, n = boto3.client("s3"), 0
for d, _, files in os.walk(root):
    for f in files:
        path = os.path.join(d, f)
        key = "bench/order_events/" + os.path.relpath(path, root)
        s3.upload_file(path, bucket, key, Config=TransferConfig(use_threads=False))
        n += 1
print(f"{n} objects copied", file=sys.stderr)
PY
  echo "s3://$ORDERLAKE_S3_BUCKET/bench/order_events"
}

# Started here, not in the command substitution that copies: its AWS_* exports must reach the
# server.
if [ "${BENCH_STORE:-local}" = s3 ]; then start_moto orderlake-bench "$work/moto.log"; fi

password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
hash=$(printf '%s\n' "$password" | "$bin/orderlake-server" hash-password)

# certificates DIR: a test CA and a certificate for localhost signed by it (a TLS cluster's).
certificates() {
  local d=$1
  mkdir -p "$d"
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$d/san.ext"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=orderlake bench CA" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$d/node.key" \
    -out "$d/node.csr" 2>/dev/null
  openssl x509 -req -in "$d/node.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 1 -extfile "$d/san.ext" -out "$d/node.crt" 2>/dev/null
}

# cluster N URI [tls]: a Ballista scheduler and N executors over the table at URI (N = 0: none),
# speaking TLS among themselves and with the server when the third argument is "tls"; prints the
# server's [distributed] block.
cluster() {
  local n=$1 uri=$2 tls=${3:-} scheme=http host=127.0.0.1 ca_line="" tls_args=()
  [ "$n" -gt 0 ] || return 0
  if [ "$tls" = tls ]; then
    certificates "$work/certs"
    scheme=https host=localhost
    tls_args=(--tls-cert "$work/certs/node.crt" --tls-key "$work/certs/node.key"
      --ca-cert "$work/certs/ca.crt")
    ca_line="ca_cert = \"$work/certs/ca.crt\""
  fi
  local port; port=$(free_port)
  "$bin/orderlake-server" scheduler --listen "127.0.0.1:$port" --table-uri "$uri" "${tls_args[@]}" \
    >"$work/scheduler-$n.log" 2>&1 &
  ORDERLAKE_PIDS+=("$!")
  wait_for_port "$port" scheduler >&2
  for i in $(seq "$n"); do
    "$bin/orderlake-server" executor --scheduler "$scheme://$host:$port" \
      --listen "127.0.0.1:$(free_port)" --external-host "$host" --grpc-port "$(free_port)" \
      --table-uri "$uri" --work-dir "$work/executor-$n-$i" "${tls_args[@]}" \
      >"$work/executor-$n-$i.log" 2>&1 &
    ORDERLAKE_PIDS+=("$!")
  done
  sleep 3
  printf '[distributed]\nscheduler = "%s://%s:%s"\nlocal_below_bytes = %s\n%s\n' \
    "$scheme" "$host" "$port" "${BENCH_LOCAL_BELOW:-268435456}" "$ca_line"
}

# EXPLAIN ANALYZE is kept of the suite's first queries, the lookups by order id and by customer
# id, under these names.
explained=(point-lookup customer-lookup)

# suite PHASE [EXECUTORS [tls]]: DuckDB, then orderlake-server (started fresh over the table as
# it is now), its big queries on a Ballista cluster of EXECUTORS executors when that is above 0.
suite() {
  local phase=$1 dir="$out/$1" executors=${2:-0} tls=${3:-} first=${#ORDERLAKE_PIDS[@]}
  log "[$phase] DuckDB over the same Parquet files ($reps runs each after a warm-up)"
  "$PYTHON" tests/python/bench_queries.py prepare bench/queries.toml "$table" "$reps" "$dir" \
    ${first_params:-}
  local port; port=$(free_port)
  local uri; uri=$(server_table)
  printf '[server]\nlisten = "127.0.0.1:%s"\n[archive]\ntable_uri = "%s"\n[sql]\nviews_dir = "sql"\n[[auth.users]]\nname = "bench"\npassword_hash = "%s"\n' \
    "$port" "$uri" "$hash" >"$work/server.toml"
  cluster "$executors" "$uri" "$tls" >>"$work/server.toml"
  ORDERLAKE_LOG=warn "$bin/orderlake-server" --config "$work/server.toml" >"$work/server-$phase.log" 2>&1 &
  local pid=$!
  ORDERLAKE_PIDS+=("$pid")
  wait_for_port "$port" orderlake-server 1200
  log "[$phase] the same queries through Flight SQL ($reps runs each after a warm-up)"
  ORDERLAKE_SERVER_PASSWORD="$password" "$bin/orderlake-bench" query-suite \
    --uri "http://127.0.0.1:$port" --user bench --queries "$dir/orderlake.json" --reps "$reps" \
    >"$dir/orderlake.jsonl"
  local i lookup
  for i in "${!explained[@]}"; do
    lookup=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["queries"][int(sys.argv[2])]["sql"])' "$dir/orderlake.json" "$i")
    ORDERLAKE_SERVER_PASSWORD="$password" "$bin/orderlake-server" query --uri "http://127.0.0.1:$port" \
      --user bench "EXPLAIN ANALYZE $lookup" >"$dir/explain-${explained[$i]}.txt"
  done
  # This phase's processes (the server, the cluster), not the S3 server.
  local p
  for p in "${ORDERLAKE_PIDS[@]:$first}"; do kill "$p" 2>/dev/null || true; done
  for p in "${ORDERLAKE_PIDS[@]:$first}"; do wait "$p" 2>/dev/null || true; done
  ORDERLAKE_PIDS=("${ORDERLAKE_PIDS[@]:0:$first}")
}

# BENCH_PHASES picks what runs (default all three); with BENCH_OUT of an earlier run, "after"
# alone reuses its "before" results and parameters.
phases=${BENCH_PHASES:-before maintain after}
[ "$maintain" = 1 ] || phases=before
first_params=""
dirs=()
for phase in $phases; do
  case $phase in
    before) suite before ;;
    maintain)
      log "maintain: compaction, key index, checkpoint, vacuum"
      started=$SECONDS
      "$bin/orderlake-archiver" maintain --table-uri "$table" --retention-hours 0 --force --quiet \
        | tee "$out/maintain.txt"
      log "maintenance took $((SECONDS - started)) s" ;;
    after)
      # The lookups of the "before" phase, when there was one.
      if [ -f "$out/before/orderlake.json" ]; then first_params="$out/before/orderlake.json"; fi
      suite after ;;
    cluster-tls-*)
      # The same on a cluster speaking TLS (BENCH_PHASES="cluster-tls-2").
      if [ -f "$out/after/orderlake.json" ]; then first_params="$out/after/orderlake.json"; fi
      suite "$phase" "${phase#cluster-tls-}" tls ;;
    cluster-*)
      # The suite with its big queries on a cluster of N executors (BENCH_PHASES="cluster-1
      # cluster-2" after an "after" run in the same BENCH_OUT).
      if [ -f "$out/after/orderlake.json" ]; then first_params="$out/after/orderlake.json"; fi
      suite "$phase" "${phase#cluster-}" ;;
  esac
done
for phase in before after cluster-1 cluster-2 cluster-3 cluster-tls-1 cluster-tls-2; do
  if [ -d "$out/$phase" ]; then dirs+=("$out/$phase"); fi
done

# Nothing to report when only the table was built and maintained (BENCH_PHASES=maintain).
if [ ${#dirs[@]} -eq 0 ]; then exit 0; fi
"$PYTHON" tests/python/bench_queries.py report "${dirs[@]}"
for d in "${dirs[@]}"; do
  for name in "${explained[@]}"; do
    echo; echo "EXPLAIN ANALYZE of the $name ($(basename "$d") maintenance):"
    grep -o -E '(files_pruned_by_(statistics|index)|files_opened|files_ranges_pruned_statistics|row_groups_pruned_(statistics|bloom_filter)|row_groups_read|rows_selected_by_page_index|page_index_rows_pruned|pushdown_rows_pruned|bytes_scanned|output_rows)=[^,]*' \
      "$d/explain-$name.txt" | sort | uniq -c | head -20 || true
  done
done

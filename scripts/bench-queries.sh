#!/usr/bin/env bash
# The cold-query benchmark (not a test): a generated archive of BENCH_EVENTS order events over five
# years, written through the archiver's own decoding and writer (`generate --into-table`), then the
# query suite in bench/queries.toml through orderlake-server's Flight SQL client and in DuckDB over
# the same Parquet files, in the same run, BENCH_REPS times each after a warm-up. Prints a table of
# medians and ratios, and the archive's bytes per event against the raw JSON.
#   BENCH_EVENTS=10000000 BENCH_REPS=5 ./scripts/bench-queries.sh
#   BENCH_TABLE=/path/to/table ./scripts/bench-queries.sh     reuse an archive built earlier
source "$(dirname "$0")/lib.sh"
cd "$ORDERLAKE_ROOT"
events=${BENCH_EVENTS:-10000000}
reps=${BENCH_REPS:-5}

ensure_venv
cargo build --release --locked --bin orderlake-archiver --bin orderlake-server --bin orderlake-bench
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d); trap 'stop_services; rm -rf "$work"' EXIT
table=${BENCH_TABLE:-}
if [ -z "$table" ]; then
  table="$work/lake/order_events"
  log "writing $events generated events over 5 years into $table"
  started=$SECONDS
  "$bin/orderlake-archiver" generate --into-table "$table" --events "$events" --years 5 \
    --partitions 4 --quiet
  log "archive written in $((SECONDS - started)) s"
fi

log "DuckDB over the same Parquet files ($reps runs each after a warm-up)"
"$PYTHON" tests/python/bench_queries.py prepare bench/queries.toml "$table" "$reps" "$work/out"

log "orderlake-server over the archive"
port=$(free_port)
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
hash=$(printf '%s\n' "$password" | "$bin/orderlake-server" hash-password)
printf '[server]\nlisten = "127.0.0.1:%s"\n[archive]\ntable_uri = "%s"\n[sql]\nviews_dir = "sql"\n[[auth.users]]\nname = "bench"\npassword_hash = "%s"\n' \
  "$port" "$table" "$hash" >"$work/server.toml"
ORDERLAKE_LOG=warn "$bin/orderlake-server" --config "$work/server.toml" >"$work/server.log" 2>&1 &
ORDERLAKE_PIDS+=("$!")
wait_for_port "$port" orderlake-server 1200

log "the same queries through Flight SQL ($reps runs each after a warm-up)"
ORDERLAKE_SERVER_PASSWORD="$password" "$bin/orderlake-bench" query-suite --uri "http://127.0.0.1:$port" \
  --user bench --queries "$work/out/orderlake.json" --reps "$reps" >"$work/out/orderlake.jsonl"

"$PYTHON" tests/python/bench_queries.py report "$work/out" "$table"

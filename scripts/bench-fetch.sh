#!/usr/bin/env bash
# Result streaming through both front doors (a benchmark, not a test): one release server over a
# generated archive serves Flight SQL and Trino's protocol; the same query's rows are fetched to
# the end through Python ADBC (Flight SQL) and the trino client, alternating, BENCH_REPS times
# each. Prints rows/s, MB/s and the time to the first row of each.
#   BENCH_ROWS=1000000 BENCH_REPS=3 ./scripts/bench-fetch.sh
#   BENCH_TABLE=/path/to/order_events ./scripts/bench-fetch.sh      over an existing archive
source "$(dirname "$0")/lib.sh"

rows=${BENCH_ROWS:-1000000}
reps=${BENCH_REPS:-3}
table=${BENCH_TABLE:-$ORDERLAKE_CACHE/bench/archive-10000000-10y-monthly/order_events}

ensure_venv
cargo build --release --locked --bin orderlake-archiver --bin orderlake-server
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d); trap 'stop_services; rm -rf "$work"' EXIT
if [ ! -d "$table/_delta_log" ]; then
  log "generating 10000000 events over 10 years into $table"
  mkdir -p "$table"
  "$bin/orderlake-archiver" generate --into-table "$table" --events 10000000 --years 10 \
    --partitioning monthly --quiet
fi

password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
hash=$(printf '%s\n' "$password" | "$bin/orderlake-server" hash-password)
flight=$(free_port); trino=$(free_port)
printf '[server]\nlisten = "127.0.0.1:%s"\n[trino]\nlisten = "127.0.0.1:%s"\nallow_insecure_passwords = true\n[archive]\ntable_uri = "%s"\n[sql]\nviews_dir = "sql"\n[[auth.users]]\nname = "bench"\npassword_hash = "%s"\n' \
  "$flight" "$trino" "$table" "$hash" >"$work/server.toml"
ORDERLAKE_LOG=warn "$bin/orderlake-server" --config "$work/server.toml" >"$work/server.log" 2>&1 &
ORDERLAKE_PIDS+=("$!")
wait_for_port "$flight" orderlake-server 1200
wait_for_port "$trino" "orderlake-server (Trino)" 60
log "fetching $rows rows through Flight SQL (ADBC) and Trino's protocol (trino client), $reps runs each"
"$PYTHON" tests/python/bench_fetch.py 127.0.0.1 "$flight" "$trino" bench "$password" "$rows" "$reps"

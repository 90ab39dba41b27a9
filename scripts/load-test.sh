#!/usr/bin/env bash
# The load test (on demand, not in CI): LOAD_CLIENTS Flight SQL clients (64) for LOAD_SECONDS
# (600) against a release orderlake-server over the generated benchmark archive (the table
# scripts/bench-queries.sh builds and maintains, made here if missing), running the mix of
# bench/load.toml with keys sampled from the archive. Once per allocator of LOAD_ALLOCATORS
# ("jemalloc glibc": the server built with and without its jemalloc feature), it prints per kind
# the queries answered, latency p50/p90/p99/max, queue refusals and errors, and the server's RSS
# sampled every 5 s (its peak, and the highest sample of each minute: flat when memory holds).
#   ./scripts/load-test.sh
#   LOAD_SECONDS=60 LOAD_ALLOCATORS=jemalloc ./scripts/load-test.sh     a short run
#   LOAD_EVENTS=50000000 ./scripts/load-test.sh                          over the 50M archive
source "$(dirname "$0")/lib.sh"
cd "$ORDERLAKE_ROOT"
events=${LOAD_EVENTS:-10000000}
years=10
clients=${LOAD_CLIENTS:-64}
seconds=${LOAD_SECONDS:-600}
allocators=${LOAD_ALLOCATORS:-jemalloc glibc}
table=$ORDERLAKE_CACHE/bench/archive-$events-${years}y-monthly/order_events

ensure_venv
cargo build --release --locked --bin orderlake-archiver --bin orderlake-server --bin orderlake-bench
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
trap 'stop_services; rm -rf "$work"' EXIT
out=${LOAD_OUT:-$work/out}
mkdir -p "$out"

if [ ! -d "$table/_delta_log" ] || [ ! -f "$table/../maintained" ]; then
  mkdir -p "$table"
  log "importing $events generated events over $years years into $table, then maintain"
  "$bin/orderlake-archiver" generate --into-table "$table" --events "$events" --years "$years" \
    --partitioning monthly --quiet
  "$bin/orderlake-archiver" maintain --table-uri "$table" --retention-hours 0 --force --quiet
  touch "$table/../maintained"
fi

log "sampling keys from the archive"
"$PYTHON" tests/python/bench_queries.py keys "$table" 2000 >"$work/keys.json"
"$PYTHON" -c 'import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], "rb"))["kind"]))' \
  bench/load.toml >"$work/mix.json"

password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
hash=$(printf '%s\n' "$password" | "$bin/orderlake-server" hash-password)

for allocator in $allocators; do
  server="$bin/orderlake-server"
  if [ "$allocator" = glibc ]; then
    log "building the server on glibc's malloc"
    cargo build --release --locked --bin orderlake-server --no-default-features
    cp "$bin/orderlake-server" "$work/orderlake-server-glibc"
    server="$work/orderlake-server-glibc"
    # Back to the shipped (jemalloc) build for whatever runs next.
    cargo build --release --locked --bin orderlake-server
  fi
  port=$(free_port)
  printf '[server]\nlisten = "127.0.0.1:%s"\n[archive]\ntable_uri = "%s"\n[sql]\nviews_dir = "sql"\n[[auth.users]]\nname = "load"\npassword_hash = "%s"\n' \
    "$port" "$table" "$hash" >"$work/server.toml"
  ORDERLAKE_LOG=warn "$server" --config "$work/server.toml" >"$out/server-$allocator.log" 2>&1 &
  pid=$!
  ORDERLAKE_PIDS+=("$pid")
  wait_for_port "$port" orderlake-server 1200
  started=$SECONDS
  (while kill -0 "$pid" 2>/dev/null; do
    echo "$((SECONDS - started)) $(ps -o rss= -p "$pid" | tr -d ' ')"
    sleep 5
  done) >"$out/rss-$allocator.txt" &
  log "[$allocator] $clients clients for $seconds s"
  ORDERLAKE_SERVER_PASSWORD="$password" "$bin/orderlake-bench" load --uri "http://127.0.0.1:$port" \
    --user load --mix "$work/mix.json" --keys "$work/keys.json" --clients "$clients" \
    --seconds "$seconds" >"$out/load-$allocator.jsonl" 2> >(tee "$out/load-$allocator.txt" >&2)
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  ORDERLAKE_PIDS=()
  sleep 1
  echo
  echo "[$allocator] server RSS (MiB): peak, then the highest sample of each minute"
  awk '$2 > 0 { m = int($1 / 60); if ($2 > top[m]) top[m] = $2; if ($2 > peak) peak = $2 }
       END { printf "peak %.0f\n", peak / 1024; for (i = 0; i in top; i++) printf "minute %d: %.0f\n", i + 1, top[i] / 1024 }' \
    "$out/rss-$allocator.txt"
done
echo
for allocator in $allocators; do
  echo "[$allocator] final figures:"
  grep '"when": *"end"\|"when":"end"' "$out/load-$allocator.jsonl" || true
done

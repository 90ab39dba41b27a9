#!/usr/bin/env bash
# The soak (on demand, not in CI): for SOAK_MINUTES (default 20) the generator produces order
# events continuously while two archivers in one group archive them into a Delta table on S3, and
# every SOAK_FAULT_SECS (default 20) one fault strikes at random: kill -9 of an archiver (then a
# restart), a graceful restart, a third instance joining or leaving, S3 hanging for 30 s (SIGSTOP of
# the S3 server) or the broker stopped for 30 s (SQLite storage, so it keeps its data). Then the
# generator stops, a catch-up run finishes the archive, and the script prints records produced,
# records archived, missing, duplicated, restarts survived and the archivers' peak RSS. Exit 1 on
# any loss or duplicate.
#   SOAK_MINUTES=20 ./scripts/soak.sh
source "$(dirname "$0")/lib.sh"
cd "$ORDERLAKE_ROOT"
minutes=${SOAK_MINUTES:-20}
fault_every=${SOAK_FAULT_SECS:-20}
rate=${SOAK_RATE:-400}

ensure_tansu
ensure_venv
cargo build --release --locked --bin orderlake-archiver
bin="$CARGO_TARGET_DIR/release/orderlake-archiver"
work=$(mktemp -d)
log "soak for $minutes minutes, a fault every $fault_every s; logs in $work"

declare -A archivers=()   # name -> pid
# The broker keeps its data across restarts; it runs from $work so its SQLite file lives there.
broker_port=$(free_port)
start_broker() {
  (cd "$work" && exec "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$broker_port" \
    --advertised-listener-url "tcp://127.0.0.1:$broker_port" --storage-engine sqlite://tansu.db) \
    >>"$work/tansu.log" 2>&1 &
  broker_pid=$!
  wait_for_port "$broker_port" tansu
}
start_broker
trap 'kill "$broker_pid" "${archivers[@]}" "${generator_pid:-}" 2>/dev/null; stop_services' EXIT
start_moto soak "$work/moto.log"
brokers="127.0.0.1:$broker_port"
table="s3://soak/order_events"
cat >"$work/archiver.toml" <<EOF
[kafka]
brokers = "$brokers"
group = "soak"
topics = ["soak.orders", "soak.order-status", "soak.fulfillment"]
[kafka.properties]
"session.timeout.ms" = "10000"
[archive]
table_uri = "$table"
[flush]
max_rows = 5000
interval_ms = 1000
memory_budget_bytes = 67108864
max_bytes = 16777216
EOF

peak_kib=0
restarts=0
start_archiver() {
  ORDERLAKE_LOG=warn,orderlake_ingest=info "$bin" run --config "$work/archiver.toml" \
    >>"$work/$1.log" 2>&1 &
  archivers[$1]=$!
}
sample_rss() {
  for pid in "${archivers[@]}"; do
    local kib; kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${kib:-0}" -gt "$peak_kib" ] && peak_kib=$kib
  done
  return 0
}

# The generator: one seeded stream, continued chunk by chunk with --skip, at a steady rate.
produced=0
generate_loop() {
  local skip=0 chunk=$((rate * 10))
  while [ ! -e "$work/stop-generator" ]; do
    out=$("$bin" generate --brokers "$brokers" --topic-prefix soak. --events "$chunk" --skip "$skip" \
      --rate "$rate" --years 2 --quiet 2>>"$work/generator.log") || true
    echo "$out" >>"$work/generator.out"
    skip=$((skip + chunk))
  done
}
generate_loop &
generator_pid=$!

start_archiver a
start_archiver b
faults=()
end=$((SECONDS + minutes * 60))
next_fault=$((SECONDS + fault_every))
while [ $SECONDS -lt $end ]; do
  sleep 1
  sample_rss
  [ $SECONDS -lt $next_fault ] && continue
  next_fault=$((SECONDS + fault_every))
  case $((RANDOM % 6)) in
    0) victim=a; [ $((RANDOM % 2)) = 0 ] && victim=b
       kill -9 "${archivers[$victim]}" 2>/dev/null || true; wait "${archivers[$victim]}" 2>/dev/null || true
       start_archiver "$victim"; restarts=$((restarts + 1)); faults+=("kill -9 $victim") ;;
    1) kill -TERM "${archivers[a]}" 2>/dev/null || true; wait "${archivers[a]}" 2>/dev/null || true
       start_archiver a; restarts=$((restarts + 1)); faults+=("SIGTERM a") ;;
    2) if [ -n "${archivers[c]:-}" ]; then
         kill -TERM "${archivers[c]}" 2>/dev/null || true; wait "${archivers[c]}" 2>/dev/null || true
         unset 'archivers[c]'; faults+=("c leaves")
       else start_archiver c; faults+=("c joins"); fi ;;
    3) kill -STOP "$MOTO_PID"; for _ in $(seq 30); do sleep 1; sample_rss; done; kill -CONT "$MOTO_PID"
       faults+=("S3 hangs 30 s") ;;
    4) kill -TERM "$broker_pid"; wait "$broker_pid" 2>/dev/null || true
       for _ in $(seq 30); do sleep 1; sample_rss; done; start_broker; faults+=("broker down 30 s") ;;
    5) victim=b; kill -STOP "${archivers[$victim]}"; sleep 15; kill -CONT "${archivers[$victim]}"
       faults+=("b frozen 15 s") ;;
  esac
  log "fault: ${faults[-1]}"
done

log "stopping the generator; a catch-up run finishes the archive"
touch "$work/stop-generator"; wait "$generator_pid" || true
for name in "${!archivers[@]}"; do kill -TERM "${archivers[$name]}" 2>/dev/null || true; done
for name in "${!archivers[@]}"; do wait "${archivers[$name]}" 2>/dev/null || true; done
# A group of its own: where archiving resumes comes from the table's ledger, and departed members
# of the soak group (frozen, killed) must not hold up its assignment.
"$bin" run --config "$work/archiver.toml" --group "soak-catch-up-$$" --until-caught-up \
  >"$work/catch-up.out" 2>"$work/catch-up.log"
"$bin" verify --table-uri "$table" --json >"$work/verify.json" || true
produced=$(grep -o '[0-9]* acknowledged' "$work/generator.out" | awk '{s += $1} END {print s + 0}')
failed=$(grep -o '[0-9]* failed' "$work/generator.out" | awk '{s += $1} END {print s + 0}')
kill "$broker_pid" 2>/dev/null || true
stop_services

"$PYTHON" - "$work/verify.json" "$produced" "$failed" "$restarts" "$peak_kib" "${#faults[@]}" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
produced, failed, restarts, peak_kib, faults = (int(a) for a in sys.argv[2:7])
archived = sum(p["rows"] - p["duplicated"] for p in report["partitions"])
missing = sum(p["missing"] for p in report["partitions"])
duplicated = sum(p["duplicated"] for p in report["partitions"])
print(f"records produced (acknowledged): {produced} ({failed} not acknowledged)")
print(f"records archived:                {archived}")
print(f"missing (gaps):                  {missing}")
print(f"missing (produced - archived):   {produced - archived}")
print(f"duplicated:                      {duplicated}")
print(f"faults / restarts survived:      {faults} / {restarts}")
print(f"peak RSS of an archiver:         {peak_kib // 1024} MiB")
sys.exit(0 if missing == 0 and duplicated == 0 and archived == produced else 1)
PY

#!/usr/bin/env bash
# The soak (on demand, not in CI): for SOAK_MINUTES (default 20) the generator produces order
# events continuously (SOAK_RATE a second) while two archivers in one group archive them into a
# Delta table on S3. Two streams of faults strike meanwhile:
#   - every SOAK_KILL_SECS (default 10, so over 100 in 20 minutes) kill -9 of a random archiver
#     at a random moment of its work, and a restart;
#   - every SOAK_FAULT_SECS (default 30) one of: a graceful restart (SIGTERM), a third instance
#     joining or leaving, S3 hanging for 30 s (SIGSTOP of the S3 server), an archiver frozen for
#     15 s (past its session, so it is revoked while it sleeps).
# The broker runs on memory storage: tansu on SQLite, the storage that survives a broker restart,
# stops answering group requests after some minutes of this churn (docs/NOTES.md); the broker
# restart is a test of its own (tests/faults.rs). Then the generator stops, a catch-up run
# finishes the archive, and the script prints records produced, records archived, missing,
# duplicated, restarts survived and the archivers' peak RSS. Exit 1 on any loss or duplicate.
#   SOAK_MINUTES=20 ./scripts/soak.sh
source "$(dirname "$0")/lib.sh"
cd "$ORDERLAKE_ROOT"
minutes=${SOAK_MINUTES:-20}
fault_every=${SOAK_FAULT_SECS:-30}
kill_every=${SOAK_KILL_SECS:-10}
rate=${SOAK_RATE:-400}

ensure_tansu
ensure_venv
cargo build --release --locked --bin orderlake-archiver
bin="$CARGO_TARGET_DIR/release/orderlake-archiver"
work=$(mktemp -d)
log "soak for $minutes minutes: kill -9 about every $kill_every s, another fault every $fault_every s; logs in $work"

declare -A archivers=()   # name -> pid
start_tansu memory://tansu/ "$work/tansu.log"
trap 'touch "$work/stop-generator"; kill "${archivers[@]}" "${generator_pid:-}" 2>/dev/null || true; stop_services' EXIT
start_moto soak "$work/moto.log"
echo "tansu pid $TANSU_PID, S3 server pid $MOTO_PID" >"$work/signals.log"
brokers=$ORDERLAKE_BROKERS
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
  # Until the child has exec'd it is a copy of this shell: a signal then does not reach an
  # archiver (two early runs lost their S3 server, terminated, right after such a signal).
  for _ in $(seq 50); do
    case $(cat "/proc/${archivers[$1]}/comm" 2>/dev/null) in orderlake-archi*) return 0 ;; esac
    sleep 0.05
  done
}
# signal_archiver SIGNAL NAME: signals that archiver only (checked by its command name), and
# logs what it signalled.
signal_archiver() {
  local pid=${archivers[$2]:-} comm
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || echo gone)
  echo "$(date +%T) SIG$1 -> $2 (pid $pid, $comm)" >>"$work/signals.log"
  case $comm in orderlake-archi*) kill "-$1" "$pid" 2>/dev/null || true ;; esac
}
# restart_archiver SIGNAL NAME: signals that archiver, waits for it to end, and starts it again.
restart_archiver() {
  signal_archiver "$1" "$2"; wait "${archivers[$2]}" 2>/dev/null || true
  start_archiver "$2"; restarts=$((restarts + 1))
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
      --rate "$rate" --years 0.01 --quiet 2>>"$work/generator.log") || true
    echo "$out" >>"$work/generator.out"
    skip=$((skip + chunk))
  done
}
generate_loop &
generator_pid=$!

start_archiver a
start_archiver b
faults=()
kills=0
end=$((SECONDS + minutes * 60))
next_fault=$((SECONDS + fault_every))
next_kill=$((SECONDS + RANDOM % kill_every + 1))
s3_back=0 thaw=0   # when the S3 server and a frozen archiver continue (0: not stopped)
while [ $SECONDS -lt $end ]; do
  sleep 0.$((RANDOM % 9 + 1))
  sample_rss
  for service in "tansu:$TANSU_PID" "S3 server:$MOTO_PID"; do
    if ! kill -0 "${service#*:}" 2>/dev/null; then
      status=0; wait "${service#*:}" || status=$?
      log "the ${service%%:*} exited (status $status) at $((SECONDS / 60)) min; no verdict"; exit 2
    fi
  done
  if [ "$s3_back" -gt 0 ] && [ $SECONDS -ge "$s3_back" ]; then kill -CONT "$MOTO_PID"; s3_back=0; fi
  if [ "$thaw" -gt 0 ] && [ $SECONDS -ge "$thaw" ]; then signal_archiver CONT b; thaw=0; fi
  if [ $SECONDS -ge $next_kill ]; then
    # Any instance but a frozen one (killing it would end the freeze early).
    names=(); for n in "${!archivers[@]}"; do [ "$thaw" -gt 0 ] && [ "$n" = b ] || names+=("$n"); done
    victim=${names[$((RANDOM % ${#names[@]}))]}
    restart_archiver KILL "$victim"; kills=$((kills + 1))
    next_kill=$((SECONDS + kill_every / 2 + RANDOM % kill_every))
  fi
  [ $SECONDS -lt $next_fault ] && continue
  next_fault=$((SECONDS + fault_every))
  case $((RANDOM % 4)) in
    0) restart_archiver TERM a; faults+=("SIGTERM a and restart") ;;
    1) if [ -n "${archivers[c]:-}" ]; then
         signal_archiver TERM c; wait "${archivers[c]}" 2>/dev/null || true
         unset 'archivers[c]'; faults+=("c leaves")
       else start_archiver c; faults+=("c joins"); fi ;;
    2) if [ "$s3_back" = 0 ]; then
         kill -STOP "$MOTO_PID"; s3_back=$((SECONDS + 30)); faults+=("S3 hangs 30 s")
       fi ;;
    3) if [ "$thaw" = 0 ]; then
         signal_archiver STOP b; thaw=$((SECONDS + 15)); faults+=("b frozen 15 s")
       fi ;;
  esac
  [ ${#faults[@]} -gt 0 ] && log "fault: ${faults[-1]} (kill -9 so far: $kills)"
done
[ "$s3_back" -gt 0 ] && kill -CONT "$MOTO_PID"
[ "$thaw" -gt 0 ] && signal_archiver CONT b

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
stop_services

"$PYTHON" - "$work/verify.json" "$produced" "$failed" "$restarts" "$peak_kib" "${#faults[@]}" "$kills" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
produced, failed, restarts, peak_kib, faults, kills = (int(a) for a in sys.argv[2:8])
archived = sum(p["rows"] - p["duplicated"] for p in report["partitions"])
missing = sum(p["missing"] for p in report["partitions"])
duplicated = sum(p["duplicated"] for p in report["partitions"])
print(f"records produced (acknowledged): {produced} ({failed} not acknowledged)")
print(f"records archived:                {archived}")
print(f"missing (gaps):                  {missing}")
print(f"missing (produced - archived):   {produced - archived}")
print(f"duplicated:                      {duplicated}")
print(f"kill -9 / other faults:          {kills} / {faults}")
print(f"restarts survived:               {restarts}")
print(f"peak RSS of an archiver:         {peak_kib // 1024} MiB")
sys.exit(0 if missing == 0 and duplicated == 0 and archived == produced else 1)
PY

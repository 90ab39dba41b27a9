#!/usr/bin/env bash
# Benchmark (not a test): archivers as a fleet. 1, 2 and 3 archiver processes in one consumer
# group drain the same generated events into one Delta table, flushing often so that commits,
# not encoding, set the pace: how many commits a second one table takes, how many flushes lose
# the commit race and retry, and whether every event is archived once. Each fleet size runs
# against a table in a local directory and on the S3 server (moto, conditional writes).
#   BENCH_EVENTS=300000 BENCH_FLUSH_ROWS=2000 ./scripts/bench-scaling.sh
# An archiver still running after BENCH_FLEET_TIMEOUT seconds (300) is stopped (SIGTERM, as an
# operator would) and its fleet's row shows what the table holds.
source "$(dirname "$0")/lib.sh"
cd "$ORDERLAKE_ROOT"
events=${BENCH_EVENTS:-300000}
flush_rows=${BENCH_FLUSH_ROWS:-2000}
fleet_timeout=${BENCH_FLEET_TIMEOUT:-300}

bench_prepare orderlake-archiver
start_tansu memory://tansu/ "$work/tansu.log"
start_moto orderlake-scaling "$work/moto.log"
prefix="scale$$."
topics="${prefix}orders,${prefix}order-status,${prefix}fulfillment"

log "producing $events events to $topics (3 topics x 4 partitions)"
"$bin/orderlake-archiver" generate --brokers "$ORDERLAKE_BROKERS" --events "$events" \
  --topic-prefix "$prefix" --quiet
printf '[flush]\nmax_rows = %s\ninterval_ms = 1000\n' "$flush_rows" >"$work/archiver.toml"

# fleet N URI LABEL: N archivers in one group, started together, each until caught up with what
# it is assigned; prints "label n seconds rows commits raced fenced rebalances".
fleet() {
  local n=$1 uri=$2 label=$3 group="fleet-$3-$1-$$" pids=() start end
  start=$(date +%s.%N)
  for i in $(seq "$n"); do
    ORDERLAKE_LOG=warn timeout "$fleet_timeout" "$bin/orderlake-archiver" run --config "$work/archiver.toml" \
      --brokers "$ORDERLAKE_BROKERS" --group "$group" --topics "$topics" --table-uri "$uri" \
      --until-caught-up >"$work/$group-$i.out" 2>"$work/$group-$i.err" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do
    wait "$p" || { echo "an archiver of $group failed or was stopped after ${fleet_timeout} s" >&2; }
  done
  end=$(date +%s.%N)
  python3 - "$label" "$n" "$start" "$end" "$work/$group" "$uri" "$bin/orderlake-archiver" <<'PY'
import glob, json, re, subprocess, sys
label, n, start, end, stem, uri, archiver = sys.argv[1:]
commits = fenced = rebalances = 0
for path in glob.glob(stem + "-*.out"):
    for m in re.finditer(r"in (\d+) commits .*?(\d+) flushes fenced, (\d+) rebalances", open(path).read()):
        commits += int(m[1]); fenced += int(m[2]); rebalances += int(m[3])
# A commit that finds its version taken (another archiver committed first) is tried again on the
# new version; delta-rs warns once per such race.
raced = sum(open(p).read().count("table updated but max_retries is 0") for p in glob.glob(stem + "-*.err"))
status = json.loads(subprocess.run([archiver, "status", "--json", "--table-uri", uri],
                                   check=True, capture_output=True, text=True).stdout)
print(label, n, f"{float(end) - float(start):.2f}", status["rows"], commits, raced, fenced, rebalances)
PY
}

results="$work/results"
for n in 1 2 3; do
  log "$n archiver(s) in one group, one table in a local directory"
  fleet "$n" "$work/lake-$n/order_events" local >>"$results"
  log "$n archiver(s) in one group, one table on the S3 server"
  fleet "$n" "s3://$ORDERLAKE_S3_BUCKET/fleet-$n/order_events" s3 >>"$results"
done

python3 - "$events" "$flush_rows" "$results" <<'PY'
import os, sys
events, flush_rows, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
print(f"\n{events} events, flushes of {flush_rows} rows (or 1 s), {os.cpu_count()} cores, broker and "
      "S3 server on the same machine")
print(f"{'table':6} {'archivers':>9} {'seconds':>8} {'events/s':>9} {'commits':>8} {'commits/s':>9} "
      f"{'raced':>6} {'fenced':>7} {'rebalances':>10} {'rows':>8}")
for line in open(path):
    label, n, secs, rows, commits, raced, fenced, rebalances = line.split()
    secs = float(secs)
    print(f"{label:6} {n:>9} {secs:>8.1f} {events / secs:>9,.0f} {commits:>8} "
          f"{int(commits) / secs:>9.1f} {raced:>6} {fenced:>7} {rebalances:>10} {rows:>8}"
          + ("" if int(rows) == events else f"  <- expected {events}"))
PY

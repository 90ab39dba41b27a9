#!/usr/bin/env bash
# Benchmark (not a test): the archiver's drain rate against the raw consume rate of a plain
# librdkafka consumer, both reading the same 1M generated events from the same local broker in
# the same run. Prints events/s for both, their ratio, and the archiver's peak RSS.
#   BENCH_EVENTS=1000000 ./scripts/bench-archiver.sh
source "$(dirname "$0")/lib.sh"
cd "$ORDERLAKE_ROOT"
events=${BENCH_EVENTS:-1000000}

ensure_tansu
cargo build --release --locked --bin orderlake-archiver --bin orderlake-bench
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d); trap 'stop_services; rm -rf "$work"' EXIT
start_tansu memory://tansu/ "$work/tansu.log"
prefix="bench$$."
topics="${prefix}orders,${prefix}order-status,${prefix}fulfillment"

log "producing $events events to $topics (3 topics x 4 partitions)"
"$bin/orderlake-archiver" generate --brokers "$ORDERLAKE_BROKERS" --events "$events" \
  --topic-prefix "$prefix" --malformed-share 0.01 --quiet

# Runs a command, then prints its wall seconds and peak RSS (KiB) as "seconds rss".
measure() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True)
elapsed = time.monotonic() - t
sys.stderr.write(p.stdout)
if p.returncode != 0:
    sys.exit(p.returncode)
print(f"{elapsed:.3f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
PY
}

log "baseline: plain librdkafka consumer reading everything to nowhere"
read -r raw_s _ < <(measure "$bin/orderlake-bench" raw-consume --brokers "$ORDERLAKE_BROKERS" \
  --topics "$topics" --expect "$events" --group "raw-$$")

log "orderlake-archiver run --until-caught-up into a local-directory table"
read -r arch_s arch_rss < <(ORDERLAKE_LOG=warn measure "$bin/orderlake-archiver" run \
  --brokers "$ORDERLAKE_BROKERS" --group "arch-$$" --topics "$topics" \
  --table-uri "$work/lake/order_events" --until-caught-up)

python3 - "$events" "$raw_s" "$arch_s" "$arch_rss" "$work/lake/order_events" <<'PY'
import os, sys
events, raw_s, arch_s, rss_kib, lake = int(sys.argv[1]), *map(float, sys.argv[2:5]), sys.argv[5]
size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(lake) for f in fs if f.endswith(".parquet"))
raw, arch = events / raw_s, events / arch_s
print(f"""
events                  {events}
raw consume             {raw:,.0f} events/s  ({raw_s:.1f} s)
archiver drain          {arch:,.0f} events/s  ({arch_s:.1f} s, end to end incl. start, group join, final commit)
ratio archiver/raw      {arch / raw:.2f}   (target >= 0.80)
archiver peak RSS       {rss_kib / 1024:.0f} MiB
archive Parquet bytes   {size / 1e6:.1f} MB ({size / events:.0f} bytes/event)
machine                 {os.cpu_count()} cores""")
PY

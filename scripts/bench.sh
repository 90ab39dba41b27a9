#!/usr/bin/env bash
# Benchmarks (not tests), each against a baseline measured in the same run on the same broker:
#  1. archiving: the archiver's drain rate (with the key index, and without it) vs a plain
#     librdkafka consumer reading the same 1M generated events to nowhere; prints events/s, the
#     ratios and the archiver's peak RSS;
#  2. replay: replaying the whole archive to a new topic vs a plain librdkafka producer sending the
#     same records from memory; prints records/s and MB/s for both.
#   BENCH_EVENTS=1000000 ./scripts/bench.sh
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

log "baseline: plain librdkafka consumer reading everything to nowhere"
read -r raw_s _ < <(measure "$bin/orderlake-bench" raw-consume --brokers "$ORDERLAKE_BROKERS" \
  --topics "$topics" --expect "$events" --group "raw-$$")

log "orderlake-archiver run --until-caught-up into a local-directory table"
read -r arch_s arch_rss < <(ORDERLAKE_LOG=warn measure "$bin/orderlake-archiver" run \
  --brokers "$ORDERLAKE_BROKERS" --group "arch-$$" --topics "$topics" \
  --table-uri "$work/lake/order_events" --until-caught-up)

log "the same without the key index (no segment written per flush)"
printf '[parquet]\nkey_index = false\n' >"$work/no-index.toml"
read -r plain_s _ < <(ORDERLAKE_LOG=warn measure "$bin/orderlake-archiver" run --config "$work/no-index.toml" \
  --brokers "$ORDERLAKE_BROKERS" --group "plain-$$" --topics "$topics" \
  --table-uri "$work/lake-no-index/order_events" --until-caught-up)

log "the same with metrics on and scraped every second (as Prometheus would, 15 times as often)"
mport=$(free_port)
( while sleep 1; do curl -s "http://127.0.0.1:$mport/metrics" >/dev/null || true; done ) &
scraper=$!
read -r metered_s _ < <(ORDERLAKE_LOG=warn measure "$bin/orderlake-archiver" run \
  --brokers "$ORDERLAKE_BROKERS" --group "metered-$$" --topics "$topics" \
  --table-uri "$work/lake-metered/order_events" --until-caught-up --metrics-listen "127.0.0.1:$mport")
kill "$scraper" 2>/dev/null || true

log "baseline: plain librdkafka producer sending the same records from memory"
raw_produce=$("$bin/orderlake-bench" raw-produce --brokers "$ORDERLAKE_BROKERS" --topics "$topics" \
  --expect "$events" --to-topic "${prefix}raw-produced")
log "orderlake-archiver replay of the whole archive into a new topic"
replay_out=$(ORDERLAKE_LOG=warn "$bin/orderlake-archiver" replay --quiet --table-uri "$work/lake/order_events" \
  --brokers "$ORDERLAKE_BROKERS" --to-topic "${prefix}replayed" --create-topic 4 \
  --checkpoint "$work/replay-checkpoint.json")
echo "$raw_produce"; echo "$replay_out"

python3 - "$events" "$raw_s" "$arch_s" "$arch_rss" "$work/lake/order_events" "$raw_produce" "$replay_out" "$plain_s" "$metered_s" <<'PY'
import os, re, sys
events, raw_s, arch_s, rss_kib, lake = int(sys.argv[1]), *map(float, sys.argv[2:5]), sys.argv[5]
raw_p = dict(kv.split("=") for kv in sys.argv[6].split()[1:])
rp = re.search(r"in ([0-9.]+)s: ([0-9]+) records/s, ([0-9.]+) MB/s", sys.argv[7])
plain_s = float(sys.argv[8])
metered_s = float(sys.argv[9])
size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(lake) for f in fs if f.endswith(".parquet"))
raw, arch = events / raw_s, events / arch_s
print(f"""
events                  {events}
raw consume             {raw:,.0f} events/s  ({raw_s:.1f} s)
archiver drain          {arch:,.0f} events/s  ({arch_s:.1f} s, end to end incl. start, group join, final commit)
ratio archiver/raw      {arch / raw:.2f}   (target >= 0.80; key index kept current)
with metrics scraped    {events / metered_s:,.0f} events/s  (ratio to raw {events / metered_s / raw:.2f}; /metrics scraped every second)
without the key index   {events / plain_s:,.0f} events/s  ({plain_s:.1f} s; ratio to raw {events / plain_s / raw:.2f})
archiver peak RSS       {rss_kib / 1024:.0f} MiB
archive Parquet bytes   {size / 1e6:.1f} MB ({size / events:.0f} bytes/event)

raw produce             {float(raw_p["records_per_sec"]):,.0f} records/s, {float(raw_p["mb_per_sec"]):.1f} MB/s
replay                  {float(rp.group(2)):,.0f} records/s, {float(rp.group(3)):.1f} MB/s  ({float(rp.group(1)):.1f} s, reading the archive included)
ratio replay/raw        {float(rp.group(2)) / float(raw_p["records_per_sec"]):.2f}
machine                 {os.cpu_count()} cores""")
PY

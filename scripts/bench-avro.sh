#!/usr/bin/env bash
# Benchmark (not a test): the archiver draining Avro order events framed for a schema registry,
# against a plain librdkafka consumer reading the same topic to nowhere, and against the archiver
# draining the same events as JSON, all in one run on one broker; then the decode cost per event
# of each format, timed in memory (orderlake-bench decode-cost). The registry is the test
# fixture (tests/python/schema_registry.py); the events are produced by confluent-kafka's own
# AvroSerializer.
#   BENCH_EVENTS=1000000 ./scripts/bench-avro.sh
# BENCH_BASELINE_BIN=<dir> also runs the archiver and decode-cost binaries in <dir> (another
# build, for example of the commit before a change) on the same topic in the same run.
source "$(dirname "$0")/lib.sh"
cd "$ORDERLAKE_ROOT"
events=${BENCH_EVENTS:-1000000}

ensure_tansu
ensure_venv
cargo build --release --locked --bin orderlake-archiver --bin orderlake-bench
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
registry_pid=
trap 'stop_services; [ -n "$registry_pid" ] && kill "$registry_pid"; rm -rf "$work"' EXIT
start_tansu memory://tansu/ "$work/tansu.log"
"$PYTHON" tests/python/schema_registry.py "$work/registry-port" &
registry_pid=$!
for _ in $(seq 100); do [ -s "$work/registry-port" ] && break; sleep 0.1; done
registry="http://127.0.0.1:$(cat "$work/registry-port")"
avro="bench$$.orders" json="bench$$.json-orders"

log "creating $avro and $json (4 partitions each)"
"$PYTHON" - "$ORDERLAKE_BROKERS" "$avro" "$json" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in admin.create_topics([NewTopic(t, 4, 1) for t in sys.argv[2:]]).values():
    f.result()
PY
log "producing $events Avro events (and their JSON twins) with confluent-kafka's AvroSerializer"
"$PYTHON" tests/python/avro_produce.py "$ORDERLAKE_BROKERS" "$registry" "$avro" "$events" --bench "$json"

log "baseline: plain librdkafka consumer reading the Avro topic to nowhere"
read -r raw_s _ < <(measure "$bin/orderlake-bench" raw-consume --brokers "$ORDERLAKE_BROKERS" \
  --topics "$avro" --expect "$events" --group "raw-$$")
log "baseline: the same consumer reading the JSON twins"
read -r raw_json_s _ < <(measure "$bin/orderlake-bench" raw-consume --brokers "$ORDERLAKE_BROKERS" \
  --topics "$json" --expect "$events" --group "raw-json-$$")
log "orderlake-archiver run --until-caught-up on the Avro topic"
read -r avro_s _ < <(ORDERLAKE_LOG=warn measure "$bin/orderlake-archiver" run --brokers "$ORDERLAKE_BROKERS" \
  --group "avro-$$" --topics "$avro" --table-uri "$work/lake-avro/order_events" --until-caught-up \
  --schema-registry-url "$registry")
baseline_s=0 baseline_cost="x ns_per_record=0"
if [ -n "${BENCH_BASELINE_BIN:-}" ]; then
  log "baseline build ($BENCH_BASELINE_BIN): orderlake-archiver run --until-caught-up on the Avro topic"
  read -r baseline_s _ < <(ORDERLAKE_LOG=warn measure "$BENCH_BASELINE_BIN/orderlake-archiver" run \
    --brokers "$ORDERLAKE_BROKERS" --group "baseline-$$" --topics "$avro" \
    --table-uri "$work/lake-baseline/order_events" --until-caught-up --schema-registry-url "$registry")
  baseline_cost=$("$BENCH_BASELINE_BIN/orderlake-bench" decode-cost --brokers "$ORDERLAKE_BROKERS" \
    --topics "$avro" --expect "$events" --schema-registry-url "$registry")
fi
log "orderlake-archiver run --until-caught-up on the JSON topic"
read -r json_s _ < <(ORDERLAKE_LOG=warn measure "$bin/orderlake-archiver" run --brokers "$ORDERLAKE_BROKERS" \
  --group "json-$$" --topics "$json" --table-uri "$work/lake-json/order_events" --until-caught-up)
log "decode cost per event, in memory"
avro_cost=$("$bin/orderlake-bench" decode-cost --brokers "$ORDERLAKE_BROKERS" --topics "$avro" \
  --expect "$events" --schema-registry-url "$registry")
json_cost=$("$bin/orderlake-bench" decode-cost --brokers "$ORDERLAKE_BROKERS" --topics "$json" \
  --expect "$events")
undecoded=$("$bin/orderlake-archiver" status --json --table-uri "$work/lake-avro/order_events" |
  python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(p["undecoded_rows"] for p in s["partitions"]), s["rows"])')

python3 - "$events" "$raw_s" "$avro_s" "$json_s" "$avro_cost" "$json_cost" "$undecoded" "$raw_json_s" \
  "$baseline_s" "$baseline_cost" <<'PY'
import sys
events, raw_s, avro_s, json_s = int(sys.argv[1]), *map(float, sys.argv[2:5])
raw_json_s, baseline_s = float(sys.argv[8]), float(sys.argv[9])
cost = lambda line: dict(kv.split("=") for kv in line.split()[1:])
a, j = cost(sys.argv[5]), cost(sys.argv[6])
bad, rows = sys.argv[7].split()
print(f"events                      {events}")
print(f"raw consumer, Avro topic   {events / raw_s:,.0f} ev/s")
print(f"archiver, Avro              {events / avro_s:,.0f} ev/s  ({raw_s / avro_s:.2f}x raw)  rows {rows}, undecoded {bad}")
if baseline_s:
    b = cost(sys.argv[10])
    print(f"baseline build, Avro        {events / baseline_s:,.0f} ev/s  ({raw_s / baseline_s:.2f}x raw), "
          f"decode {b['ns_per_record']} ns per event")
print(f"raw consumer, JSON twins    {events / raw_json_s:,.0f} ev/s")
print(f"archiver, the same as JSON  {events / json_s:,.0f} ev/s  ({raw_json_s / json_s:.2f}x raw)")
print(f"decode per event            Avro {a['ns_per_record']} ns, JSON {j['ns_per_record']} ns "
      f"({int(a['ns_per_record']) / int(j['ns_per_record']):.2f}x)")
PY

#!/usr/bin/env bash
# The main job on embedded defaults: a local Kafka-protocol broker (tansu), sample OMS order events
# (three producer shapes, a little malformed input), the archiver draining them into the default
# local archive ./data/lake/order_events, and what the archive now holds.
#   DEMO_EVENTS=200000 ./scripts/demo.sh     for a bigger run
source "$(dirname "$0")/lib.sh"
cd "$ORDERLAKE_ROOT"
events=${DEMO_EVENTS:-50000}

ensure_tansu
log "building orderlake (target dir $CARGO_TARGET_DIR)"
cargo build --locked --bin orderlake-archiver
bin="$CARGO_TARGET_DIR/debug/orderlake-archiver"

trap stop_services EXIT
start_tansu memory://tansu/ "$ORDERLAKE_CACHE/demo-tansu.log"
log "local broker (tansu) on $ORDERLAKE_BROKERS"

log "producing $events sample order events spanning 3 years"
"$bin" generate --brokers "$ORDERLAKE_BROKERS" --events "$events" --years 3 --malformed-share 0.01

log "archiving into ./data/lake/order_events until caught up"
"$bin" run --brokers "$ORDERLAKE_BROKERS" --group "orderlake-demo-$$" --until-caught-up

log "what the archive holds"
"$bin" status
log "done: the archive is a Delta table at ./data/lake/order_events (Hive-partitioned by event_date)"

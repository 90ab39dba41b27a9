#!/usr/bin/env bash
# The main job on embedded defaults: a local Kafka-protocol broker (tansu), sample OMS order events
# (three producer shapes, a little malformed input), the archiver draining them into the default
# local archive ./data/lake/order_events, its daily rollup, what the archive now holds, and
# orderlake-server answering example queries over it through Arrow Flight SQL.
#   DEMO_EVENTS=200000 ./scripts/demo.sh     for a bigger run
source "$(dirname "$0")/lib.sh"
cd "$ORDERLAKE_ROOT"
events=${DEMO_EVENTS:-50000}

ensure_tansu
log "building orderlake (target dir $CARGO_TARGET_DIR)"
# The same build as the tests, so one command's build serves the other.
cargo build --workspace --all-targets --locked
bin="$CARGO_TARGET_DIR/debug/orderlake-archiver"
server="$CARGO_TARGET_DIR/debug/orderlake-server"

trap stop_services EXIT
start_tansu memory://tansu/ "$ORDERLAKE_CACHE/demo-tansu.log"
log "local broker (tansu) on $ORDERLAKE_BROKERS"

log "producing $events sample order events spanning 3 years"
"$bin" generate --brokers "$ORDERLAKE_BROKERS" --events "$events" --years 3 --malformed-share 0.01

log "archiving into ./data/lake/order_events until caught up"
"$bin" run --brokers "$ORDERLAKE_BROKERS" --group "orderlake-demo-$$" --until-caught-up

log "the daily rollup of every closed date (maintain does this with compaction, the index and vacuum)"
"$bin" maintain --rollup

log "what the archive holds"
"$bin" status

log "starting orderlake-server (Flight SQL) over the archive, with a one-off demo user"
port=$(free_port)
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
hash=$(printf '%s\n' "$password" | "$server" hash-password)
config="$ORDERLAKE_CACHE/demo-server.toml"
printf '[server]\nlisten = "127.0.0.1:%s"\n[archive]\ntable_uri = "./data/lake/order_events"\n[sql]\nviews_dir = "sql"\n[[auth.users]]\nname = "demo"\npassword_hash = "%s"\n' \
  "$port" "$hash" >"$config"
"$server" --config "$config" >"$ORDERLAKE_CACHE/demo-server.log" 2>&1 &
ORDERLAKE_PIDS+=("$!")
wait_for_port "$port" orderlake-server 600

log "example queries through a Flight SQL client, as BI tools and the API service ask them"
ORDERLAKE_SERVER_PASSWORD="$password" "$server" query --uri "http://127.0.0.1:$port" --user demo \
  "SHOW TABLES" \
  "SELECT status, count(*) AS orders FROM orders GROUP BY status ORDER BY orders DESC" \
  "SELECT day, facility_id, orders, revenue, cancellations FROM daily_order_kpis ORDER BY day DESC, facility_id LIMIT 5" \
  "SELECT customer_id, orders, items_bought, total_spent FROM customer_purchase_summary ORDER BY total_spent DESC LIMIT 5" \
  "SELECT date_trunc('year', event_date) AS year, sum(orders) AS orders, sum(revenue) AS revenue, hll_estimate(hll_union(customers_sketch)) AS customers FROM daily_activity GROUP BY 1 ORDER BY 1" \
  "SELECT order_id, step, status, event_time FROM order_status_history WHERE order_id = (SELECT min(order_id) FROM orders WHERE status = 'DELIVERED') ORDER BY step"

log "done: the archive is a Delta table at ./data/lake/order_events (Hive-partitioned by event month);"
log "      orderlake-server --config config/server.toml serves it to JDBC, ADBC and Superset clients"

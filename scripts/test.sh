#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests against a real Kafka-protocol broker (tansu)
# and a real S3 server with conditional writes (moto), read back by independent clients
# (Python deltalake and duckdb), Prometheus's promtool over ops/, and headless Chromium on the
# status page. Installs what it needs once into ~/.cache/orderlake.
source "$(dirname "$0")/lib.sh"
cd "$ORDERLAKE_ROOT"

ensure_tansu
ensure_venv
ensure_promtool
ensure_browser
log "building (target dir $CARGO_TARGET_DIR)"
cargo build --workspace --all-targets --locked

logs="$ORDERLAKE_CACHE/test-logs"; mkdir -p "$logs"
trap stop_services EXIT
start_tansu memory://tansu/ "$logs/tansu.log"
start_moto orderlake-test "$logs/moto.log"
log "tansu on $ORDERLAKE_BROKERS, moto on $AWS_ENDPOINT_URL"
# The tests read these; S3 settings go to child processes and explicit storage options only.
export ORDERLAKE_TEST_BROKERS="$ORDERLAKE_BROKERS" ORDERLAKE_TEST_S3_ENDPOINT="$AWS_ENDPOINT_URL" \
  ORDERLAKE_TEST_S3_BUCKET="$ORDERLAKE_S3_BUCKET" ORDERLAKE_TEST_PYTHON="$PYTHON" \
  ORDERLAKE_TEST_TANSU="$TANSU_BIN" ORDERLAKE_TEST_PROMTOOL="$PROMTOOL" ORDERLAKE_TEST_AMTOOL="$AMTOOL" \
  ORDERLAKE_TEST_NODE_MODULES="$NODE_MODULES" ORDERLAKE_TEST_CHROMIUM="$CHROMIUM"
unset AWS_ENDPOINT_URL

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast --test-threads 2 "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@" -- --test-threads 2
fi

#!/usr/bin/env bash
# Runs the random-SQL test at length: ORDERLAKE_RANDOM_SQL_QUERIES generated queries (10,000 by
# default) from seed ORDERLAKE_RANDOM_SQL_SEED (random by default, printed) through the Flight SQL
# door of a server built as the suite builds it (with overflow checks, which found a DataFusion
# bug a release build would have hidden). Fails on any crash, hang, or failure without a precise
# status, and prints the queries that caused them.
source "$(dirname "$0")/lib.sh"
cd "$ORDERLAKE_ROOT"

export ORDERLAKE_RANDOM_SQL_QUERIES="${ORDERLAKE_RANDOM_SQL_QUERIES:-10000}"
export ORDERLAKE_RANDOM_SQL_SEED="${ORDERLAKE_RANDOM_SQL_SEED:-$RANDOM$RANDOM}"
log "$ORDERLAKE_RANDOM_SQL_QUERIES random queries from seed $ORDERLAKE_RANDOM_SQL_SEED"
# The whole workspace, so that features resolve as in every other build (no second DataFusion build).
cargo test --locked --workspace --test random_sql -- --nocapture

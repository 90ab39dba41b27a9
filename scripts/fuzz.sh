#!/usr/bin/env bash
# Runs each fuzz target (fuzz/fuzz_targets/) under libFuzzer for ORDERLAKE_FUZZ_SECONDS (60 by
# default), starting from and adding to its corpus in fuzz/corpus/<target>/; crashes land in
# fuzz/artifacts/<target>/. Installs cargo-fuzz once (into the cache) and needs a nightly
# toolchain (rustup's `nightly`). Afterwards, `cargo fuzz cmin <target>` keeps the corpus small;
# commit what it keeps: the suite replays it (tests/fuzz_corpus.rs).
source "$(dirname "$0")/lib.sh"
cd "$ORDERLAKE_ROOT/fuzz"

seconds="${ORDERLAKE_FUZZ_SECONDS:-60}"
export PATH="$ORDERLAKE_CACHE/cargo-fuzz/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null; then
  log "installing cargo-fuzz once into $ORDERLAKE_CACHE/cargo-fuzz"
  cargo install cargo-fuzz --locked --root "$ORDERLAKE_CACHE/cargo-fuzz"
fi
# Instrumented builds of their own, kept apart from the suite's.
export CARGO_TARGET_DIR="$ORDERLAKE_CACHE/fuzz-target"
# The workspace's lock file pins every shared dependency to the versions the product uses.
[ -f Cargo.lock ] || cp ../Cargo.lock Cargo.lock

failed=0
for target in ${ORDERLAKE_FUZZ_TARGETS:-statement trino_statement ticket authorization}; do
  log "fuzzing $target for ${seconds}s"
  mkdir -p "corpus/$target"
  if ! cargo +nightly fuzz run "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=4096; then
    log "$target: crash or invariant broken; the input is in fuzz/artifacts/$target/"
    failed=1
  fi
done
exit $failed

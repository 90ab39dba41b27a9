# Shared shell functions for orderlake's scripts: cached tool installs and real services (tansu,
# moto) on free loopback ports. Source it; do not run it.
#
# Cache (outside the clone, survives between runs): ${ORDERLAKE_CACHE:-$HOME/.cache/orderlake}
#   tansu-0.6.0/bin/tansu   the Kafka-protocol broker, built once (~10 min on 2 cores)
#   venv/                   Python clients: pyarrow, deltalake, duckdb, adbc, confluent-kafka, moto
#   prometheus/usr/bin/promtool  Prometheus's rule and config checker, from Debian's package
#   browser/node_modules/   playwright-core, driving Debian's Chromium (installed with apt) in tests
#   target/                 the cargo target directory

set -euo pipefail

ORDERLAKE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ORDERLAKE_CACHE="${ORDERLAKE_CACHE:-$HOME/.cache/orderlake}"
TANSU_VERSION=0.6.0
TANSU_BIN="$ORDERLAKE_CACHE/tansu-$TANSU_VERSION/bin/tansu"
VENV="$ORDERLAKE_CACHE/venv"
PYTHON="$VENV/bin/python"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ORDERLAKE_CACHE/target}"
mkdir -p "$ORDERLAKE_CACHE"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Runs "$@" holding an exclusive lock named $1 (so parallel runs never build the same tool twice).
with_lock() {
  local name=$1; shift
  (flock 9; "$@") 9>"$ORDERLAKE_CACHE/.$name.lock"
}

_install_tansu() {
  [ -x "$TANSU_BIN" ] && return 0
  log "building tansu $TANSU_VERSION once (about 10 minutes on 2 cores; cached in $ORDERLAKE_CACHE)"
  cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,libsql \
    --root "$ORDERLAKE_CACHE/tansu-$TANSU_VERSION" >"$ORDERLAKE_CACHE/tansu-build.log" 2>&1 \
    || { tail -30 "$ORDERLAKE_CACHE/tansu-build.log"; return 1; }
}
ensure_tansu() { with_lock tansu _install_tansu; }

PROMTOOL="$ORDERLAKE_CACHE/prometheus/usr/bin/promtool"
AMTOOL="$ORDERLAKE_CACHE/prometheus/usr/bin/amtool"
_install_promtool() {
  [ -x "$PROMTOOL" ] && [ -x "$AMTOOL" ] && return 0
  log "fetching promtool and amtool from Debian's prometheus packages (extracted into $ORDERLAKE_CACHE; no service installed)"
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download prometheus prometheus-alertmanager >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 \
           && apt-get download prometheus prometheus-alertmanager >/dev/null; }; })
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$ORDERLAKE_CACHE/prometheus"; done
  rm -rf "$tmp"
  [ -x "$PROMTOOL" ] && [ -x "$AMTOOL" ]
}
ensure_promtool() { with_lock promtool _install_promtool; }

PLAYWRIGHT_VERSION=1.56.1
NODE_MODULES="$ORDERLAKE_CACHE/browser/node_modules"
CHROMIUM=/usr/bin/chromium
_install_browser() {
  if [ ! -x "$CHROMIUM" ]; then
    log "installing Debian's Chromium for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -q chromium >/dev/null; }
  fi
  if [ ! -d "$NODE_MODULES/playwright-core" ] \
      || [ "$(node -p "require('$NODE_MODULES/playwright-core/package.json').version")" != "$PLAYWRIGHT_VERSION" ]; then
    log "installing playwright-core $PLAYWRIGHT_VERSION (no browser download: it drives Debian's Chromium)"
    mkdir -p "$ORDERLAKE_CACHE/browser"
    npm install --prefix "$ORDERLAKE_CACHE/browser" --no-audit --no-fund --silent \
      "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null
  fi
}
ensure_browser() { with_lock browser _install_browser; }

PY_REQUIREMENTS="$ORDERLAKE_ROOT/tests/python/requirements.txt"
_install_venv() {
  local stamp="$VENV/.requirements.sha"
  local want; want=$(sha256sum "$PY_REQUIREMENTS" | cut -d' ' -f1)
  if [ -x "$PYTHON" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  log "installing Python test clients into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$PY_REQUIREMENTS"
  echo "$want" >"$stamp"
}
ensure_venv() { with_lock venv _install_venv; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() {
  local port=$1 what=$2 tries=${3:-300}
  for _ in $(seq "$tries"); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "$what did not open port $port"; return 1
}

ORDERLAKE_PIDS=()
stop_services() {
  for pid in "${ORDERLAKE_PIDS[@]}"; do
    kill -CONT "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${ORDERLAKE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  ORDERLAKE_PIDS=()
}

# start_tansu STORAGE_URL LOGFILE -> exports ORDERLAKE_BROKERS, TANSU_PID
start_tansu() {
  local storage=${1:-memory://tansu/} logfile=${2:-/dev/null}
  local port; port=$(free_port)
  "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "$storage" \
    >"$logfile" 2>&1 &
  TANSU_PID=$!
  ORDERLAKE_PIDS+=("$TANSU_PID")
  wait_for_port "$port" tansu
  export ORDERLAKE_BROKERS="127.0.0.1:$port" TANSU_PID
}

# bench_prepare BIN...: tansu and the Python tools installed, a release build of the binaries BIN...,
# $bin their directory and $work a scratch directory, removed with the services on exit.
bench_prepare() {
  ensure_tansu
  ensure_venv
  local targets=()
  for b in "$@"; do targets+=(--bin "$b"); done
  cargo build --release --locked "${targets[@]}"
  bin="$CARGO_TARGET_DIR/release"
  work=$(mktemp -d)
  trap 'stop_services; rm -rf "$work"' EXIT
}

# start_moto BUCKET LOGFILE -> exports AWS_* for the S3 server and ORDERLAKE_S3_BUCKET, MOTO_PID
start_moto() {
  local bucket=${1:-orderlake} logfile=${2:-/dev/null}
  local port; port=$(free_port)
  "$PYTHON" -m moto.server -H 127.0.0.1 -p "$port" >"$logfile" 2>&1 &
  MOTO_PID=$!
  ORDERLAKE_PIDS+=("$MOTO_PID")
  wait_for_port "$port" moto
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=test \
    AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true \
    ORDERLAKE_S3_BUCKET="$bucket" MOTO_PID
  "$PYTHON" - "$bucket" <<'PY'
import sys, boto3
boto3.client("s3").create_bucket(Bucket=sys.argv[1])
PY
}

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

# Shared helpers of the end-to-end benchmark scripts (sourced, not run). Loopback only.
# Every process started here is recorded and killed by its pid on exit.

set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WW="${WW:-$REPO/target/release/weights-watcher}"
FAKE="$REPO/target/release/examples/fake_mirror"
WORK="${WORK:-$(mktemp -d /tmp/ww-bench.XXXXXX)}"
PIDS=()
export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
export AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

build() {
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$REPO" && cargo build --release --bin weights-watcher --example fake_mirror)
  fi
  if pgrep -x rustc >/dev/null || pgrep -f 'bin/rustc ' >/dev/null; then
    echo "warning: rustc is running on this machine: figures will be noisy" >&2
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_mirror LOGS LATENCY_MS [CONTROL_PORT]: sets MIRROR_PORT, MIRROR_PID; waits for "ready".
start_mirror() {
  MIRROR_PORT=$(free_port)
  local out="$WORK/mirror.$MIRROR_PORT.out"
  "$FAKE" "$1" "$MIRROR_PORT" "$2" "${3:-0}" >"$out" 2>"$WORK/mirror.$MIRROR_PORT.err" &
  MIRROR_PID=$!
  PIDS+=("$MIRROR_PID")
  for _ in $(seq 1 1200); do
    if grep -q '^ready' "$out"; then cat "$out" >&2; return 0; fi
    kill -0 "$MIRROR_PID" 2>/dev/null || { cat "$WORK/mirror.$MIRROR_PORT.err" >&2; return 1; }
    sleep 0.1
  done
  echo "fake mirror not ready after 120 s" >&2
  return 1
}

# write_config DB POLL_INTERVAL: sets CONFIG and HTTP_PORT.
write_config() {
  HTTP_PORT=$(free_port)
  CONFIG="$WORK/config.$HTTP_PORT.toml"
  cat >"$CONFIG" <<TOML
[mirror]
base_url = "http://127.0.0.1:$MIRROR_PORT"
contract = "0.0.5005"
poll_interval = "$2"
page_limit = 100

[storage]
endpoint = "http://127.0.0.1:9000"
bucket = "akave-bucket"
region = "akave-network"
url_ttl = "1h"

[database]
path = "$1"

[http]
listen = "127.0.0.1:$HTTP_PORT"
cors_allowed_origins = ["http://localhost:5173"]
TOML
}

# start_daemon: `run` in the background with $CONFIG; sets WW_PID; waits for /readyz.
start_daemon() {
  RUST_LOG="${RUST_LOG:-warn}" "$WW" --config "$CONFIG" run >"$WORK/daemon.out" 2>"$WORK/daemon.err" &
  WW_PID=$!
  PIDS+=("$WW_PID")
  for _ in $(seq 1 600); do
    if curl -fs "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1; then return 0; fi
    kill -0 "$WW_PID" 2>/dev/null || { tail -20 "$WORK/daemon.err" >&2; return 1; }
    sleep 0.1
  done
  echo "daemon not ready after 60 s" >&2
  return 1
}

stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

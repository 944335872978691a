#!/usr/bin/env bash
# End-to-end backfill (BENCHMARKS.md, figure 3): `weights-watcher run --once` over LOGS logs served
# by the fake mirror node in another process (pages of 100), once per added latency, under
# /usr/bin/time -v. Reports submissions stored per second of wall time and peak RSS.
#
#   benches/backfill.sh [LOGS=1000000] [LATENCIES_MS="0 20"]
#   KEEP_DB=/path/to/copy.db benches/backfill.sh ...   keeps the database of the first run
#   SKIP_BUILD=1 skips `cargo build --release`.
source "$(dirname "$0")/common.sh"
LOGS="${1:-1000000}"
LATENCIES="${2:-0 20}"
build
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

printf '%-8s %-10s %12s %10s %12s %12s\n' logs latency submitted wall_s events/s peak_RSS_MiB
first=1
for latency in $LATENCIES; do
  start_mirror "$LOGS" "$latency"
  db="$WORK/backfill.$latency.db"
  write_config "$db" "2s"
  t0=$(date +%s.%N)
  RUST_LOG="${RUST_LOG:-warn}" /usr/bin/time -v "$WW" --config "$CONFIG" run --once \
    >"$WORK/once.$latency.out" 2>"$WORK/once.$latency.err"
  t1=$(date +%s.%N)
  stop_pid "$MIRROR_PID"
  line=$(grep -m1 '^indexed' "$WORK/once.$latency.out")
  n=$(echo "$line" | awk '{print $2}')
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/once.$latency.err")
  python3 - "$LOGS" "$latency" "$n" "$t0" "$t1" "$rss_kb" <<'PY'
import sys
logs, lat, n, t0, t1, rss = sys.argv[1:]
wall = float(t1) - float(t0)
print(f"{logs:<8} {lat + ' ms':<10} {int(n):>12} {wall:>10.2f} {int(n) / wall:>12,.0f} {int(rss) / 1024:>12.1f}")
PY
  echo "  ($line)" >&2
  if [ "$first" = 1 ] && [ -n "${KEEP_DB:-}" ]; then
    cp "$db" "$KEEP_DB"
    [ -f "$db-wal" ] && cp "$db-wal" "$KEEP_DB-wal"
    echo "  database kept at $KEEP_DB" >&2
  fi
  first=0
  rm -f "$db" "$db-wal" "$db-shm"
done

#!/usr/bin/env bash
# Idle cost (BENCHMARKS.md, figure 6): CPU and RSS of `weights-watcher run` over 60 s of live
# polling (poll_interval = "2s") with nothing new on the mirror, from /proc/<pid>/stat
# (utime + stime) and /proc/<pid>/status (VmRSS, sampled every 5 s).
#
#   benches/idle.sh [LOGS=11800] [SECONDS=60]      SKIP_BUILD=1 skips the build
source "$(dirname "$0")/common.sh"
LOGS="${1:-11800}"
SECS="${2:-60}"
build
start_mirror "$LOGS" 0
write_config "$WORK/idle.db" "2s"
start_daemon
# Let the backfill finish and the process settle before measuring.
sleep 10
ticks() { awk '{print $14 + $15}' /proc/"$WW_PID"/stat; }
rss_kb() { awk '/VmRSS/ {print $2}' /proc/"$WW_PID"/status; }
hz=$(getconf CLK_TCK)
requests_before=$(grep -c . "$WORK/daemon.err" || true)
c0=$(ticks); t0=$(date +%s.%N); max_rss=$(rss_kb)
for _ in $(seq 1 $((SECS / 5))); do
  sleep 5
  r=$(rss_kb); [ "$r" -gt "$max_rss" ] && max_rss=$r
done
c1=$(ticks); t1=$(date +%s.%N); end_rss=$(rss_kb)
python3 - "$c0" "$c1" "$t0" "$t1" "$hz" "$end_rss" "$max_rss" <<'PY'
import sys
c0, c1, t0, t1, hz, end_rss, max_rss = sys.argv[1:]
cpu = (int(c1) - int(c0)) / int(hz)
wall = float(t1) - float(t0)
print(f"idle over {wall:.1f} s: CPU {cpu:.2f} s = {100 * cpu / wall:.3f}% of one core "
      f"(resolution {100 / int(hz) / wall:.3f}%), VmRSS {int(end_rss) / 1024:.1f} MiB (max {int(max_rss) / 1024:.1f} MiB)")
PY
echo "daemon stderr lines during the run: $(( $(grep -c . "$WORK/daemon.err" || true) - requests_before ))"

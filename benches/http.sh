#!/usr/bin/env bash
# HTTP lookups (BENCHMARKS.md, figures 4 and 5): GET /v1/tasks/{id}/weights on a warm URL cache,
# with wrk rotating task ids (10 submissions per task), 64 connections for 20 s, then one
# connection for 10 s (latency without queueing). wrk shares the machine's cores with the daemon.
#
#   benches/http.sh [LOGS=11800]        backfills LOGS logs (~85% submissions) first, then serves
#   DB=/path/ww.db TASKS=N benches/http.sh   serves an existing database (e.g. backfill.sh KEEP_DB)
#   DURATION=20s CONNECTIONS=64 THREADS=2 SKIP_BUILD=1
source "$(dirname "$0")/common.sh"
LOGS="${1:-11800}"
DURATION="${DURATION:-20s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
build

if [ -n "${DB:-}" ]; then
  start_mirror 0 0 # nothing new: the database is already caught up
  db="$DB"
  : "${TASKS:?set TASKS (tasks in the database) with DB}"
else
  start_mirror "$LOGS" 0
  TASKS=$(sed -n 's/.* tasks=\([0-9]*\).*/\1/p' "$WORK/mirror.$MIRROR_PORT.out")
  db="$WORK/http.db"
  write_config "$db" "2s"
  RUST_LOG=warn "$WW" --config "$CONFIG" run --once 2>"$WORK/once.err"
fi
write_config "$db" "2s"
start_daemon
submissions=$(curl -fs "http://127.0.0.1:$HTTP_PORT/v1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("submissions_indexed", "?"))' || echo "?")
echo "serving $db: $TASKS tasks, submissions per /v1/status: $submissions" >&2

cat >"$WORK/rotate.lua" <<LUA
-- Each request asks for a random task of the database (1..$TASKS).
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/v1/tasks/" .. math.random(1, $TASKS) .. "/weights")
end
LUA
url="http://127.0.0.1:$HTTP_PORT"
curl -fs "$url/v1/tasks/1/weights" | head -c 300 >&2; echo >&2
wrk -t2 -c"$CONNECTIONS" -d3s -s "$WORK/rotate.lua" "$url" >/dev/null # warm-up
echo "== wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency (rotating task ids)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/rotate.lua" "$url" | tee "$WORK/wrk64.txt"
echo "== wrk -t1 -c1 -d10s --latency (one connection: service time without queueing)"
wrk -t1 -c1 -d10s --latency -s "$WORK/rotate.lua" "$url" | tee "$WORK/wrk1.txt"
grep -q 'Non-2xx' "$WORK/wrk64.txt" "$WORK/wrk1.txt" && echo "WARNING: non-2xx responses (see above)"
echo "daemon VmRSS after the run: $(awk '/VmRSS/ {print $2, $3}' /proc/"$WW_PID"/status)"

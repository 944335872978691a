#!/usr/bin/env bash
# HTTP lookups (BENCHMARKS.md, figures 4 and 5): GET /v1/tasks/{id}/weights on a warm URL cache,
# with wrk rotating task ids (10 submissions per task), 64 connections for 20 s, then one
# connection for 10 s (latency without queueing). wrk shares the machine's cores with the daemon.
#
#   benches/http.sh [LOGS=11800]        backfills LOGS logs (~85% submissions) first, then serves
#   DB=/path/ww.db TASKS=N benches/http.sh   serves an existing database (e.g. backfill.sh KEEP_DB)
#   DURATION=20s CONNECTIONS=64 THREADS=2 SKIP_BUILD=1
#   TASK_RANGE=N   wrk asks for tasks 1..N only (default: all TASKS), e.g. 1000 so the working set
#                  fits the daemon's 8 MiB answer cache whatever the database's size
#   COLD=N         before the warm-up, one connection asks for N distinct tasks (1..N shuffled), each
#                  once, on the fresh daemon: every answer misses the answer cache (the SQLite path)
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

RANGE="${TASK_RANGE:-$TASKS}"
[ "$RANGE" -le "$TASKS" ] || RANGE="$TASKS"
echo "wrk rotates over tasks 1..$RANGE" >&2
cat >"$WORK/rotate.lua" <<LUA
-- Each request asks for a random task of 1..$RANGE.
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/v1/tasks/" .. math.random(1, $RANGE) .. "/weights")
end
LUA
url="http://127.0.0.1:$HTTP_PORT"
if [ -n "${COLD:-}" ]; then
  # One pass over COLD distinct tasks, in random order, then stop: no answer is in memory yet.
  cat >"$WORK/cold.lua" <<LUA
math.randomseed(os.time())
local ids, n, done = {}, $COLD, 0
for i = 1, n do ids[i] = i end
for i = n, 2, -1 do local j = math.random(1, i); ids[i], ids[j] = ids[j], ids[i] end
local next_i = 0
request = function()
  next_i = next_i + 1
  return wrk.format("GET", "/v1/tasks/" .. ids[((next_i - 1) % n) + 1] .. "/weights")
end
response = function(status, headers, body)
  done = done + 1
  if done >= n then wrk.thread:stop() end
end
LUA
  echo "== cold pass: wrk -t1 -c1 --latency over $COLD distinct tasks, each once (answer-cache misses)"
  # wrk keeps its clock running after the thread stops: a duration of 10 ms per task is ample.
  wrk -t1 -c1 -d"$((COLD / 100 + 3))s" --latency -s "$WORK/cold.lua" "$url" | tee "$WORK/wrkcold.txt"
fi
# A sample answer (through a file: `curl | head` fails under pipefail when head exits first).
curl -fs "$url/v1/tasks/1/weights" >"$WORK/sample.json"
head -c 300 "$WORK/sample.json" >&2; echo >&2
wrk -t2 -c"$CONNECTIONS" -d3s -s "$WORK/rotate.lua" "$url" >/dev/null # warm-up
echo "== wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency (rotating task ids)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/rotate.lua" "$url" | tee "$WORK/wrk64.txt"
echo "== wrk -t1 -c1 -d10s --latency (one connection: service time without queueing)"
wrk -t1 -c1 -d10s --latency -s "$WORK/rotate.lua" "$url" | tee "$WORK/wrk1.txt"
grep -q 'Non-2xx' "$WORK/wrk64.txt" "$WORK/wrk1.txt" && echo "WARNING: non-2xx responses (see above)"
echo "daemon VmRSS after the run: $(awk '/VmRSS/ {print $2, $3}' /proc/"$WW_PID"/status)"

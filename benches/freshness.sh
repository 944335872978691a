#!/usr/bin/env bash
# Freshness (BENCHMARKS.md, figure 7): time from a log appearing on the fake mirror to the API
# returning it, with poll_interval = "1s". Pushes one WeightsSubmitted log of a new task through
# the fake mirror's control port, then polls GET /v1/tasks/{id}/weights every 5 ms until it
# answers 200. Pushes are spread at random phases of the poll interval.
#
#   benches/freshness.sh [SAMPLES=30]      SKIP_BUILD=1 skips the build
source "$(dirname "$0")/common.sh"
SAMPLES="${1:-30}"
build
CONTROL_PORT=$(free_port)
start_mirror 1000 0 "$CONTROL_PORT"
write_config "$WORK/fresh.db" "1s"
start_daemon
sleep 3
python3 - "$SAMPLES" "$CONTROL_PORT" "$HTTP_PORT" <<'PY'
import http.client, random, statistics, sys, time
samples, control, api = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", control)
a = http.client.HTTPConnection("127.0.0.1", api)
lat = []
for i in range(samples):
    time.sleep(random.uniform(0.0, 1.0))
    task = 50_000_000 + i
    c.request("POST", f"/push?task={task}&hash=fresh-{i}-{random.getrandbits(32):08x}")
    r = c.getresponse(); r.read()
    t0 = time.perf_counter()  # the log is visible on the mirror from here
    while True:
        a.request("GET", f"/v1/tasks/{task}/weights")
        r = a.getresponse(); r.read()
        if r.status == 200:
            break
        if time.perf_counter() - t0 > 10:
            sys.exit(f"task {task} not served after 10 s")
        time.sleep(0.005)
    lat.append((time.perf_counter() - t0) * 1000)
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))]
print(f"freshness over {samples} pushes (poll_interval 1s): p50 {statistics.median(lat):.0f} ms, "
      f"p90 {p(0.9):.0f} ms, p99 {p(0.99):.0f} ms, max {lat[-1]:.0f} ms, min {lat[0]:.0f} ms")
PY

#!/usr/bin/env bash
# Two builds of Outpost side by side on cache hits, alternated round by
# round on the same machine in one run: 1 KiB hits over HTTP/1.1 driven by
# wrk (CPU per request from /proc, req/s), and over h2c driven by h2load
# (req/s, CPU per request). Prints each round and the medians, and the
# ratio of the second build to the first.
#
#   loadtest/scripts/ab.sh BEFORE_BINARY AFTER_BINARY [ROUNDS] [SECONDS]
#
# Everything listens on 127.0.0.1; each load is bounded in time (and h2load
# in requests); everything started is stopped on exit. Needs nginx (the
# origin), curl, python3, wrk and h2load (Debian: wrk, nghttp2-client).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
before=$(realpath "$1")
after=$(realpath "$2")
rounds=${3:-5}
seconds=${4:-5}
for tool in nginx curl python3 wrk h2load "$before" "$after"; do
    command -v "$tool" >/dev/null || { echo "ab: $tool is missing" >&2; exit 1; }
done

body_bytes=1024
# shellcheck source=single.sh
. "$root/loadtest/scripts/single.sh"
start_origin

# cpu_ticks PID: user + system time of PID so far, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
hz=$(getconf CLK_TCK)

# run_one BINARY: one round of both loads against a fresh Outpost; prints
# "h1_rps h1_us_per_request h2_rps h2_us_per_request".
run_one() {
    outpost=$1
    start_outpost 256MiB
    local url="http://127.0.0.1:$proxy_port/object"
    curl -s -o /dev/null "$url"
    curl -s -o /dev/null "$url"
    # Warm-up, not counted.
    wrk -t1 -c64 -d1s "$url" > /dev/null
    local t0 t1 out requests
    t0=$(cpu_ticks "$outpost_pid")
    out=$(wrk -t1 -c64 -d"${seconds}s" "$url")
    t1=$(cpu_ticks "$outpost_pid")
    requests=$(echo "$out" | awk '/requests in/ { print $1 }')
    local h1_rps h1_us
    h1_rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    h1_us=$(python3 -c "print(round(($t1 - $t0) / $hz / $requests * 1e6, 2))")
    t0=$(cpu_ticks "$outpost_pid")
    out=$(h2load -c16 -m10 -t1 -n 100000000 -D "$seconds" "$url" 2>&1)
    t1=$(cpu_ticks "$outpost_pid")
    requests=$(echo "$out" | awk '/^requests:/ { print $8 }')
    local h2_rps h2_us
    h2_rps=$(echo "$out" | awk '/^finished in/ { gsub(",", "", $4); print $4 }')
    h2_us=$(python3 -c "print(round(($t1 - $t0) / $hz / max($requests, 1) * 1e6, 2))")
    kill "$outpost_pid"
    wait "$outpost_pid" 2>/dev/null || true
    echo "$h1_rps $h1_us $h2_rps $h2_us"
}

results=$work/results.txt
: > "$results"
for round in $(seq "$rounds"); do
    for build in before after; do
        binary=$before
        [ "$build" = after ] && binary=$after
        line=$(run_one "$binary")
        echo "round $round $build: $line"
        echo "$build $line" >> "$results"
    done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = {"before": [], "after": []}
for line in open(sys.argv[1]):
    build, *values = line.split()
    rows[build].append([float(v) for v in values])
names = ["HTTP/1.1 req/s (wrk)", "HTTP/1.1 CPU us/request", "h2c req/s (h2load)", "h2c CPU us/request"]
print(f"{'median of ' + str(len(rows['before'])) + ' rounds':32} {'before':>10} {'after':>10} {'after/before':>12}")
for i, name in enumerate(names):
    b = statistics.median(r[i] for r in rows["before"])
    a = statistics.median(r[i] for r in rows["after"])
    print(f"{name:32} {b:>10.2f} {a:>10.2f} {a / b:>12.3f}")
PY

#!/usr/bin/env bash
# Two builds of Outpost compared by the instructions they execute per cache
# hit, counted by valgrind's callgrind: repeatable whatever else the machine
# is doing, where CPU time on a shared machine is not. User space only (the
# kernel's socket work is not counted). 1 KiB hits over HTTP/1.1 and over
# h2c, driven by h2load; the counters are zeroed after a warm-up, so start-up
# is not counted.
#
#   loadtest/scripts/ab-instructions.sh BEFORE_BINARY AFTER_BINARY [REQUESTS]
#
# AB_PATHS (default /object) counts each of these paths in turn (the origin
# answers /object and every /obj/...), and AB_RULES is YAML for the site's
# `rules:` key, so one binary given twice compares rules by path:
#
#   AB_RULES="$(cat rules.yaml)" AB_PATHS="/obj/plain/x /obj/ruled/x" \
#     loadtest/scripts/ab-instructions.sh target/release/outpost target/release/outpost
#
# Everything listens on 127.0.0.1; each load is bounded in requests and
# time; everything started is stopped on exit. Needs nginx (the origin),
# curl, python3, h2load (Debian: nghttp2-client) and valgrind.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
before=$(realpath "$1")
after=$(realpath "$2")
requests=${3:-20000}
for tool in nginx curl python3 h2load valgrind callgrind_control "$before" "$after"; do
    command -v "$tool" >/dev/null || { echo "ab-instructions: $tool is missing" >&2; exit 1; }
done

body_bytes=1024
# shellcheck source=single.sh
. "$root/loadtest/scripts/single.sh"
start_origin

# start_under_callgrind BINARY: Outpost on proxy_port, under callgrind,
# collecting nothing until told.
start_under_callgrind() {
    cat > "$work/outpost.yaml" <<YAML
listen: [{ addr: "127.0.0.1:$proxy_port" }]
admin: { addr: "127.0.0.1:$admin_port" }
cache: { memory: 256MiB }
origins: { origin: { servers: [{ url: "http://127.0.0.1:$origin_port" }] } }
sites:
  - hosts: ["*"]
    origin: origin
YAML
    if [ -n "${AB_RULES:-}" ]; then
        printf '    rules:\n%s\n' "$AB_RULES" >> "$work/outpost.yaml"
    fi
    OUTPOST_ADMIN_TOKEN=unused RUST_LOG=warn valgrind --tool=callgrind \
        --callgrind-out-file="$work/callgrind.%p" --instr-atstart=no \
        "$1" run --config "$work/outpost.yaml" \
        > "$work/ready.json" 2> "$work/outpost.log" &
    outpost_pid=$!
    pids+=("$outpost_pid")
    for _ in $(seq 600); do
        curl -s -o /dev/null "http://127.0.0.1:$admin_port/stats" && return 0
        sleep 0.1
    done
    echo "outpost did not start under valgrind: $(tail -5 "$work/outpost.log")" >&2
    return 1
}

# count PATH PROTOCOL_FLAGS: instructions per request for REQUESTS hits.
count() {
    local url="http://127.0.0.1:$proxy_port$1"
    shift
    # Warm-up: the object stored, connections and pools made.
    h2load "$@" -c4 -n 400 "$url" > /dev/null 2>&1
    callgrind_control -i on "$outpost_pid" > /dev/null
    callgrind_control -z "$outpost_pid" > /dev/null
    # Bounded by count and, should the proxy stall, by time (h2load's -D
    # would replace the count by a duration).
    timeout 600 h2load "$@" -c4 -n "$requests" "$url" > "$work/h2load.txt" 2>&1
    local done_requests
    done_requests=$(awk '/^requests:/ { print $8 }' "$work/h2load.txt")
    callgrind_control -d "$outpost_pid" > /dev/null
    callgrind_control -i off "$outpost_pid" > /dev/null
    local dump
    dump=$(ls -t "$work"/callgrind."$outpost_pid"* | head -1)
    python3 - "$dump" "$done_requests" <<'PY'
import sys
total = 0
for line in open(sys.argv[1]):
    if line.startswith(("summary:", "totals:")):
        total = int(line.split()[1])
print(round(total / max(int(sys.argv[2]), 1)))
PY
    rm -f "$work"/callgrind."$outpost_pid"*
}

printf '%-10s %-24s %20s %20s\n' build path "HTTP/1.1 instr/req" "h2c instr/req"
for build in before after; do
    binary=$before
    [ "$build" = after ] && binary=$after
    start_under_callgrind "$binary"
    for path in ${AB_PATHS:-/object}; do
        h1=$(count "$path" --h1)
        h2=$(count "$path" -m10)
        printf '%-10s %-24s %20s %20s\n' "$build" "$path" "$h1" "$h2"
    done
    kill "$outpost_pid"
    wait "$outpost_pid" 2>/dev/null || true
done

#!/usr/bin/env bash
# Misses through an HTTP/2 origin pool: two outpost binaries take turns
# in front of one h2c origin (node's http2 module, h2-origin.mjs), every
# request a miss (`cache: bypass`), and each run prints throughput and the
# proxy's CPU seconds per 10k requests. The origin bounds throughput, so
# compare the CPU figures.
#
#   loadtest/scripts/h2-origin.sh OUTPOST_A OUTPOST_B [ROUNDS]
#
# Each run is 32 connections for 5 s (at most 2M requests); everything
# started here is stopped on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
loadtest=$target_dir/release/outpost-loadtest
[ $# -ge 2 ] || { echo "usage: $0 OUTPOST_A OUTPOST_B [ROUNDS]" >&2; exit 2; }
rounds=${3:-5}
for tool in node curl python3 "$1" "$2" "$loadtest"; do
    command -v "$tool" >/dev/null || { echo "h2-origin: $tool is missing" >&2; exit 1; }
done

work=$(mktemp -d -t outpost-h2-origin.XXXXXX)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

read -r origin_port proxy_port admin_port < <(python3 "$root/loadtest/scripts/free-ports.py" 3)
node "$root/loadtest/scripts/h2-origin.mjs" "$origin_port" &
pids+=($!)
cat > "$work/outpost.yaml" <<YAML
listen: [{ addr: "127.0.0.1:$proxy_port" }]
admin: { addr: "127.0.0.1:$admin_port" }
origins:
  origin: { servers: [{ url: "http://127.0.0.1:$origin_port" }], protocol: http2 }
sites: [{ hosts: ["*"], origin: origin, rules: [{ match: {}, cache: bypass }] }]
YAML

for round in $(seq "$rounds"); do
    for outpost in "$1" "$2"; do
        OUTPOST_ADMIN_TOKEN=unused RUST_LOG=warn "$outpost" run --config "$work/outpost.yaml" \
            > /dev/null 2> "$work/outpost.log" &
        pid=$!
        started=no
        for _ in $(seq 100); do
            if curl -s -o /dev/null "http://127.0.0.1:$admin_port/stats"; then started=yes; break; fi
            sleep 0.1
        done
        [ "$started" = yes ] || { echo "outpost did not start: $(cat "$work/outpost.log")" >&2; exit 1; }
        "$loadtest" --url "http://127.0.0.1:$proxy_port/miss" -c 32 -d 5s -r 2000000 \
            --proxy-pid "$pid" --json "$work/run.json" -q > /dev/null
        python3 - "$round" "$outpost" "$work/run.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[3]))
proxy = run["cpu"].get("proxy") or {}
print(f"round {sys.argv[1]}  {sys.argv[2]:40}  {run['throughput_rps']:8.0f} req/s  "
      f"{proxy.get('cpu_s_per_10k_requests', 0):.3f} s per 10k  status {run['status']}")
PY
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
done

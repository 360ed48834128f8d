#!/usr/bin/env bash
# What one stored object costs Outpost's memory: stores small objects in a
# memory tier big enough never to evict, and divides the growth of the
# process's proportional set size (PSS) by the objects stored; then sends
# the same requests again (hits), which must not add to it. The entry
# weight (cache/src/entry.rs) is fitted to this figure.
#
#   loadtest/scripts/object-memory.sh [OUTPOST_BINARY] [REQUESTS]
#
# The origin is an nginx on loopback serving a 1 KiB body with the eight
# header fields of the benchmark's origin. Every run is bounded (60 s per
# pass); everything started here is stopped on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
outpost=${1:-$target_dir/release/outpost}
requests=${2:-50000}
loadtest=$target_dir/release/outpost-loadtest
for tool in nginx curl python3 "$outpost" "$loadtest"; do
    command -v "$tool" >/dev/null || { echo "object-memory: $tool is missing" >&2; exit 1; }
done

body_bytes=1024
# shellcheck source=single.sh
. "$root/loadtest/scripts/single.sh"
start_origin
start_outpost 4GiB

pss() { awk '/^Pss:/ {print $2}' "/proc/$outpost_pid/smaps_rollup"; }
load() {
    "$loadtest" --url "http://127.0.0.1:$proxy_port/" --keys $((requests * 10)) \
        --path-template "$1" -c 8 -r "$2" -d 60s -q > /dev/null
}
# Connections, buffers and code paths first, on other keys.
load '/warm/{key}' 2000
before=$(pss)
load '/obj/{key}' "$requests"
stored=$(pss)
load '/obj/{key}' "$requests"
hit=$(pss)
stats=$(curl -s "http://127.0.0.1:$admin_port/stats")
python3 - "$before" "$stored" "$hit" "$stats" <<'PY'
import json, sys
before, stored, hit = (int(x) for x in sys.argv[1:4])
stats = json.loads(sys.argv[4])
memory = stats.get("cache", stats)["memory"]
objects = memory["objects"]
print(f"objects stored: {objects:,} (1 KiB bodies, 8 header fields)")
print(f"PSS growth per object: {(stored - before) * 1024 / objects:,.0f} B stored, "
      f"{(hit - before) * 1024 / objects:,.0f} B after hits")
print(f"weight the tier charges per object: {memory['bytes'] / objects:,.0f} B")
PY

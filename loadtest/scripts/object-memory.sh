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

work=$(mktemp -d -t outpost-object-memory.XXXXXX)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

read -r origin_port proxy_port admin_port < <(python3 "$root/loadtest/scripts/free-ports.py" 3)

mkdir -p "$work/html"
head -c 1024 /dev/zero | tr '\0' a > "$work/html/1k"
nginx_user=""
[ "$(id -u)" -eq 0 ] && nginx_user="user root;"
cat > "$work/nginx.conf" <<NGINX
daemon off;
$nginx_user
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/t1; proxy_temp_path $work/t2;
    fastcgi_temp_path $work/t3; uwsgi_temp_path $work/t4; scgi_temp_path $work/t5;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$origin_port;
        root $work/html;
        default_type application/octet-stream;
        add_header Cache-Control "public, max-age=3600";
        location /obj/ { try_files /1k =404; }
    }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)

cat > "$work/outpost.yaml" <<YAML
listen: [{ addr: "127.0.0.1:$proxy_port" }]
admin: { addr: "127.0.0.1:$admin_port" }
cache: { memory: 4GiB }
origins: { origin: { servers: [{ url: "http://127.0.0.1:$origin_port" }] } }
sites: [{ hosts: ["*"], origin: origin }]
YAML
OUTPOST_ADMIN_TOKEN=unused RUST_LOG=warn "$outpost" run --config "$work/outpost.yaml" \
    > "$work/ready.json" 2> "$work/outpost.log" &
outpost_pid=$!
pids+=("$outpost_pid")
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$admin_port/stats" && break
    sleep 0.1
done

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

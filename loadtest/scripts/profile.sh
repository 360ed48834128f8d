#!/usr/bin/env bash
# A flame graph of Outpost serving cache hits: `perf record` (DWARF call
# graphs) of `outpost run` while outpost-loadtest sends hits on one object,
# folded and drawn with inferno (`cargo install inferno`).
#
#   loadtest/scripts/profile.sh [BODY_BYTES] [SECONDS]
#
# Writes $CARGO_TARGET_DIR/profile/hits-BODY_BYTES.{folded,svg} (default
# target/profile/) and prints the heaviest frames. Everything listens on
# 127.0.0.1; the load is bounded in time; everything started is stopped on
# exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
outpost=$target_dir/release/outpost
loadtest=$target_dir/release/outpost-loadtest
body=${1:-1024}
seconds=${2:-4}
out=$target_dir/profile
for tool in nginx curl perf python3 inferno-collapse-perf inferno-flamegraph "$outpost" "$loadtest"; do
    command -v "$tool" >/dev/null || { echo "profile: $tool is missing" >&2; exit 1; }
done
mkdir -p "$out"

work=$(mktemp -d -t outpost-profile.XXXXXX)
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
head -c "$body" /dev/zero | tr '\0' a > "$work/html/object"
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
    server {
        listen 127.0.0.1:$origin_port;
        root $work/html;
        default_type application/octet-stream;
        add_header Cache-Control "public, max-age=3600";
    }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)
cat > "$work/outpost.yaml" <<YAML
listen: [{ addr: "127.0.0.1:$proxy_port" }]
admin: { addr: "127.0.0.1:$admin_port" }
origins: { origin: { servers: [{ url: "http://127.0.0.1:$origin_port" }] } }
sites: [{ hosts: ["*"], origin: origin }]
YAML
OUTPOST_ADMIN_TOKEN=unused RUST_LOG=warn "$outpost" run --config "$work/outpost.yaml" \
    > "$work/ready.json" 2> "$work/outpost.log" &
outpost_pid=$!
pids+=("$outpost_pid")
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$proxy_port/object" && break
    sleep 0.1
done

"$loadtest" --url "http://127.0.0.1:$proxy_port/object" -c 32 -d "$((seconds + 2))s" \
    -r 100000000 -q > "$work/load.txt" &
pids+=($!)
sleep 1
perf record -F 499 --call-graph dwarf,16384 -p "$outpost_pid" -o "$work/perf.data" \
    -- sleep "$seconds" 2> "$work/perf.log"
perf script -i "$work/perf.data" 2> /dev/null | inferno-collapse-perf > "$out/hits-$body.folded"
inferno-flamegraph --title "outpost: cache hits, $body-byte body" \
    < "$out/hits-$body.folded" > "$out/hits-$body.svg"
echo "flame graph: $out/hits-$body.svg"
# The heaviest frames by own time.
python3 - "$out/hits-$body.folded" <<'PY'
import collections, sys
own = collections.Counter()
total = 0
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip().rpartition(" ")
    n = int(count)
    total += n
    own[stack.split(";")[-1]] += n
print(f"{total} samples; heaviest frames by own time:")
for frame, n in own.most_common(15):
    print(f"  {100 * n / total:5.1f}%  {frame[:110]}")
PY

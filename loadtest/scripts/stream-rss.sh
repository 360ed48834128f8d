#!/usr/bin/env bash
# Streams one large body through Outpost and reports Outpost's resident
# memory before, during (peak) and after, to show that a body larger than
# max_object_size passes through without being held in memory.
#
#   loadtest/scripts/stream-rss.sh [SIZE_MIB]      (default 1024)
#
# Uses target/release/outpost (make release), python3 for the origin and
# curl for the client; everything on 127.0.0.1, bounded by SIZE_MIB and a
# 300 s timeout.
set -euo pipefail
size_mib=${1:-1024}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/release/outpost
[ -x "$bin" ] || { echo "build first: make release" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# The origin: a fixed-length body of SIZE_MIB MiB, written 1 MiB at a time.
cat > "$work/origin.py" <<'PY'
import http.server, sys
size = int(sys.argv[1]) << 20
chunk = b"x" * (1 << 20)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.send_header("Cache-Control", "max-age=300")
        self.end_headers()
        for _ in range(size >> 20):
            self.wfile.write(chunk)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
python3 "$work/origin.py" "$size_mib" > "$work/origin.port" &
for _ in $(seq 50); do [ -s "$work/origin.port" ] && break; sleep 0.1; done
origin_port=$(cat "$work/origin.port")

cat > "$work/outpost.yaml" <<YAML
listen: [{addr: 127.0.0.1:0}]
admin: {addr: 127.0.0.1:0}
cache: {memory: 64MiB, max_object_size: 16MiB}
origins:
  big: {servers: [{url: "http://127.0.0.1:$origin_port"}]}
sites:
  - hosts: ["*"]
    origin: big
YAML
OUTPOST_ADMIN_TOKEN=unused RUST_LOG=warn "$bin" run --config "$work/outpost.yaml" > "$work/ready" &
pid=$!
for _ in $(seq 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
port=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listen"][0]["addr"].split(":")[1])' "$work/ready")



# VmHWM is the kernel's own record of the peak resident set.
field() { awk -v f="$1:" '$1 == f {print $2}' /proc/$pid/status; }
before=$(field VmRSS)
before_peak=$(field VmHWM)
timeout 300 curl -s -o /dev/null -w '%{size_download} bytes in %{time_total}s' "http://127.0.0.1:$port/big" > "$work/curl"
echo "body: ${size_mib} MiB; $(cat "$work/curl")"
echo "outpost resident KiB: before $before (peak so far $before_peak); peak while streaming $(field VmHWM); after $(field VmRSS)"

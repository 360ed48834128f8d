# Shared by the single-proxy scripts (object-memory.sh, profile.sh), which
# source it after setting `root`, `outpost` and `body_bytes`: a work
# directory removed on exit, free loopback ports, an nginx origin serving
# one BODY_BYTES object at /object and at every /obj/KEY (cacheable for an
# hour, the header fields the benchmark's origin sends), and `outpost run`
# in front of it with CACHE (a size) of memory.
#
# Sets: work, pids (stopped on exit), origin_port, proxy_port, admin_port,
# outpost_pid.

work=$(mktemp -d -t outpost-single.XXXXXX)
pids=()
single_cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap single_cleanup EXIT

read -r origin_port proxy_port admin_port < <(python3 "$root/loadtest/scripts/free-ports.py" 3)

# start_origin: nginx on origin_port.
start_origin() {
    local nginx_user=""
    [ "$(id -u)" -eq 0 ] && nginx_user="user root;"
    mkdir -p "$work/html"
    head -c "$body_bytes" /dev/zero | tr '\0' a > "$work/html/object"
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
        location /obj/ { try_files /object =404; }
    }
}
NGINX
    nginx -c "$work/nginx.conf" -p "$work" &
    pids+=($!)
}

# start_outpost CACHE: outpost on proxy_port (admin on admin_port), ready
# once its admin API answers (10 s at most).
start_outpost() {
    cat > "$work/outpost.yaml" <<YAML
listen: [{ addr: "127.0.0.1:$proxy_port" }]
admin: { addr: "127.0.0.1:$admin_port" }
cache: { memory: $1 }
origins: { origin: { servers: [{ url: "http://127.0.0.1:$origin_port" }] } }
sites: [{ hosts: ["*"], origin: origin }]
YAML
    OUTPOST_ADMIN_TOKEN=unused RUST_LOG=warn "$outpost" run --config "$work/outpost.yaml" \
        > "$work/ready.json" 2> "$work/outpost.log" &
    outpost_pid=$!
    pids+=("$outpost_pid")
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$admin_port/stats" && return 0
        sleep 0.1
    done
    echo "outpost did not start: $(cat "$work/outpost.log")" >&2
    return 1
}

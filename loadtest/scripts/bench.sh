#!/usr/bin/env bash
# Side-by-side benchmark: Outpost, nginx (proxy_cache) and Varnish, each
# with a 256 MiB cache, behind the same origin, driven by outpost-loadtest.
#
#   loadtest/scripts/bench.sh          (or: make bench, which builds first)
#
# Scenarios, run for each proxy in turn (a fresh proxy, cold cache, for
# every scenario, so that each one's peak memory is its own):
#   hit-1k     hits on a 1 KiB object
#   hit-100k   hits on a 100 KiB object
#   zipf       Zipf-distributed keys over 100k distinct 1 KiB objects, the
#              same number of requests (BENCH_ZIPF_REQUESTS) for every proxy,
#              with a cache too small for them all (BENCH_ZIPF_MEMORY_MIB);
#              then Outpost again for each peer, sized to take as much
#              memory as that peer took (see "equal memory" below)
#   stampede   1000 concurrent requests for one key the proxy has never
#              fetched, from an origin that takes BENCH_SLOW_MS to answer
#   https      hits on the 1 KiB object over TLS (HTTP/1.1; no Varnish:
#              it does not terminate TLS)
#
# The origin is an nginx serving static files, with /slow/ passed to a
# small Python server that waits before answering; its access log counts
# the requests each scenario sent to the origin.
#
# Prints a markdown table on stdout (progress goes to stderr) and writes
# it, with every figure as JSON, to BENCH_OUT. Settings, by environment:
#
#   BENCH_SECONDS=10        length of each run (not the stampede: it ends
#                           when its 1000 requests are answered, 30 s at most)
#   BENCH_ROUNDS=3          rounds of the hit scenarios (hit-1k, hit-100k,
#                           https), the proxies taking turns in each; the
#                           table has each proxy's median round by req/s
#   BENCH_REQUESTS=2000000  request cap of each run
#   BENCH_CONNECTIONS=32    client connections (not the stampede)
#   BENCH_ZIPF=1.0          Zipf exponent of the zipf scenario
#   BENCH_SLOW_MS=150       the slow origin's delay
#   BENCH_MEMORY_MIB=256    cache size of every proxy (not in zipf)
#   BENCH_ZIPF_REQUESTS=400000   requests of the zipf runs (at most 120 s)
#   BENCH_ZIPF_MEMORY_MIB=32     cache size of every proxy in zipf
#   BENCH_PROXIES="outpost nginx varnish"
#   BENCH_SCENARIOS="hit-1k hit-100k zipf stampede https"
#   BENCH_OUT=$CARGO_TARGET_DIR/bench (default target/bench)
#
# Equal memory. Each proxy's cache setting counts something else: Outpost's
# `cache.memory` bounds everything an object costs it (body, headers, key,
# index places, bookkeeping); Varnish's `-s malloc` counts its storage
# allocations only; nginx's `max_size` counts its cache files, in file
# system blocks, while the keys zone is apart. So the zipf runs also
# measure the memory each cache really took: the growth of the proxy's
# proportional set size (PSS, /proc/PID/smaps_rollup, shared pages split
# between nginx's processes) over the run, plus, for nginx, its cache
# files on tmpfs (du), sampled every second for the peak. Outpost then
# runs again for each peer, its cache set so that it takes that peer's
# peak: once with its setting scaled by what its first run took for its
# setting, then once more on the line through those two runs (what it
# takes is not quite proportional to its setting); the last run is the one
# compared with that peer.
#
# Everything listens on 127.0.0.1; every run is bounded in time and in
# requests; every process started here is stopped and the work directory
# removed on exit, failure and Ctrl-C included.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
scripts=$root/loadtest/scripts
target_dir=${CARGO_TARGET_DIR:-$root/target}
outpost=$target_dir/release/outpost
loadtest=$target_dir/release/outpost-loadtest

seconds=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-3}
max_requests=${BENCH_REQUESTS:-2000000}
connections=${BENCH_CONNECTIONS:-32}
zipf=${BENCH_ZIPF:-1.0}
slow_ms=${BENCH_SLOW_MS:-150}
memory_mib=${BENCH_MEMORY_MIB:-256}
zipf_requests=${BENCH_ZIPF_REQUESTS:-400000}
zipf_memory_mib=${BENCH_ZIPF_MEMORY_MIB:-32}
proxies=${BENCH_PROXIES:-outpost nginx varnish}
scenarios=${BENCH_SCENARIOS:-hit-1k hit-100k zipf stampede https}
out=${BENCH_OUT:-$target_dir/bench}
keys=100000
stampede_clients=1000

say() { printf '%s\n' "$*" >&2; }
die() { say "bench: $*"; exit 1; }

# --- What must be there --------------------------------------------------
for tool in nginx varnishd python3 openssl curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (make bench installs it)"
done
for bin in "$outpost" "$loadtest"; do
    [ -x "$bin" ] || die "$bin is missing: cargo build --release -p outpost-edge -p outpost-loadtest --bin outpost --bin outpost-loadtest"
done

# --- Work directory and clean-up ----------------------------------------
# On tmpfs when there is one, except nginx's cache: that goes where its
# users keep it, on the disk's file system (hot files then sit in the
# page cache), under the target directory.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    work=$(mktemp -d -p /dev/shm outpost-bench.XXXXXX)
else
    work=$(mktemp -d -t outpost-bench.XXXXXX)
fi
mkdir -p "$target_dir"
nginx_disk=$(mktemp -d -p "$target_dir" bench-nginx-cache.XXXXXX)
started=()   # pids of every process started here, for the clean-up

# nginx started by root runs its workers as nobody, who could not read the
# work directory; keep them as whoever runs this.
nginx_user=""
[ "$(id -u)" -eq 0 ] && nginx_user="user root;"

# Stops one process: SIGTERM, up to 5 s to exit, then SIGKILL.
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${started[@]}"; do stop_pid "$pid"; done
    rm -rf "$work" "$nginx_disk"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The load generator opens 1000 connections in the stampede, and each
# proxy as many again to the origin (without coalescing).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# Free loopback ports, N of them (held open together, so distinct).
free_ports() {
    python3 "$scripts/free-ports.py" "$1"
}

# Waits (10 s at most) until URL answers with any HTTP status.
wait_http() {
    local url=$1
    for _ in $(seq 100); do
        [ "$(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)" != 000 ] && return 0
        sleep 0.1
    done
    die "nothing answers on $url"
}

# --- Shared pieces: certificate, objects, origin -------------------------
say "work directory $work"
mkdir -p "$work/origin/html" "$out/raw"
rm -f "$out"/raw/*.json "$out"/raw/*.txt

# A self-signed P-256 certificate for localhost, used by Outpost and nginx.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# The objects: 1 KiB and 100 KiB of bytes.
head -c 1024 /dev/zero | tr '\0' a > "$work/origin/html/1k"
head -c 102400 /dev/zero | tr '\0' b > "$work/origin/html/100k"

read -r origin_port slow_port < <(free_ports 2)
origin=127.0.0.1:$origin_port

# The slow origin, behind the static one.
python3 "$scripts/slow-origin.py" "$slow_port" "$slow_ms" 2> "$work/slow-origin.log" &
started+=($!)

# The origin: one nginx worker serving the files (every /obj/KEY is the
# 1 KiB file), cacheable for an hour, /slow/ passed on to the Python
# server, and one access-log line per request: the origin fetch count.
cat > "$work/origin/nginx.conf" <<NGINX
daemon off;
$nginx_user
worker_processes 1;
pid $work/origin/nginx.pid;
error_log $work/origin/error.log error;
events { worker_connections 16384; }
http {
    client_body_temp_path $work/origin/tmp-body;
    proxy_temp_path $work/origin/tmp-proxy;
    fastcgi_temp_path $work/origin/tmp-fastcgi;
    uwsgi_temp_path $work/origin/tmp-uwsgi;
    scgi_temp_path $work/origin/tmp-scgi;
    log_format fetch '\$request_uri';
    access_log $work/origin/fetches.log fetch buffer=64k flush=100ms;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    sendfile on;
    upstream slow { server 127.0.0.1:$slow_port; keepalive 64; }
    server {
        listen $origin backlog=4096;
        root $work/origin/html;
        default_type application/octet-stream;
        add_header Cache-Control "public, max-age=3600";
        location = /ping { access_log off; return 204; }
        location /obj/ { try_files /1k =404; }
        location /slow/ {
            proxy_pass http://slow;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGINX
nginx -c "$work/origin/nginx.conf" -p "$work/origin" -e "$work/origin/error.log" &
started+=($!)
wait_http "http://$origin/ping"

# Requests the origin has had so far (after its log buffer is flushed).
origin_fetches() {
    sleep 0.5
    wc -l < "$work/origin/fetches.log"
}

# --- The proxies ----------------------------------------------------------
# start_PROXY DIR HTTP_PORT TLS_PORT starts one with an empty cache and
# sets proxy_pid (the process to stop) and measured_pids (the processes
# whose CPU time and memory count, comma-separated).

start_outpost() {
    local dir=$1 port=$2 tls_port=$3
    cat > "$dir/outpost.yaml" <<YAML
listen:
  - addr: 127.0.0.1:$port
  - addr: 127.0.0.1:$tls_port
    tls:
      certificates:
        - { cert: $work/cert.pem, key: $work/key.pem, hosts: [localhost] }
admin: { addr: "127.0.0.1:0" }
shutdown_grace: 1s
cache: { memory: ${cache_mib}MiB }
origins:
  origin:
    servers: [{ url: "http://$origin" }]
    max_idle_per_server: 128
    timeouts: { keepalive: 300s }
sites:
  - hosts: ["*"]
    origin: origin
YAML
    OUTPOST_ADMIN_TOKEN=unused RUST_LOG=warn \
        "$outpost" run --config "$dir/outpost.yaml" > "$dir/ready.json" 2> "$dir/outpost.log" &
    proxy_pid=$!
    started+=("$proxy_pid")
    wait_http "http://127.0.0.1:$port/ping"
    measured_pids=$proxy_pid
}

start_nginx() {
    local dir=$1 port=$2 tls_port=$3
    mkdir -p "$nginx_disk/${dir##*/}"
    ln -s "$nginx_disk/${dir##*/}" "$dir/cache"
    # Two workers, one per core, as Outpost's runtime has two threads.
    # The cache lock is nginx's request coalescing. Tuned for hits as its
    # users tune it: open_file_cache keeps the cache files' descriptors
    # open, and tcp_nopush sends a small answer's head and body in one
    # segment (not for large bodies, whose first segment would wait).
    cat > "$dir/nginx.conf" <<NGINX
daemon off;
$nginx_user
worker_processes 2;
worker_rlimit_nofile 65536;
pid $dir/nginx.pid;
error_log $dir/error.log error;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $dir/tmp-body;
    proxy_temp_path $dir/tmp-proxy;
    fastcgi_temp_path $dir/tmp-fastcgi;
    uwsgi_temp_path $dir/tmp-uwsgi;
    scgi_temp_path $dir/tmp-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 60s;
    ssl_session_cache shared:ssl:10m;
    # The cache manager holds max_size: every 10 ms it deletes what is
    # over (up to 10,000 files at a time), rather than 100 every 50 ms.
    proxy_cache_path $dir/cache levels=1:2 keys_zone=bench:32m max_size=${cache_mib}m
                     inactive=1h use_temp_path=off
                     manager_files=10000 manager_sleep=10ms manager_threshold=500ms;
    upstream origin { server $origin; keepalive 64; }
    map \$upstream_cache_status \$bench_cache_status {
        HIT "nginx; hit";
        default "nginx; fwd=miss";
    }
    server {
        listen 127.0.0.1:$port backlog=4096;
        listen 127.0.0.1:$tls_port ssl http2 backlog=4096;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_cache bench;
        proxy_cache_lock on;
        proxy_cache_lock_timeout 30s;
        add_header Cache-Status \$bench_cache_status;
        location / { proxy_pass http://origin; }
        location /100k { tcp_nopush off; proxy_pass http://origin; }
    }
}
NGINX
    nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" &
    proxy_pid=$!
    started+=("$proxy_pid")
    wait_http "http://127.0.0.1:$port/ping"
    # The master and the processes that serve and manage the cache; not
    # the cache loader, which ends on its own a minute after the start.
    local children
    children=$(ps -o pid=,args= --ppid "$proxy_pid" |
        awk '/worker process|cache manager/ {print $1}' | paste -sd, -)
    measured_pids=$proxy_pid,$children
}

start_varnish() {
    local dir=$1 port=$2
    # The built-in VCL does the rest: cache by the origin's Cache-Control,
    # coalesce misses on the waiting list.
    cat > "$dir/bench.vcl" <<VCL
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$origin_port"; }
sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.Cache-Status = "varnish; hit";
    } else {
        set resp.http.Cache-Status = "varnish; fwd=miss";
    }
}
VCL
    # -j none: no privilege separation (it would need the varnish users
    # to reach the work directory); -n keeps its state in the work dir.
    varnishd -F -j none -a "127.0.0.1:$port" -f "$dir/bench.vcl" \
        -s "malloc,${cache_mib}m" -n "$dir/state" > "$dir/varnish.log" 2>&1 &
    proxy_pid=$!
    started+=("$proxy_pid")
    wait_http "http://127.0.0.1:$port/ping"
    # The manager and its child (the cache process that does the work).
    measured_pids=$proxy_pid,$(ps -o pid= --ppid "$proxy_pid" | tr -d ' ' | paste -sd, -)
}

# --- The scenarios -------------------------------------------------------

# Proportional set size of the processes in PIDS (comma-separated), KiB.
pss_kib() {
    local pid total=0 kib
    for pid in ${1//,/ }; do
        kib=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
        total=$((total + ${kib:-0}))
    done
    echo "$total"
}

# The memory the proxy holds now, KiB: its PSS, plus nginx's cache files
# (they sit in the page cache, outside any process).
held_kib() {
    local dir=$1 files=0
    [ -e "$dir/cache" ] && files=$(du -skL "$dir/cache" | cut -f1)
    echo $(($(pss_kib "$measured_pids") + files))
}

# Samples held_kib every second (nginx's manager lets its files grow past
# max_size and cuts them back in bursts, so the end alone says little) and
# keeps the peak in FILE; runs until killed.
sample_peak() {
    local dir=$1 file=$2 peak=0 now
    while :; do
        now=$(held_kib "$dir")
        if [ "$now" -gt "$peak" ]; then
            peak=$now
            echo "$peak" > "$file"
        fi
        sleep 1
    done
}

# run_one SCENARIO PROXY [CACHE_MIB]: starts PROXY fresh (with a cache of
# CACHE_MIB, by default the scenario's), warms it where the scenario
# measures hits, runs the load, stops it, and records the origin fetches
# and, for zipf, the peak memory its cache took.
run_one() {
    local scenario=$1 proxy=$2 dir port tls_port fetches_before url held_before sampler=""
    local -a load
    if [ "$scenario" = https ] && [ "$proxy" = varnish ]; then
        return 0
    fi
    cache_mib=$memory_mib
    case $scenario in zipf*) cache_mib=$zipf_memory_mib ;; esac
    cache_mib=${3:-$cache_mib}
    dir=$work/$scenario-$proxy${round:+.r$round}
    mkdir -p "$dir"
    read -r port tls_port < <(free_ports 2)
    "start_$proxy" "$dir" "$port" "$tls_port"
    say "== $scenario / $proxy (pids $measured_pids, cache $cache_mib MiB)"

    local base=http://127.0.0.1:$port
    local common=(-q --proxy-pid "$measured_pids" -d "${seconds}s" -r "$max_requests" -c "$connections")
    fetches_before=$(origin_fetches)
    held_before=$(held_kib "$dir")
    case $scenario in
        hit-1k | hit-100k)
            url=$base/${scenario#hit-}
            curl -s -o /dev/null --max-time 5 "$url"
            load=(--url "$url" "${common[@]}")
            ;;
        zipf*)
            load=(--url "$base/" --keys "$keys" --zipf "$zipf" --path-template '/obj/{key}'
                -q --proxy-pid "$measured_pids" -d 120s -r "$zipf_requests" -c "$connections")
            ;;
        stampede)
            load=(--url "$base/slow/stampede" -q --proxy-pid "$measured_pids"
                -c "$stampede_clients" -r "$stampede_clients" -d 30s --timeout 30s)
            ;;
        https)
            url=https://127.0.0.1:$tls_port/1k
            curl -sk -o /dev/null --max-time 5 "$url"
            load=(--url "$url" -k --http1 "${common[@]}")
            ;;
        *) die "unknown scenario $scenario" ;;
    esac
    case $scenario in
        zipf*)
            echo "$held_before" > "$dir/peak"
            sample_peak "$dir" "$dir/peak" &
            sampler=$!
            started+=("$sampler")
            ;;
    esac
    # A round of a repeated scenario keeps its own report (see medians).
    local name=$scenario-$proxy${round:+.r$round}
    "$loadtest" "${load[@]}" --json "$out/raw/$name.json" > "$out/raw/$name.txt"
    if [ -n "$sampler" ]; then
        kill "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
    fi
    local fetches=$(($(origin_fetches) - fetches_before))
    if [ -n "${round:-}" ]; then
        printf '%s\t%s\t%s\t%s\n' "$scenario" "$proxy" "$round" "$fetches" >> "$work/rounds.tsv"
    else
        printf '%s\t%s\t%s\n' "$scenario" "$proxy" "$fetches" >> "$work/fetches.tsv"
    fi
    case $scenario in
        zipf*) printf '%s\t%s\t%s\t%s\n' "$scenario" "$proxy" "$cache_mib" \
            "$(($(cat "$dir/peak") - held_before))" >> "$work/memory.tsv" ;;
    esac
    sed 's/^/   /' "$out/raw/$name.txt" >&2
    stop_pid "$proxy_pid"
}

# equal_memory PEER: runs zipf on Outpost sized to take the memory PEER's
# cache took in its zipf run (scenario zipf-PEER).
equal_memory() {
    local peer=$1 target ratio first setting
    target=$(awk -F'\t' -v p="$peer" '$1 == "zipf" && $2 == p {print $4}' "$work/memory.tsv")
    ratio=$(awk -F'\t' '$1 == "zipf" && $2 == "outpost" {print $3 * 1024 / $4}' "$work/memory.tsv")
    [ -n "$target" ] && [ -n "$ratio" ] || return 0
    first=$(awk -v t="$target" -v r="$ratio" 'BEGIN {printf "%d", t * r / 1024}')
    run_one "zipf-$peer" outpost "$first"
    setting=$(awk -F'\t' -v t="$target" -v s="zipf-$peer" '
        $2 == "outpost" && $1 == "zipf" {s1 = $3; t1 = $4}
        $2 == "outpost" && $1 == s {s2 = $3; t2 = $4}
        END {
            if (t2 == t1) { printf "%d", s2; exit }
            v = s2 + (t - t2) * (s2 - s1) / (t2 - t1)
            printf "%d", (v < 1 ? 1 : v)
        }' "$work/memory.tsv")
    for f in memory fetches; do
        grep -v "^zipf-$peer	" "$work/$f.tsv" > "$work/$f.tsv.new" || true
        mv "$work/$f.tsv.new" "$work/$f.tsv"
    done
    run_one "zipf-$peer" outpost "$setting"
}

# medians SCENARIO: of each proxy's rounds of SCENARIO, the one with the
# median req/s becomes the scenario's report (and origin fetch count).
medians() {
    python3 - "$out/raw" "$1" "$work/rounds.tsv" "$work/fetches.tsv" <<'PY'
import glob, json, os, shutil, sys
raw, scenario, rounds_tsv, fetches_tsv = sys.argv[1:]
fetched = {}
with open(rounds_tsv) as f:
    for line in f:
        s, proxy, r, n = line.rstrip("\n").split("\t")
        if s == scenario:
            fetched[(proxy, r)] = n
by_proxy = {}
for path in glob.glob(os.path.join(raw, f"{scenario}-*.r*.json")):
    base = os.path.basename(path)[len(scenario) + 1:-len(".json")]
    proxy, r = base.rsplit(".r", 1)
    with open(path) as f:
        by_proxy.setdefault(proxy, []).append((json.load(f)["throughput_rps"], r))
with open(fetches_tsv, "a") as out:
    for proxy, runs in sorted(by_proxy.items()):
        runs.sort()
        _, r = runs[len(runs) // 2]
        for ext in ("json", "txt"):
            shutil.copy(os.path.join(raw, f"{scenario}-{proxy}.r{r}.{ext}"),
                        os.path.join(raw, f"{scenario}-{proxy}.{ext}"))
        out.write(f"{scenario}\t{proxy}\t{fetched.get((proxy, r), 0)}\n")
        rates = ", ".join(f"{rate:,.0f}" for rate, _ in runs)
        print(f"   {scenario} / {proxy}: req/s by round {rates}; median round {r}",
              file=sys.stderr)
PY
}

: > "$work/fetches.tsv"
: > "$work/memory.tsv"
: > "$work/rounds.tsv"
for scenario in $scenarios; do
    case $scenario in
        hit-1k | hit-100k | https) repeat=$rounds ;;
        *) repeat=1 ;;
    esac
    if [ "$repeat" -gt 1 ]; then
        for round in $(seq "$repeat"); do
            for proxy in $proxies; do
                run_one "$scenario" "$proxy"
            done
        done
        unset round
        medians "$scenario"
    else
        for proxy in $proxies; do
            run_one "$scenario" "$proxy"
        done
    fi
    # Outpost again for each peer, taking the memory that peer's cache
    # took: first its setting scaled by what its first run took for its
    # setting, then set again on the line through those two runs (setting
    # against memory taken); the second of these is the one reported.
    if [ "$scenario" = zipf ] && [[ " $proxies " == *" outpost "* ]]; then
        for peer in $proxies; do
            [ "$peer" = outpost ] && continue
            equal_memory "$peer"
        done
    fi
done

# --- The table -----------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
python3 "$scripts/bench-report.py" "$out" "$work/fetches.tsv" \
    "machine=$(nproc) cores, ${cpu_model:-unknown CPU}, Linux $(uname -r)" \
    "outpost=$("$outpost" --version)" \
    "nginx=$(nginx -v 2>&1)" \
    "varnish=$(varnishd -V 2>&1 | head -n 1)" \
    "settings=${seconds}s per run (cap $max_requests requests; hits: median of $rounds rounds), $connections connections, zipf s=$zipf over $keys keys ($zipf_requests requests, cache $zipf_memory_mib MiB), stampede $stampede_clients clients, slow origin ${slow_ms} ms, cache ${memory_mib} MiB" \
    "memory_tsv=$work/memory.tsv"
say "results: $out/results.md, $out/results.json, raw runs in $out/raw/"

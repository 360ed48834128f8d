#!/usr/bin/env bash
# Fuzzes the side API from its own description, docs/openapi.yaml, with
# schemathesis: no answer may be a 5xx, and every answer must have a status
# the document lists for its route, with the content type, headers and body
# schema the document gives for that status. Requests that break the
# schema must be refused, calls without the token must get 401, and other
# methods must get 405 with an Allow header.
#
#   loadtest/scripts/api-fuzz.sh          (make api-fuzz builds the binary first)
#
# What it does, everything on 127.0.0.1:
#   1. installs schemathesis (the version pinned below) from PyPI into a
#      virtualenv under target/api-fuzz/ unless it is there already;
#   2. starts two Outpost nodes on configs written into a temp dir, their
#      side API and proxy on port 0 (the addresses come from their `ready`
#      lines): a node on its own, with a disk tier so purges reach its
#      journal, and a node in a fleet of one on a nats-server of its own
#      (purge ids, `GET /purge/{id}`, `GET /cluster`). Both serve one site
#      (example.com and *.example.com, the hosts the document's examples
#      use) and take a full token and a token scoped to that site;
#   3. runs schemathesis three times, each bounded in test cases per route
#      and in time: on the node on its own with the full token, then with
#      the scoped one, then on the fleet node with the full token;
#   4. stops everything and fails when a run reported a failure, a node
#      died, or a node's log shows a panic.
#
# The binary is $OUTPOST_BIN, else target/debug/outpost. Needs python3 with
# its venv module and nats-server (Debian/Ubuntu: apt-get install python3
# python3-venv nats-server; `make api-fuzz` installs them). Tuning by
# environment:
#   API_FUZZ_EXAMPLES   test cases per route and phase (default 200)
#   API_FUZZ_SECONDS    hard limit on each schemathesis run (default 600)
#   API_FUZZ_SEED       seed, to replay a run (default: a new one, printed)
#   API_FUZZ_RUNS       which runs, of: alone-full alone-scoped fleet-full
#                       (default all three)
#   API_FUZZ_CHECKS     schemathesis checks, comma-separated (default: the
#                       list below; `all` adds positive_data_acceptance,
#                       which fails on URLs of hosts no site serves)
#   API_FUZZ_LOG        the nodes' RUST_LOG (default warn)
#   API_FUZZ_KEEP=1     keep the temp dir (configs, logs, JUnit and HAR
#                       reports of every run)
# Every process started here is stopped, and the temp dir removed, on exit,
# failure and Ctrl-C included.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5

root=$(cd "$(dirname "$0")/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
outpost=${OUTPOST_BIN:-$target_dir/debug/outpost}
examples=${API_FUZZ_EXAMPLES:-200}
seconds=${API_FUZZ_SECONDS:-600}
runs=${API_FUZZ_RUNS:-alone-full alone-scoped fleet-full}
seed=${API_FUZZ_SEED:-$(((RANDOM << 15) | RANDOM))}
venv=$target_dir/api-fuzz/venv

say() { echo "api-fuzz: $*" >&2; }

if [ ! -x "$outpost" ]; then
    say "no outpost binary at $outpost: build it with"
    say "  cargo build -p outpost-edge --bin outpost      (or run make api-fuzz)"
    exit 1
fi
if ! command -v nats-server >/dev/null 2>&1; then
    say "nats-server is missing (Debian/Ubuntu: apt-get install nats-server, or make api-fuzz)"
    exit 1
fi

# schemathesis, pinned, in a virtualenv of its own.
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        say "python3 with its venv module is missing (Debian/Ubuntu: apt-get install python3 python3-venv)"
        exit 1
    fi
    say "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/outpost-api-fuzz.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${API_FUZZ_KEEP:-}" = 1 ]; then
        say "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

full_token=fuzz-full-$RANDOM$RANDOM
scoped_token=fuzz-scoped-$RANDOM$RANDOM

# config NAME EXTRA: writes $work/NAME/outpost.yaml, EXTRA added at its end.
# The origin is never asked: schemathesis talks to the side API only.
config() {
    mkdir -p "$work/$1"
    cat >"$work/$1/outpost.yaml" <<EOF
listen:
  - addr: 127.0.0.1:0
admin:
  addr: 127.0.0.1:0
  token_env: API_FUZZ_FULL_TOKEN
  scoped_tokens:
    - token_env: API_FUZZ_SCOPED_TOKEN
      hosts: [example.com, "*.example.com"]
origins:
  app:
    servers:
      - url: http://127.0.0.1:9
sites:
  - hosts: [example.com, "*.example.com"]
    origin: app
    rules:
      - match: { path_prefix: /static/ }
        ttl: 1d
        key: { query: ignore }
$2
EOF
}

# start NAME: starts outpost on $work/NAME/outpost.yaml and sets `admin` to
# its side API's address once its `ready` line says it (30 s at most).
start() {
    local dir=$work/$1 pid
    API_FUZZ_FULL_TOKEN=$full_token API_FUZZ_SCOPED_TOKEN=$scoped_token RUST_LOG=${API_FUZZ_LOG:-warn} \
        "$outpost" run --config "$dir/outpost.yaml" >"$dir/stdout" 2>"$dir/outpost.log" </dev/null &
    pid=$!
    pids+=("$pid")
    admin=""
    for _ in $(seq 300); do
        admin=$(grep -s '"event":"ready"' "$dir/stdout" | sed -n 's/.*"admin":"\([^"]*\)".*/\1/p' | head -n 1 || true)
        [ -n "$admin" ] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            say "outpost ($1) exited before it was ready:"
            cat "$dir/outpost.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    if [ -z "$admin" ]; then
        say "outpost ($1) did not report ready within 30 s:"
        cat "$dir/outpost.log" >&2
        exit 1
    fi
    say "outpost ($1): pid $pid, side API on $admin"
}

# start_nats: nats-server with JetStream on a free port; sets `nats_url`.
start_nats() {
    local port pid
    mkdir -p "$work/nats"
    port=$(python3 "$root/loadtest/scripts/free-ports.py" 1)
    nats-server -a 127.0.0.1 -p "$port" -js -sd "$work/nats" >"$work/nats/log" 2>&1 </dev/null &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 200); do
        grep -qs "Server is ready" "$work/nats/log" && break
        if ! kill -0 "$pid" 2>/dev/null; then
            say "nats-server exited before it was ready:"
            cat "$work/nats/log" >&2
            exit 1
        fi
        sleep 0.1
    done
    if ! grep -qs "Server is ready" "$work/nats/log"; then
        say "nats-server did not get ready within 20 s"
        exit 1
    fi
    nats_url=nats://127.0.0.1:$port
}

config alone "cache:
  memory: 16MiB
  max_object_size: 1MiB
  disk:
    path: disk
    size: 64MiB"
start alone
alone_admin=$admin

start_nats
config fleet "cluster:
  node: fuzz
  nats:
    servers: [\"$nats_url\"]
  state_dir: fleet
  heartbeat: 1s"
start fleet
fleet_admin=$admin

checks=${API_FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method,allow_header_conformance,ignored_auth}
say "seed $seed, $examples test cases per route and phase, at most ${seconds}s a run"

failed=()
# fuzz NAME ADDR TOKEN: one schemathesis run on the side API at ADDR.
fuzz() {
    local name=$1 addr=$2 token=$3
    say "run '$name'"
    # From the temp dir: schemathesis and hypothesis leave caches in the
    # working directory.
    if ! (cd "$work" && timeout --kill-after=10 "$seconds" "$venv/bin/schemathesis" run "$root/docs/openapi.yaml" \
        --url "http://$addr" \
        --header "Authorization: Bearer $token" \
        --checks "$checks" \
        --max-examples "$examples" \
        --seed "$seed" \
        --workers 1 \
        --request-timeout 10 \
        --generation-database none \
        --no-color \
        --report junit,har \
        --report-junit-path "$work/$name.junit.xml" \
        --report-har-path "$work/$name.har"); then
        failed+=("$name")
    fi
}

for run in $runs; do
    case $run in
        alone-full) fuzz "$run" "$alone_admin" "$full_token" ;;
        alone-scoped) fuzz "$run" "$alone_admin" "$scoped_token" ;;
        fleet-full) fuzz "$run" "$fleet_admin" "$full_token" ;;
        *)
            say "no run named $run"
            failed+=("$run")
            ;;
    esac
done

for node in alone fleet; do
    if grep -q "panicked" "$work/$node/outpost.log"; then
        say "outpost ($node) panicked:"
        grep -A5 "panicked" "$work/$node/outpost.log" >&2
        failed+=("$node-panicked")
    fi
done
for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        say "process $pid died during the runs"
        failed+=("died-$pid")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    say "FAILED: ${failed[*]} (seed $seed: API_FUZZ_SEED=$seed replays it)"
    exit 1
fi
say "passed: $runs: no failure (seed $seed)"

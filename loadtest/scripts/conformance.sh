#!/usr/bin/env bash
# Outpost against the public HTTP cache conformance suite: http-cache-tests
# 0.4.5 on npm (Mark Nottingham's suite behind https://cache-tests.fyi).
# Starts the suite's origin server, Outpost in front of it and the suite's
# client against Outpost, then prints the outcomes by test kind (required,
# optimal, check) and every test that did not pass.
#
#   loadtest/scripts/conformance.sh [OUTPOST_BINARY] [TEST_ID]
#
# OUTPOST_BINARY defaults to the debug build (target/debug/outpost). With
# TEST_ID, runs that one test and prints the client's dump of its requests
# and responses instead of the summary. CONFORMANCE_RESULTS=PATH keeps the
# client's raw results (JSON) of a full run at PATH.
#
# The suite is not part of this repository: it is fetched at run time with
# `npm pack` (and its runtime dependencies with `npm install`, through a
# private npm cache) into a temporary directory that is removed on exit, so
# none of it is kept. Needs node, npm, python3 and curl, and the npm
# registry. The origin, Outpost and the client all listen and talk on
# 127.0.0.1 only; every wait is bounded (the whole suite: 1200 s) and
# everything started here is stopped on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
outpost=${1:-$target_dir/debug/outpost}
test_id=${2:-}
suite=http-cache-tests@0.4.5

for tool in node npm python3 curl timeout tar; do
    command -v "$tool" >/dev/null || { echo "conformance: $tool is missing" >&2; exit 1; }
done
[ -x "$outpost" ] || { echo "conformance: no Outpost binary at $outpost (cargo build first)" >&2; exit 1; }

work=$(mktemp -d -t outpost-conformance.XXXXXX)
pids=()
cleanup() {
    local pid alive
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    # Five seconds to exit on SIGTERM, then SIGKILL.
    for _ in $(seq 50); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "conformance: $*" >&2; }

# The suite, unpacked into $work/package, with its runtime dependencies.
# npm's cache goes into $work too, so nothing of the suite outlives the run.
export npm_config_cache=$work/npm-cache
say "fetching $suite from npm"
tarball=$(cd "$work" && timeout 120 npm pack "$suite" --silent | tail -n 1) || {
    say "npm pack $suite failed"
    exit 1
}
tar -xzf "$work/$tarball" -C "$work"
pkg=$work/package
(cd "$pkg" && timeout 300 npm install --omit=dev --ignore-scripts --no-audit --no-fund \
    --loglevel=error) > "$work/npm-install.log" 2>&1 || {
    cat "$work/npm-install.log" >&2
    say "npm install failed"
    exit 1
}

# The suite's tests as the client runs them (cli.mjs adds the
# Surrogate-Control suite to tests/index.mjs): id, kind, depends_on and
# whether the test is for browser caches only, for the summary.
(cd "$pkg" && node --input-type=module -e "
import tests from './tests/index.mjs'
import surrogate from './tests/surrogate-control.mjs'
tests.push(surrogate)
console.log(JSON.stringify(tests.map(suite => ({
  id: suite.id,
  name: suite.name,
  tests: suite.tests.map(t => ({
    id: t.id, name: t.name, kind: t.kind, depends_on: t.depends_on,
    browser_only: t.browser_only, browser_skip: t.browser_skip
  }))
}))))") > "$work/tests.json"
if [ -n "$test_id" ] && ! python3 - "$work/tests.json" "$test_id" <<'PY'
import json, sys
ids = {t["id"] for s in json.load(open(sys.argv[1])) for t in s["tests"]}
sys.exit(0 if sys.argv[2] in ids else 1)
PY
then
    say "no test $test_id in $suite"
    exit 1
fi

read -r origin_port proxy_port admin_port < <(python3 "$root/loadtest/scripts/free-ports.py" 3)

# The suite's origin server (server/server.mjs, configured the way
# `npm run server` does, from the npm_*config_* environment). It listens on
# every interface; the preloaded loopback.mjs binds it to 127.0.0.1.
cat > "$work/loopback.mjs" <<'JS'
import net from 'node:net'
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (port, ...rest) {
  if (rest.length === 0 && (typeof port === 'number' || typeof port === 'string')) {
    return listen.call(this, port, '127.0.0.1')
  }
  return listen.call(this, port, ...rest)
}
JS
(cd "$pkg" && npm_config_protocol=http npm_config_port=$origin_port \
    npm_config_pidfile=$work/origin.pid \
    exec node --import "file://$work/loopback.mjs" server/server.mjs) > "$work/origin.log" 2>&1 &
origin_pid=$!
pids+=("$origin_pid")
# Ready once it answers anything (10 s at most).
origin_up=0
for _ in $(seq 100); do
    kill -0 "$origin_pid" 2>/dev/null || break
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$origin_port/state/none"; then
        origin_up=1
        break
    fi
    sleep 0.1
done
if [ "$origin_up" -eq 0 ]; then
    cat "$work/origin.log" >&2
    say "the suite's origin server did not start"
    exit 1
fi

# Outpost in front of it, ready once its admin API answers (10 s at most).
cat > "$work/outpost.yaml" <<YAML
listen: [{addr: "127.0.0.1:$proxy_port"}]
admin: {addr: "127.0.0.1:$admin_port"}
origins:
  app:
    servers:
      - url: http://127.0.0.1:$origin_port
sites:
  - hosts: ["*"]
    origin: app
YAML
OUTPOST_ADMIN_TOKEN=unused RUST_LOG=${RUST_LOG:-warn} \
    "$outpost" run --config "$work/outpost.yaml" > "$work/outpost.log" 2>&1 &
outpost_pid=$!
pids+=("$outpost_pid")
outpost_up=0
for _ in $(seq 100); do
    kill -0 "$outpost_pid" 2>/dev/null || break
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$admin_port/stats"; then
        outpost_up=1
        break
    fi
    sleep 0.1
done
if [ "$outpost_up" -eq 0 ]; then
    cat "$work/outpost.log" >&2
    say "outpost did not start"
    exit 1
fi

# The suite's client (cli.mjs, configured the way test-host.sh's
# `npm run cli --base=... --id=...` does): one test with its dump, or all of
# them with the results as JSON on stdout. It runs in the background so that
# a signal to this script stops it at once (the trap above).
base=http://127.0.0.1:$proxy_port
if [ -n "$test_id" ]; then
    say "running $test_id against Outpost at $base"
    (cd "$pkg" && npm_config_base=$base npm_config_id=$test_id \
        exec timeout 300 node --no-warnings cli.mjs) &
    pids+=($!)
    rc=0
    wait "$!" || rc=$?
    [ "$rc" -eq 124 ] && say "the client timed out (300 s)"
    exit "$rc"
fi

say "running $suite against Outpost at $base"
start=$SECONDS
(cd "$pkg" && npm_config_base=$base npm_config_id='' npm_package_config_id='' \
    exec timeout 1200 node --no-warnings cli.mjs) > "$work/results.json" 2> "$work/client.log" &
pids+=($!)
rc=0
wait "$!" || rc=$?
if [ "$rc" -ne 0 ] || ! python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$work/results.json" 2>/dev/null; then
    cat "$work/client.log" >&2
    [ "$rc" -eq 124 ] && say "the client timed out (1200 s)"
    say "the client produced no results (exit status $rc)"
    exit 1
fi
say "suite ran in $((SECONDS - start)) s"
if [ -n "${CONFORMANCE_RESULTS:-}" ]; then
    cp "$work/results.json" "$CONFORMANCE_RESULTS"
    say "raw results in $CONFORMANCE_RESULTS"
fi
echo "$suite against $outpost"
python3 "$root/loadtest/scripts/conformance-summary.py" "$work/tests.json" "$work/results.json"

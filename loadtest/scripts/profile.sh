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

body_bytes=$body
# shellcheck source=single.sh
. "$root/loadtest/scripts/single.sh"
start_origin
start_outpost 256MiB
curl -s -o /dev/null "http://127.0.0.1:$proxy_port/object"

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

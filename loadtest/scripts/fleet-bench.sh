#!/usr/bin/env bash
# The fleet benchmark: three Outpost nodes (a, b, c) on one nats-server
# with JetStream, in front of a Python origin, everything on 127.0.0.1.
#
#   loadtest/scripts/fleet-bench.sh
#   loadtest/scripts/fleet-bench.sh --demo   (make fleet-demo: the fleet
#                                            with the shield on, kept until Ctrl-C)
#
# Scenarios (fleet-bench.py has the details):
#   1  300 purges one at a time, round-robin over the nodes: how long until
#      every member applied each (max(members[].applied_ms) - accepted_ms)
#   2  10,000 purges from 32 client threads: the burst's length and rate,
#      answers with queued=true, and the same propagation figures for
#      every 10th purge
#   3  300 objects, each requested once on every node (24 threads,
#      shuffled): origin fetches per object, shield off (~3) and on (~1)
#   4  with the shield on: an owner's hit as a non-owner sees it, against
#      a local hit
#
# The binary is $OUTPOST_BIN, else target/release/outpost, else
# target/debug/outpost (with a warning: a debug build's figures are not to
# be quoted). Needs python3 and nats-server (Debian/Ubuntu: apt-get install
# nats-server, or `make deps`). Takes two to three minutes. Prints a table
# on stdout, then one line of JSON; progress goes to stderr. Sizes can be
# changed by environment (FLEET_SINGLE_PURGES, FLEET_BURST_PURGES,
# FLEET_BURST_THREADS, FLEET_OBJECTS, FLEET_CLIENT_THREADS); FLEET_KEEP=1
# keeps the work directory with the configs and logs.
#
# Every loop is bounded in count and in time; every process started is
# stopped and the work directory removed on exit, failure and Ctrl-C
# included. Exits 1 when a request fails or a purge is never applied
# everywhere.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}

if [ -n "${OUTPOST_BIN:-}" ]; then
    outpost=$OUTPOST_BIN
    case "$outpost" in
        */debug/*) build=debug ;;
        */release/*) build=release ;;
        *) build=given ;;
    esac
elif [ -x "$target_dir/release/outpost" ]; then
    outpost=$target_dir/release/outpost
    build=release
elif [ -x "$target_dir/debug/outpost" ]; then
    outpost=$target_dir/debug/outpost
    build=debug
else
    echo "fleet-bench: no outpost binary: set OUTPOST_BIN, or build one with" >&2
    echo "  cargo build --release -p outpost-edge --bin outpost" >&2
    exit 1
fi
if [ ! -x "$outpost" ]; then
    echo "fleet-bench: $outpost is not an executable file" >&2
    exit 1
fi
if [ "$build" = debug ]; then
    echo "fleet-bench: WARNING: $outpost is a debug build: its figures are not to be quoted" >&2
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "fleet-bench: python3 is missing (Debian/Ubuntu: apt-get install python3)" >&2
    exit 1
fi
if ! command -v nats-server >/dev/null 2>&1; then
    echo "fleet-bench: nats-server is missing: install it with" >&2
    echo "  sudo apt-get install nats-server     (Debian/Ubuntu; or: make deps)" >&2
    exit 1
fi

# The Python side starts, and stops on exit, everything else.
exec python3 "$root/loadtest/scripts/fleet-bench.py" --outpost "$outpost" --build "$build" "$@"

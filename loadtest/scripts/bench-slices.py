"""Slices benchmark (issue 22): a 1 GiB object read by 32 clients that seek
to random offsets, side by side in one run:

  outpost, slice: 1MiB   the rule slices: each seek fetches (or finds
                         stored) the aligned 1 MiB slices it lands in;
  outpost, no slice      each range is asked of the origin as it is, and
                         the URL's latest piece is kept (partial content);
  nginx, slice 1m        nginx's slice module as its documentation sets it
                         up (slice 1m; the slice range in the cache key and
                         in the Range sent upstream), with proxy_cache_lock
                         on as its users run a cache (concurrent misses on
                         one slice wait for one fetch), when the installed
                         nginx has the module.

Two workloads, the same offsets for every contender in a round:
  hot      viewers seeking to popular points: offsets near one of 256 spots
           (a spot, then up to 1 MiB further), as many viewers jump to the
           same chapters;
  uniform  offsets anywhere in the object: nothing repeats, which shows
           what slicing costs when it saves nothing.

Every client keeps one connection, makes BENCH_SEEKS requests (40) of
BENCH_READ bytes (256 KiB) each, and checks every byte it gets. Measured:
the origin's requests and body bytes, time to first byte (request sent to
the first byte of the response head) at p50 and p99, wall time, and the
CPU time (user and system, from /proc) of the proxy's processes. The
origin is in this script (asyncio, range-capable, keep-alive) and counts
what it sends; the object is a pattern computed from the offset, so it
never sits in memory or on disk.

    python3 loadtest/scripts/bench-slices.py      (or: make bench-slices)

BENCH_ROUNDS (3) rounds; the table has each contender's median round.
BENCH_CONTENDERS ("outpost, slice: 1MiB;nginx, slice 1m") and
BENCH_WORKLOADS ("hot") pick some.
Everything listens on 127.0.0.1; every process started here is stopped on
exit. Writes the table and the raw rounds to BENCH_OUT (target/bench-slices).
"""

import asyncio
import json
import os
import random
import shutil
import subprocess
import tempfile
import time

from benchlib import cpu_seconds, free_ports, log, start, start_outpost, stop, stop_all, wait_http, workers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
OUTPOST = os.environ.get("OUTPOST", os.path.join(TARGET, "release", "outpost"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))
SEEKS = int(os.environ.get("BENCH_SEEKS", "40"))
READ = int(os.environ.get("BENCH_READ", str(256 << 10)))
OBJECT = int(os.environ.get("BENCH_OBJECT", str(1 << 30)))
OUT = os.environ.get("BENCH_OUT", os.path.join(TARGET, "bench-slices"))
# No run may take longer than this (seconds).
RUN_LIMIT = 300

# The object's byte at offset i is PATTERN[i % len(PATTERN)]; the length
# is prime, so no slice boundary lines up with the pattern.
PATTERN_LEN = 1_048_573
PATTERN = random.Random(7).randbytes(PATTERN_LEN)
DOUBLED = PATTERN + PATTERN





def expected(first, length):
    """The object's bytes first..first+length."""
    out = bytearray()
    at = first
    while len(out) < length:
        start = at % PATTERN_LEN
        take = min(length - len(out), PATTERN_LEN)
        out += DOUBLED[start:start + take]
        at += take
    return bytes(out)


class Origin:
    """A range-capable origin for one object, counting what it sends."""

    def __init__(self):
        self.requests = 0
        self.bytes = 0

    async def serve(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                fields = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        fields[name.strip().lower()] = value.strip()
                self.requests += 1
                first, last, status = 0, OBJECT - 1, 200
                spec = fields.get("range", "")
                if spec.startswith("bytes=") and "," not in spec:
                    a, b = spec[6:].split("-", 1)
                    if a:
                        first, last = int(a), min(int(b) if b else OBJECT - 1, OBJECT - 1)
                    else:
                        first, last = max(OBJECT - int(b), 0), OBJECT - 1
                    status = 206
                if first > last or first >= OBJECT:
                    writer.write(f"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{OBJECT}\r\nContent-Length: 0\r\n\r\n".encode())
                    await writer.drain()
                    continue
                length = last - first + 1
                head = [
                    f"HTTP/1.1 {status} {'Partial Content' if status == 206 else 'OK'}",
                    "Content-Type: video/mp4",
                    "Cache-Control: public, max-age=3600",
                    'ETag: "movie-v1"',
                    "Last-Modified: Tue, 01 Dec 2026 00:00:00 GMT",
                    "Accept-Ranges: bytes",
                    f"Content-Length: {length}",
                ]
                if status == 206:
                    head.append(f"Content-Range: bytes {first}-{last}/{OBJECT}")
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
                at = first
                while at <= last:
                    take = min(last - at + 1, 256 << 10)
                    writer.write(expected(at, take))
                    self.bytes += take
                    at += take
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def client(port, host, offsets, ttfbs, problems):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for first in offsets:
            last = min(first + READ, OBJECT) - 1
            sent = time.perf_counter()
            writer.write(f"GET /v/movie.mp4 HTTP/1.1\r\nHost: {host}\r\nRange: bytes={first}-{last}\r\n\r\n".encode())
            await writer.drain()
            status_line = await reader.readline()
            ttfbs.append(time.perf_counter() - sent)
            head = (status_line + await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            length = 0
            for line in head.split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length)
            if " 206 " not in status_line.decode() or body != expected(first, last - first + 1):
                problems.append(f"{first}-{last}: {status_line!r}, {len(body)} bytes")
    finally:
        writer.close()


def offsets_for(workload, seed):
    rng = random.Random(seed)
    spots = [rng.randrange(0, OBJECT - (2 << 20)) for _ in range(256)]
    plan = []
    for _ in range(CLIENTS):
        if workload == "hot":
            plan.append([rng.choice(spots) + rng.randrange(0, 1 << 20) for _ in range(SEEKS)])
        else:
            plan.append([rng.randrange(0, OBJECT - READ) for _ in range(SEEKS)])
    return plan








def nginx_has_slice():
    nginx = shutil.which("nginx")
    if not nginx:
        return False
    info = subprocess.run([nginx, "-V"], capture_output=True, text=True).stderr
    return "http_slice_module" in info


def start_sliced_outpost(work, port, origin_port, sliced):
    slice_line = "        slice: 1MiB\n" if sliced else ""
    path = os.path.join(work, f"outpost-{port}.yaml")
    top = f"""listen: [{{ addr: "127.0.0.1:{port}" }}]
cache:
  memory: 2GiB
  max_object_size: 2GiB
"""
    rules = f"""    rules:
      - match: {{ path_prefix: /v/ }}
{slice_line}        ttl: 1h
"""
    process = start_outpost(OUTPOST, path, origin_port, top, rules)
    wait_http(f"http://127.0.0.1:{port}/ping")
    return process


def start_nginx(work, port, origin_port):
    root = os.path.join(work, f"nginx-{port}")
    os.makedirs(root)
    user = "user root;" if os.getuid() == 0 else ""
    temp = "\n".join(f"{k}_temp_path {root}/tmp-{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    with open(os.path.join(root, "nginx.conf"), "w") as f:
        f.write(f"""daemon off; {user} worker_processes 2; pid {root}/nginx.pid;
error_log {root}/error.log error; events {{ worker_connections 4096; }}
http {{ {temp} access_log off; keepalive_requests 1000000; sendfile on;
  proxy_cache_path {root}/cache levels=1:2 keys_zone=slices:32m max_size=4g inactive=1h use_temp_path=off;
  upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port} backlog=4096;
    location / {{
      slice 1m;
      proxy_cache slices;
      proxy_cache_key $uri$is_args$args$slice_range;
      proxy_set_header Range $slice_range;
      proxy_cache_valid 200 206 1h;
      proxy_cache_lock on;
      proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_pass http://origin;
    }}
  }} }}
""")
    process = start(["nginx", "-c", f"{root}/nginx.conf", "-p", root, "-e", f"{root}/error.log"])
    wait_http(f"http://127.0.0.1:{port}/ping")
    return process


async def one_run(name, work, workload, seed):
    origin = Origin()
    server = await asyncio.start_server(origin.serve, "127.0.0.1", 0)
    origin_port = server.sockets[0].getsockname()[1]
    (port,) = free_ports(1)
    loop = asyncio.get_running_loop()
    if name == "nginx, slice 1m":
        process = await loop.run_in_executor(None, start_nginx, work, port, origin_port)
    else:
        sliced = name == "outpost, slice: 1MiB"
        process = await loop.run_in_executor(None, start_sliced_outpost, work, port, origin_port, sliced)
    pids = [process.pid] + (workers(process.pid) if name.startswith("nginx") else [])
    # What starting cost the origin (the readiness probe) is not counted.
    origin.requests, origin.bytes = 0, 0
    cpu_before = cpu_seconds(pids)
    ttfbs, problems = [], []
    began = time.perf_counter()
    try:
        await asyncio.wait_for(
            asyncio.gather(*(client(port, "example.com", offsets, ttfbs, problems)
                             for offsets in offsets_for(workload, seed))),
            RUN_LIMIT,
        )
    finally:
        wall = time.perf_counter() - began
        cpu = cpu_seconds(pids) - cpu_before
        await loop.run_in_executor(None, stop, process)
        server.close()
    ttfbs.sort()
    return {
        "contender": name,
        "workload": workload,
        "seed": seed,
        "requests": len(ttfbs),
        "problems": problems[:5],
        "origin_requests": origin.requests,
        "origin_mib": origin.bytes / (1 << 20),
        "client_mib": len(ttfbs) * READ / (1 << 20),
        "ttfb_p50_ms": 1000 * ttfbs[len(ttfbs) // 2],
        "ttfb_p99_ms": 1000 * ttfbs[min(len(ttfbs) - 1, int(len(ttfbs) * 0.99))],
        "wall_s": wall,
        "proxy_cpu_s": cpu,
    }


async def main():
    if not os.access(OUTPOST, os.X_OK):
        raise SystemExit(f"no Outpost binary at {OUTPOST} (make release first)")
    contenders = ["outpost, slice: 1MiB", "outpost, no slice"]
    if nginx_has_slice():
        contenders.append("nginx, slice 1m")
    else:
        log("nginx with the slice module is not installed: its row is left out")
    chosen = os.environ.get("BENCH_CONTENDERS")
    if chosen:
        contenders = [c for c in contenders if c in chosen.split(";")]
    workloads = os.environ.get("BENCH_WORKLOADS", "hot uniform").split()
    os.makedirs(OUT, exist_ok=True)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="outpost-bench-slices.") as work:
        for workload in workloads:
            for r in range(ROUNDS):
                order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
                for name in order:
                    result = await one_run(name, work, workload, seed=1000 * r + 1)
                    log(json.dumps(result))
                    if result["problems"]:
                        raise SystemExit(f"{name}: wrong answers: {result['problems']}")
                    rounds.append(result)
    with open(os.path.join(OUT, "rounds.json"), "w") as f:
        json.dump(rounds, f, indent=1)
    lines = [
        f"{CLIENTS} clients x {SEEKS} seeks of {READ >> 10} KiB into a {OBJECT >> 20} MiB object; "
        f"median of {ROUNDS} rounds by wall time",
        "",
        "| workload | contender | origin requests | origin MiB | MiB to clients | TTFB p50 | TTFB p99 | wall | proxy CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for workload in workloads:
        for name in contenders:
            mine = sorted((r for r in rounds if r["contender"] == name and r["workload"] == workload),
                          key=lambda r: r["wall_s"])
            m = mine[len(mine) // 2]
            lines.append(
                f"| {workload} | {name} | {m['origin_requests']} | {m['origin_mib']:.0f} | {m['client_mib']:.0f} "
                f"| {m['ttfb_p50_ms']:.1f} ms | {m['ttfb_p99_ms']:.1f} ms | {m['wall_s']:.1f} s | {m['proxy_cpu_s']:.2f} s |"
            )
    table = "\n".join(lines)
    with open(os.path.join(OUT, "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    finally:
        stop_all()

"""Edge-rule benchmark (issue 20), side by side in one run, driven by wrk:

  text-100k   hits on a 100 KiB text page by clients that accept gzip:
              Outpost with compression (the stored gzip copy; and the brotli
              one, for clients that accept br), Outpost with compression off
              (identity), and nginx with `gzip on`, which compresses every
              hit (level 5, the usual production setting).
  rules-1k    hits on a 1 KiB object through a rule with none, through a
              rule with ten edge actions with fixed values (three request
              fields set, two removed, one added; three response fields set,
              one removed), and through the same ten with two of the values
              templates ({client}, {request_id}), on one Outpost.

    python3 loadtest/scripts/bench-edge.py        (or: make bench-edge)

BENCH_SCENARIOS picks some ("text-100k rules-1k"). Each set of runs alternates for BENCH_ROUNDS rounds (3), each run
BENCH_SECONDS long (6) with BENCH_CONNECTIONS connections (32) on one wrk
thread; the table has the median round by req/s, and CPU per request from
/proc (user + system time of every process of the proxy, over the run, by
the requests wrk counted). Everything listens on 127.0.0.1; every process
started here is stopped on exit. Prints a markdown table; writes it and the
raw rounds to BENCH_OUT (target/bench-edge).
"""

import json
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile

from benchlib import cpu_seconds, free_ports, log, start, start_outpost, stop_all, wait_http, workers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
OUTPOST = os.path.join(TARGET, "release", "outpost")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "6"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
OUT = os.environ.get("BENCH_OUT", os.path.join(TARGET, "bench-edge"))















def wrk(url, headers, pids):
    args = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s"]
    for header in headers:
        args += ["-H", header]
    before = cpu_seconds(pids)
    output = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pids) - before
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", output)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} error answers from {url}")
    return {
        "requests": requests,
        "rps": requests / SECONDS,
        "cpu_us": cpu / requests * 1e6,
        "transfer": transfer.group(1) + transfer.group(2) if transfer else "?",
    }


def page():
    # Text that compresses as pages do (about 4:1 with gzip), not to nothing.
    words = ("edge cache origin purge stale fresh vary header request response "
             "client server body key tag host path query ttl hit miss").split()
    rng = random.Random(20)
    lines, size = [], 0
    while size < 100 * 1024:
        line = " ".join(rng.choice(words) + str(rng.randrange(1000)) for _ in range(12)) + "\n"
        lines.append(line)
        size += len(line)
    return "".join(lines)[: 100 * 1024]


def main():
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (make bench-edge installs it)")
    if not os.access(OUTPOST, os.X_OK):
        raise SystemExit(f"{OUTPOST} is missing: cargo build --release -p outpost-edge --bin outpost")
    work = tempfile.mkdtemp(prefix="outpost-bench-edge.", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        run(work)
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)


def run(work):
    os.makedirs(os.path.join(work, "html"))
    os.makedirs(os.path.join(work, "n"))
    with open(os.path.join(work, "html", "page.txt"), "w") as f:
        f.write(page())
    with open(os.path.join(work, "html", "1k.bin"), "wb") as f:
        f.write(b"a" * 1024)
    user = "user root;" if os.getuid() == 0 else ""
    origin_port, outpost_port, identity_port, nginx_port = free_ports(4)
    temp = lambda d: "\n".join(f"{k}_temp_path {d}/tmp-{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    with open(os.path.join(work, "origin.conf"), "w") as f:
        f.write(f"""daemon off; {user} worker_processes 1; pid {work}/origin.pid;
error_log {work}/origin-error.log error; events {{ worker_connections 4096; }}
http {{ {temp(work)} access_log off; keepalive_requests 1000000; sendfile on;
  types {{ text/plain txt; application/octet-stream bin; }}
  server {{ listen 127.0.0.1:{origin_port}; root {work}/html;
    add_header Cache-Control "public, max-age=3600";
    location = /ping {{ return 204; }}
    location /plain/ {{ try_files /1k.bin =404; }}
    location /ruled/ {{ try_files /1k.bin =404; }}
    location /fixed/ {{ try_files /1k.bin =404; }}
  }} }}
""")
    start(["nginx", "-c", f"{work}/origin.conf", "-p", work, "-e", f"{work}/origin-error.log"])
    wait_http(f"http://127.0.0.1:{origin_port}/ping")

    # Ten actions on /ruled/, none on /plain/.
    rules = """    rules:
      - match: { path_prefix: /ruled/ }
        request_headers:
          set: { X-Edge: outpost, X-Tier: gold, X-Client: "{client}" }
          remove: [Cookie, X-Debug]
          add: { X-Trace: "{request_id}" }
        response_headers:
          set: { X-Frame-Options: DENY, X-Content-Type-Options: nosniff, Strict-Transport-Security: max-age=600 }
          remove: [X-Powered-By]
      - match: { path_prefix: /fixed/ }
        request_headers:
          set: { X-Edge: outpost, X-Tier: gold, X-Zone: eu }
          remove: [Cookie, X-Debug]
          add: { X-Trace: edge }
        response_headers:
          set: { X-Frame-Options: DENY, X-Content-Type-Options: nosniff, Strict-Transport-Security: max-age=600 }
          remove: [X-Powered-By]
"""

    def outpost(port, name, compression):
        top = f"""listen: [{{ addr: "127.0.0.1:{port}" }}]
{compression}
"""
        process = start_outpost(OUTPOST, os.path.join(work, f"{name}.yaml"), origin_port, top, rules)
        wait_http(f"http://127.0.0.1:{port}/plain/")
        return [process.pid]

    compressed = outpost(outpost_port, "compressed", "compression: { levels: { gzip: 6, br: 6 } }")
    identity = outpost(identity_port, "identity", "compression: { enabled: false }")

    with open(os.path.join(work, "nginx.conf"), "w") as f:
        f.write(f"""daemon off; {user} worker_processes 2; pid {work}/nginx.pid;
error_log {work}/nginx-error.log error; events {{ worker_connections 4096; }}
http {{ {temp(work + '/n')} access_log off; keepalive_requests 1000000;
  sendfile on; tcp_nopush off;
  gzip on; gzip_comp_level 5; gzip_min_length 1024; gzip_proxied any; gzip_vary on;
  gzip_types text/plain text/css application/json application/javascript text/xml application/xml image/svg+xml;
  proxy_cache_path {work}/ncache levels=1:2 keys_zone=bench:32m max_size=256m inactive=1h use_temp_path=off;
  open_file_cache max=10000 inactive=60s;
  upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{nginx_port} backlog=4096;
    location / {{ proxy_pass http://origin; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_cache bench; }}
  }} }}
""")
    nginx = start(["nginx", "-c", f"{work}/nginx.conf", "-p", work, "-e", f"{work}/nginx-error.log"])
    wait_http(f"http://127.0.0.1:{nginx_port}/plain/")
    nginx_pids = [nginx.pid] + workers(nginx.pid)

    gzip, br = ["Accept-Encoding: gzip"], ["Accept-Encoding: gzip, br"]
    contenders = {
        "text-100k": [
            ("Outpost, stored gzip copy", f"http://127.0.0.1:{outpost_port}/page.txt", gzip, compressed),
            ("Outpost, stored brotli copy", f"http://127.0.0.1:{outpost_port}/page.txt", br, compressed),
            ("Outpost, compression off (identity)", f"http://127.0.0.1:{identity_port}/page.txt", gzip, identity),
            ("nginx, gzip on (level 5, every hit)", f"http://127.0.0.1:{nginx_port}/page.txt", gzip, nginx_pids),
        ],
        "rules-1k": [
            ("Outpost, rule with none", f"http://127.0.0.1:{outpost_port}/plain/1k", [], compressed),
            ("Outpost, ten actions without templates", f"http://127.0.0.1:{outpost_port}/fixed/1k", [], compressed),
            ("Outpost, ten actions, two of them templates", f"http://127.0.0.1:{outpost_port}/ruled/1k", [], compressed),
        ],
    }
    wanted = os.environ.get("BENCH_SCENARIOS", "text-100k rules-1k").split()
    results = {}
    for scenario, runs in contenders.items():
        if scenario not in wanted:
            continue
        for name, url, headers, pids in runs:
            # Warm: the first answer fills the cache; check what is served.
            answer = wait_http(url, dict(h.split(": ", 1) for h in headers))
            log(f"{scenario} / {name}: Content-Encoding {answer.get('Content-Encoding', '-')}")
        for r in range(ROUNDS):
            # Each round starts with a different contender, so that none
            # always runs first (or last) after the others warmed the machine.
            for name, url, headers, pids in runs[r % len(runs):] + runs[:r % len(runs)]:
                result = wrk(url, headers, pids)
                results.setdefault(scenario, {}).setdefault(name, []).append(result)
                log(f"  round {r + 1} {name}: {result['rps']:,.0f} req/s, {result['cpu_us']:.1f} us CPU/req, {result['transfer']}/s")

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "rounds.json"), "w") as f:
        json.dump(results, f, indent=1)
    lines = []
    for scenario, by_name in results.items():
        first = None
        lines += [f"| {scenario} | req/s | CPU per request | transferred/s | CPU vs first row (paired) |", "|---|---|---|---|---|"]
        for name, rounds in by_name.items():
            median = sorted(rounds, key=lambda x: x["rps"])[len(rounds) // 2]
            first = first or rounds
            # The ratio within each round (runs seconds apart), then the
            # median of those: steadier on a shared machine than a ratio
            # of two medians taken from different rounds.
            paired = statistics.median(a["cpu_us"] / b["cpu_us"] for a, b in zip(rounds, first))
            lines.append(f"| {name} | {median['rps']:,.0f} | {median['cpu_us']:.1f} us | {median['transfer']} | {paired:.3f}x |")
        lines.append("")
    cpu = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*: (.*)", cpu)
    lines.append(f"{os.cpu_count()} cores, {model.group(1) if model else 'unknown CPU'}; wrk -t1 -c{CONNECTIONS} -d{SECONDS}s, median of {ROUNDS} rounds by req/s; "
                 + subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip())
    table = "\n".join(lines)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()

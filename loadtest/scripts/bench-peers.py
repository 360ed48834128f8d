"""Cache hits against the peers at their best (issue 18), driven by load
generators that are not ours, side by side in one run:

  Outpost   its defaults: 2 runtime workers, memory tier;
  nginx     configured as its users configure it for hits: 2 workers,
            sendfile with tcp_nopush for small objects and without for
            large ones (headers and body in one write where it helps),
            open_file_cache for the cache files, the cache on the disk's
            file system (not tmpfs), keepalive_requests high,
            proxy_cache_lock on, HTTP/2 over TLS with a session cache;
  Varnish   malloc storage, its default two thread pools (no TLS, so no
            HTTPS row).

Scenarios (every run of a scenario is warmed by one request first):
  1k-h1      1 KiB hits, HTTP/1.1 keep-alive: wrk -t1 -c64
  100k-h1    100 KiB hits, HTTP/1.1 keep-alive: wrk -t1 -c64
  1k-h2      1 KiB hits, HTTPS HTTP/2: h2load -t1 -c32 -m10 (Outpost, nginx)
  1k-check   1 KiB hits through our own generator (outpost-loadtest, -c64),
             to compare its ratio Outpost/nginx with wrk's: the table says
             when the two disagree by more than 10%.
  1k-https   1 KiB hits on Outpost over HTTPS by protocol, one generator
             for all three (outpost-loadtest -c32, 10 streams a connection
             on h2 and h3): HTTP/1.1, HTTP/2, and HTTP/3 on a listener with
             `quic: true` (nginx's QUIC build is not in Debian 12, so it has
             no row); with h2load on h2 and h3 too when it can speak them.

CPU per request is user + system time from /proc of every process of the
proxy (nginx's master and workers, Varnish's manager and child) over the
run, divided by the requests the generator counted. Each scenario runs
BENCH_ROUNDS rounds (3), each starting with another proxy, each run
BENCH_SECONDS long (6); the table has every proxy's median round by req/s
and, for the ratios to nginx, the median of the ratios within each round
(steadier on a shared machine than a ratio of medians).

    python3 loadtest/scripts/bench-peers.py      (or: make bench-peers)

BENCH_SCENARIOS picks some ("1k-h1 1k-h2"). Everything listens on 127.0.0.1;
every process started here is stopped on exit. Prints a markdown table and
writes it, with the raw rounds, to BENCH_OUT (target/bench-peers).
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile

from benchlib import cpu_seconds, free_ports, log, start, start_outpost, stop_all, wait_http

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
OUTPOST = os.path.join(TARGET, "release", "outpost")
LOADTEST = os.path.join(TARGET, "release", "outpost-loadtest")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "6"))
OUT = os.environ.get("BENCH_OUT", os.path.join(TARGET, "bench-peers"))
SCENARIOS = os.environ.get("BENCH_SCENARIOS", "1k-h1 100k-h1 1k-h2 1k-check 1k-https").split()


def family(pid):
    """pid and all its descendants."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    found, frontier = [pid], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found




def measured(args, pids, parse):
    before = cpu_seconds(pids)
    output = subprocess.run(args, capture_output=True, text=True, check=True, timeout=SECONDS * 10 + 60)
    cpu = cpu_seconds(pids) - before
    requests = parse(output.stdout)
    if requests == 0:
        raise SystemExit(f"no request completed: {' '.join(args)}\n{output.stdout}{output.stderr}")
    return {"requests": requests, "rps": requests / SECONDS, "cpu_us": cpu / requests * 1e6}


def wrk(url, pids):
    def parse(out):
        if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
            raise SystemExit(f"wrk saw error answers from {url}:\n{out}")
        return int(re.search(r"(\d+) requests in", out).group(1))
    return measured(["wrk", "-t1", "-c64", f"-d{SECONDS}s", url], pids, parse)


def h2load(url, pids):
    def parse(out):
        done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
        if not done or int(done.group(3)):
            raise SystemExit(f"h2load saw failures on {url}:\n{out}")
        return int(done.group(2))
    return measured(["h2load", "-t1", "-c32", "-m10", f"-D{SECONDS}", url], pids, parse)


def loadtest(url, pids, extra=("-c64",)):
    def parse(out):
        report = json.loads(out)
        bad = sum(n for code, n in report["status"].items() if not str(code).startswith("2"))
        bad += report["errors"]["total"]
        if bad:
            raise SystemExit(f"outpost-loadtest saw {bad} errors or error answers from {url}")
        return int(report["responses"])
    return measured([LOADTEST, "-u", url, *extra, f"-d{SECONDS}s", "-r", "100000000", "-q", "--json", "-"], pids, parse)


def h2load_speaks_h3(url):
    """Whether this h2load was built with QUIC (Debian 12's is not): one
    request to `url` over h3 succeeds."""
    probe = subprocess.run(["h2load", "--npn-list=h3", "-n1", "-c1", url], capture_output=True, text=True, timeout=30)
    return re.search(r"\b1 succeeded", probe.stdout) is not None


# 1k-https: how each protocol is driven against Outpost's TLS listeners.
HTTPS_RUNS = {
    "https h1 (outpost-loadtest)": ("tls", lambda url, pids: loadtest(url, pids, ("-k", "--http1", "-c32"))),
    "https h2 (outpost-loadtest)": ("tls", lambda url, pids: loadtest(url, pids, ("-k", "--h2", "-c32", "--streams", "10"))),
    "https h3 (outpost-loadtest)": ("quic", lambda url, pids: loadtest(url, pids, ("-k", "--h3", "-c32", "--streams", "10"))),
    "https h1 (wrk)": ("tls", wrk),
    "https h2 (h2load)": ("tls", h2load),
}


def run(work, disk):
    html = os.path.join(work, "html")
    os.makedirs(html)
    with open(os.path.join(html, "1k"), "wb") as f:
        f.write(b"a" * 1024)
    with open(os.path.join(html, "100k"), "wb") as f:
        f.write(bytes(range(256)) * 400)
    user = "user root;" if os.getuid() == 0 else ""
    temp = lambda d: "\n".join(f"{k}_temp_path {d}/tmp-{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    origin_port, outpost_port, outpost_tls, outpost_quic, nginx_port, nginx_tls, varnish_port = free_ports(7)
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)

    os.makedirs(os.path.join(work, "origin"))
    with open(os.path.join(work, "origin", "nginx.conf"), "w") as f:
        f.write(f"""daemon off; {user} worker_processes 1; pid {work}/origin/nginx.pid;
error_log {work}/origin/error.log error; events {{ worker_connections 4096; }}
http {{ {temp(work + '/origin')} access_log off; keepalive_requests 1000000; sendfile on;
  default_type application/octet-stream;
  server {{ listen 127.0.0.1:{origin_port}; root {html};
    add_header Cache-Control "public, max-age=3600"; }} }}
""")
    start(["nginx", "-c", f"{work}/origin/nginx.conf", "-p", f"{work}/origin", "-e", f"{work}/origin/error.log"])
    wait_http(f"http://127.0.0.1:{origin_port}/1k")

    outpost = start_outpost(OUTPOST, f"{work}/outpost.yaml", origin_port, f"""listen:
  - addr: "127.0.0.1:{outpost_port}"
  - addr: "127.0.0.1:{outpost_tls}"
    tls:
      certificates: [{{ cert: {cert}, key: {key}, hosts: [localhost, 127.0.0.1] }}]
  - addr: "127.0.0.1:{outpost_quic}"
    tls:
      certificates: [{{ cert: {cert}, key: {key}, hosts: [localhost, 127.0.0.1] }}]
    quic: true
cache: {{ memory: 256MiB }}
""")
    wait_http(f"http://127.0.0.1:{outpost_port}/1k")

    with open(os.path.join(disk, "nginx.conf"), "w") as f:
        f.write(f"""daemon off; {user} worker_processes 2; pid {disk}/nginx.pid;
error_log {disk}/error.log error; events {{ worker_connections 4096; }}
http {{ {temp(disk)} access_log off; keepalive_requests 1000000;
  sendfile on; tcp_nodelay on;
  open_file_cache max=10000 inactive=60s; open_file_cache_valid 60s; open_file_cache_errors on;
  ssl_session_cache shared:ssl:10m; ssl_session_timeout 1h;
  proxy_cache_path {disk}/cache levels=1:2 keys_zone=bench:32m max_size=256m inactive=1h use_temp_path=off;
  upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{nginx_port} backlog=4096;
    listen 127.0.0.1:{nginx_tls} ssl http2 backlog=4096;
    ssl_certificate {cert}; ssl_certificate_key {key};
    proxy_cache bench; proxy_cache_lock on; proxy_cache_valid 200 1h;
    proxy_http_version 1.1; proxy_set_header Connection "";
    location /1k {{ tcp_nopush on; proxy_pass http://origin; }}
    location /100k {{ tcp_nopush off; proxy_pass http://origin; }}
  }} }}
""")
    nginx = start(["nginx", "-c", f"{disk}/nginx.conf", "-p", disk, "-e", f"{disk}/error.log"])
    wait_http(f"http://127.0.0.1:{nginx_port}/1k")

    varnish_dir = os.path.join(work, "varnish")
    varnish = start(["varnishd", "-F", "-n", varnish_dir, "-a", f"127.0.0.1:{varnish_port}",
                     "-b", f"127.0.0.1:{origin_port}", "-s", "malloc,256m"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{varnish_port}/1k")

    proxies = {
        "Outpost": (outpost.pid, f"http://127.0.0.1:{outpost_port}", f"https://localhost:{outpost_tls}"),
        "nginx": (nginx.pid, f"http://127.0.0.1:{nginx_port}", f"https://localhost:{nginx_tls}"),
        "Varnish": (varnish.pid, f"http://127.0.0.1:{varnish_port}", None),
    }
    scenarios = {
        "1k-h1": ("wrk", "/1k", wrk),
        "100k-h1": ("wrk", "/100k", wrk),
        "1k-h2": ("h2load", "/1k", h2load),
        "1k-check": ("outpost-loadtest", "/1k", loadtest),
    }
    if "1k-https" in SCENARIOS:
        scenarios["1k-https"] = ("by protocol", "/1k", None)
        if h2load_speaks_h3(f"https://localhost:{outpost_quic}/1k"):
            HTTPS_RUNS["https h3 (h2load)"] = ("quic", lambda url, pids: measured(
                ["h2load", "--npn-list=h3", "-t1", "-c32", "-m10", f"-D{SECONDS}", url], pids,
                lambda out: int(re.search(r"(\d+) succeeded", out).group(1))))
    results = {}
    for scenario in SCENARIOS:
        tool, path, drive = scenarios[scenario]
        if scenario == "1k-https":
            https = {"tls": f"https://localhost:{outpost_tls}", "quic": f"https://localhost:{outpost_quic}"}
            wait_http(proxies["Outpost"][1] + path)
            for r in range(ROUNDS):
                names = list(HTTPS_RUNS)
                for name in names[r % len(names):] + names[:r % len(names)]:
                    listener, run_one = HTTPS_RUNS[name]
                    result = run_one(https[listener] + path, family(outpost.pid))
                    results.setdefault(scenario, {}).setdefault(name, []).append(result)
                    log(f"{scenario} round {r + 1} {name}: {result['rps']:,.0f} req/s, {result['cpu_us']:.1f} us CPU/req")
            continue
        names = [n for n, (_, plain, tls) in proxies.items() if (tls if scenario.endswith("h2") else plain)]
        if scenario == "1k-check":
            names = ["Outpost", "nginx"]
        for name in names:
            pid, plain, tls = proxies[name]
            url = (tls if scenario.endswith("h2") else plain) + path
            if scenario.endswith("h2"):
                subprocess.run(["h2load", "-n1", "-c1", url], capture_output=True, check=True)
            else:
                wait_http(url)
        for r in range(ROUNDS):
            for name in names[r % len(names):] + names[:r % len(names)]:
                pid, plain, tls = proxies[name]
                url = (tls if scenario.endswith("h2") else plain) + path
                result = drive(url, family(pid))
                results.setdefault(scenario, {}).setdefault(name, []).append(result)
                log(f"{scenario} round {r + 1} {name}: {result['rps']:,.0f} req/s, {result['cpu_us']:.1f} us CPU/req")

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "rounds.json"), "w") as f:
        json.dump(results, f, indent=1)
    medians = {s: {n: sorted(r, key=lambda x: x["rps"])[len(r) // 2] for n, r in by.items()} for s, by in results.items()}

    def paired(scenario, name, field):
        # The ratio to nginx within each round (runs seconds apart), then
        # the median of those: steadier on a shared machine than a ratio
        # of two medians taken from different rounds.
        rounds = results[scenario]
        return statistics.median(a[field] / b[field] for a, b in zip(rounds[name], rounds["nginx"]))

    lines = ["| scenario | generator | proxy | req/s | CPU per request | req/s vs nginx (paired) | CPU vs nginx (paired) |",
             "|---|---|---|---|---|---|---|"]
    for scenario, by in medians.items():
        for name, m in by.items():
            rps = f"{paired(scenario, name, 'rps'):.2f}x" if "nginx" in by else "-"
            cpu = f"{paired(scenario, name, 'cpu_us'):.2f}x" if "nginx" in by else "-"
            lines.append(f"| {scenario} | {scenarios[scenario][0]} | {name} | {m['rps']:,.0f} | {m['cpu_us']:.1f} us | {rps} | {cpu} |")
    if "1k-h1" in medians and "1k-check" in medians:
        ours = paired("1k-check", "Outpost", "rps")
        theirs = paired("1k-h1", "Outpost", "rps")
        verdict = "agree within 10%" if abs(ours / theirs - 1) <= 0.10 else "DISAGREE by more than 10%"
        lines += ["", f"Outpost/nginx req/s on 1 KiB hits: {theirs:.2f}x with wrk, {ours:.2f}x with outpost-loadtest: the generators {verdict}."]
    versions = [subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
                subprocess.run(["varnishd", "-V"], capture_output=True, text=True).stderr.splitlines()[0].strip()]
    lines += ["", f"{os.cpu_count()} cores; {SECONDS} s runs, median of {ROUNDS} rounds by req/s; " + "; ".join(versions)]
    table = "\n".join(lines)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(table + "\n")
    print(table)


def main():
    for tool in ("wrk", "h2load", "nginx", "varnishd", "openssl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (make bench-deps installs it)")
    for binary in (OUTPOST, LOADTEST):
        if not os.access(binary, os.X_OK):
            raise SystemExit(f"{binary} is missing: make release")
    work = tempfile.mkdtemp(prefix="outpost-bench-peers.")
    # nginx's cache on the disk's file system, where its users keep it.
    disk = tempfile.mkdtemp(prefix="outpost-bench-peers-nginx.", dir=TARGET)
    try:
        run(work, disk)
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(disk, ignore_errors=True)


if __name__ == "__main__":
    main()

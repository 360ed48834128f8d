"""The fleet benchmark (loadtest/scripts/fleet-bench.sh runs it): three
Outpost nodes on one nats-server -js, in front of an origin written here.

    python3 fleet-bench.py --outpost PATH [--build release|debug|given]

Scenarios:
  1. single purges: purges issued one at a time, round-robin over the
     nodes; after each, GET /purge/{id} on the accepting node until it is
     applied everywhere. Latency = max(members[].applied_ms) - accepted_ms.
  2. burst: purges issued as fast as 32 client threads can (keep-alive,
     threads spread over the nodes); then every 10th id is read back until
     applied everywhere; the same latency, the burst's length and rate.
  3. shield: distinct objects, each requested once on every node by 24
     threads in a shuffled order; origin fetches per object, shield off
     (about 3) and on (about 1).
  4. shield hits on a non-owner: objects requested once on node c (every
     owner stores its own), then each on node a, one request at a time:
     those answered by the owner's cache (two Outpost entries in
     Cache-Status, a's being a miss) are timed; then the same ones again
     on a (local hits).

Each fleet is started from nothing: a fresh nats-server store and fresh
state dirs. The first fleet (shield off) runs 3 (off) first, then 1 and 2;
the second (shield on) runs 3 (on) and 4.

Everything listens on 127.0.0.1. Every loop is bounded in count and in
time; every process started here is stopped and the work directory removed
on exit (failure, Ctrl-C and SIGTERM included). Progress goes to stderr;
stdout gets the table and, last, one line of JSON. Exits 1 with a message
when a request fails, a purge is never applied everywhere, or a deadline
passes.

Sizes, by environment (defaults in brackets): FLEET_SINGLE_PURGES [300],
FLEET_BURST_PURGES [10000], FLEET_BURST_THREADS [32], FLEET_OBJECTS [300],
FLEET_CLIENT_THREADS [24]. FLEET_KEEP=1 keeps the work directory (configs
and logs) and says where it is.

Standard library only.
"""

import argparse
import collections
import http.client
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
BODY = b"o" * 1024
NODES = ("a", "b", "c")

# Deadlines, in seconds.
REQUEST_TIMEOUT = 10  # one HTTP request (socket timeout)
NATS_READY = 20  # nats-server's "Server is ready"
NODE_READY = 30  # /readyz 200, then 3 members everywhere
APPLIED_POLL = 30  # one purge until applied everywhere
SINGLE_BUDGET = 90  # the whole of scenario 1
BURST_BUDGET = 90  # the burst of scenario 2
SAMPLE_BUDGET = 60  # reading back the burst's sample
FETCH_BUDGET = 60  # one round of object requests (scenarios 3 and 4)
STOP_GRACE = 10  # SIGTERM, then SIGKILL

T0 = time.monotonic()


def env_int(name, default):
    value = os.environ.get(name, "")
    try:
        n = int(value) if value else default
    except ValueError:
        raise SystemExit(f"fleet-bench: {name}={value!r} is not a number")
    if n < 1:
        raise SystemExit(f"fleet-bench: {name} must be at least 1")
    return n


SINGLE_PURGES = env_int("FLEET_SINGLE_PURGES", 300)
BURST_PURGES = env_int("FLEET_BURST_PURGES", 10000)
BURST_THREADS = env_int("FLEET_BURST_THREADS", 32)
OBJECTS = env_int("FLEET_OBJECTS", 300)
CLIENT_THREADS = env_int("FLEET_CLIENT_THREADS", 24)


class BenchError(Exception):
    """A failure that ends the benchmark (exit 1)."""


def log(message):
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def free_ports(n):
    """n distinct free loopback ports (held open together while chosen)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summary(values, ps=(50, 90, 99)):
    out = {f"p{p}": percentile(values, p) for p in ps}
    out["max"] = max(values)
    out["n"] = len(values)
    return out


# --- the origin ---------------------------------------------------------


class Origin:
    """A threaded HTTP/1.1 origin on a free loopback port: 200, a 1 KiB
    body, cacheable for 600 s, for every GET; counts the requests of each
    path. GET /__counts answers the counts as JSON (uncacheable; never
    requested through Outpost: the benchmark reads `counts` in process)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path == "/__counts":
                    with origin.lock:
                        body = json.dumps(origin.counts).encode()
                    self.answer(body, "application/json", "no-store")
                    return
                with origin.lock:
                    origin.counts[self.path] += 1
                self.answer(BODY, "application/octet-stream", "max-age=600")

            def answer(self, body, content_type, cache_control):
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Cache-Control", cache_control)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self.server = Server((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fetches(self, prefix):
        with self.lock:
            return {p: n for p, n in self.counts.items() if p.startswith(prefix)}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --- HTTP clients -------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port, opened again
    when the server closed it. A GET on a connection found closed is sent
    once more; a POST never is."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def call(self, method, path, body=None, headers=None):
        """(status, headers, body); BenchError on a transport failure."""
        for attempt in (1, 2):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, response.headers, data
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as e:
                self.close()
                if method == "GET" and reused and attempt == 1:
                    continue
                raise BenchError(f"{method} 127.0.0.1:{self.port}{path}: {e!r}") from None
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise BenchError(f"{method} 127.0.0.1:{self.port}{path}: {e!r}") from None
        raise AssertionError("unreachable")

    def json(self, method, path, body=None, headers=None):
        status, _, data = self.call(method, path, body, headers)
        try:
            value = json.loads(data) if data else None
        except ValueError:
            value = None
        return status, value, data


# --- processes ----------------------------------------------------------


class Processes:
    """Every process started here, stopped on exit."""

    def __init__(self):
        self.running = []  # (name, Popen)

    def add(self, name, proc):
        self.running.append((name, proc))

    def stop(self, names=None):
        """SIGTERM to those named (all by default), then SIGKILL to any
        still there after STOP_GRACE seconds."""
        chosen = [(n, p) for n, p in self.running if names is None or n in names]
        for _, proc in chosen:
            if proc.poll() is None:
                try:
                    proc.terminate()
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_GRACE
        for name, proc in chosen:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop within {STOP_GRACE} s: killed")
                proc.kill()
                proc.wait()
        self.running = [(n, p) for n, p in self.running if (n, p) not in chosen]


def run_threads(n, target, stop, started=None, abort=None):
    """Runs target(t) for t in range(n), each on a thread of its own, and
    waits for them all. When the wait is cut short (a signal), `stop` is
    set and `abort` called so that the threads end early. `started` runs
    on this thread once they are submitted. Raises the first failure."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(target, t) for t in range(n)]
        try:
            if started is not None:
                started()
            errors = [f.exception() for f in futures]
        except BaseException:
            stop.set()
            if abort is not None:
                abort()
            raise
    errors = [e for e in errors if e is not None]
    if errors:
        bench = [e for e in errors if isinstance(e, BenchError)]
        raise bench[0] if bench else BenchError(repr(errors[0]))


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(collections.deque(f, lines))
    except OSError:
        return ""


class Fleet:
    """nats-server and nodes a, b, c, started from nothing in `dir`."""

    def __init__(self, work, label, outpost, origin, token, procs, shield):
        self.dir = tempfile.mkdtemp(prefix=f"{label}.", dir=work)
        self.label = label
        self.outpost = outpost
        self.origin = origin
        self.token = token
        self.procs = procs
        self.shield = shield
        self.logs = {}
        ports = free_ports(7)
        self.nats_port = ports[0]
        self.listen = dict(zip(NODES, ports[1:4]))
        self.admin = dict(zip(NODES, ports[4:7]))

    def start(self):
        started = time.monotonic()
        self.start_nats()
        for node in NODES:
            self.start_node(node)
        self.await_ready()
        log(f"fleet {self.label} (shield {'on' if self.shield else 'off'}) ready "
            f"in {time.monotonic() - started:.1f} s")

    def start_nats(self):
        store = os.path.join(self.dir, "nats-store")
        os.mkdir(store)
        log_path = os.path.join(self.dir, "nats.log")
        self.logs["nats"] = log_path
        proc = subprocess.Popen(
            ["nats-server", "-a", HOST, "-p", str(self.nats_port), "-js", "-sd", store],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, errors="replace",
        )
        self.procs.add(f"{self.label}/nats", proc)
        ready = threading.Event()

        def read_stderr():
            # Copies stderr to the log for as long as the server runs, so
            # that it never blocks on a full pipe.
            with open(log_path, "w") as out:
                for line in proc.stderr:
                    out.write(line)
                    out.flush()
                    if "Server is ready" in line:
                        ready.set()

        threading.Thread(target=read_stderr, daemon=True).start()
        deadline = time.monotonic() + NATS_READY
        while not ready.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(
                    f"nats-server did not say 'Server is ready' within {NATS_READY} s "
                    f"(exit status {proc.poll()}):\n{tail(log_path)}")

    def config(self, node):
        state_dir = os.path.join(self.dir, f"state-{node}")
        shield = "    shield: true\n" if self.shield else ""
        return (
            f'listen: [{{addr: "{HOST}:{self.listen[node]}"}}]\n'
            f'admin: {{addr: "{HOST}:{self.admin[node]}"}}\n'
            "shutdown_grace: 5s\n"
            "cache: {memory: 256MiB}\n"
            "origins:\n"
            "  app:\n"
            "    servers:\n"
            f"      - url: http://{HOST}:{self.origin.port}\n"
            "sites:\n"
            '  - hosts: ["*"]\n'
            "    origin: app\n"
            f"{shield}"
            "cluster:\n"
            f"  node: {node}\n"
            "  nats:\n"
            f'    servers: ["nats://{HOST}:{self.nats_port}"]\n'
            f"  state_dir: {state_dir}\n"
            "  heartbeat: 1s\n"
            f"  peer_addr: {HOST}:{self.listen[node]}\n"
        )

    def start_node(self, node):
        path = os.path.join(self.dir, f"{node}.yaml")
        with open(path, "w") as f:
            f.write(self.config(node))
        log_path = os.path.join(self.dir, f"{node}.log")
        self.logs[node] = log_path
        env = dict(os.environ)
        env["OUTPOST_ADMIN_TOKEN"] = self.token
        env.setdefault("RUST_LOG", "info")
        with open(log_path, "w") as out:
            proc = subprocess.Popen(
                [self.outpost, "run", "--config", path],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            )
        self.procs.add(f"{self.label}/{node}", proc)

    def alive(self, node):
        for name, proc in self.procs.running:
            if name == f"{self.label}/{node}" and proc.poll() is not None:
                raise BenchError(f"node {node} exited (status {proc.returncode}):\n"
                                 f"{tail(self.logs[node])}")

    def await_ready(self):
        deadline = time.monotonic() + NODE_READY
        admins = {n: Client(self.admin[n]) for n in NODES}

        def poll_until(what, check):
            last = {}
            while True:
                waiting = []
                for node in NODES:
                    self.alive(node)
                    try:
                        ok, last[node] = check(node)
                    except BenchError as e:  # not listening yet
                        ok, last[node] = False, str(e)
                    if not ok:
                        waiting.append(node)
                if not waiting:
                    return
                if time.monotonic() > deadline:
                    detail = "; ".join(f"{n}: {last[n]}" for n in waiting)
                    raise BenchError(f"fleet {self.label}: {what} not reached within "
                                     f"{NODE_READY} s ({detail})")
                time.sleep(0.1)

        def readyz(node):
            status, _, body = admins[node].call("GET", "/readyz")
            return status == 200, f"/readyz {status} {body[:200]!r}"

        def cluster(node):
            status, value, body = admins[node].json("GET", "/cluster")
            members = [m.get("node") for m in (value or {}).get("members", [])]
            return status == 200 and len(members) == 3, f"/cluster {status} members {members}"

        def metric(node):
            # Set in the heartbeat after the shield tier took the members in.
            status, _, body = admins[node].call("GET", "/metrics")
            for line in body.decode(errors="replace").splitlines():
                if line.startswith("outpost_cluster_members "):
                    value = float(line.split()[1])
                    return value == 3, f"outpost_cluster_members {value}"
            return False, "no outpost_cluster_members"

        try:
            poll_until("/readyz 200", readyz)
            poll_until("3 members in /cluster", cluster)
            poll_until("outpost_cluster_members 3", metric)
        finally:
            for c in admins.values():
                c.close()

    def stop(self):
        self.procs.stop([f"{self.label}/{n}" for n in NODES])
        self.procs.stop([f"{self.label}/nats"])

    def dump_logs(self):
        for name, path in self.logs.items():
            text = tail(path, 5 if name == "nats" else 20)
            if text:
                print(f"--- {self.label}/{name}: last lines of {path}\n{text}", file=sys.stderr)


# --- purges -------------------------------------------------------------


def post_purge(client, token, url):
    body = json.dumps({"urls": [url]})
    status, value, raw = client.json(
        "POST", "/purge", body,
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    if status != 200 or not isinstance(value, dict) or not value.get("id"):
        raise BenchError(f"POST /purge on 127.0.0.1:{client.port} for {url}: {status} {raw[:300]!r}")
    return value


def await_applied(client, purge_id, stop_at, stop=None):
    """GET /purge/{id} until every one of the 3 members applied it (at
    most APPLIED_POLL s, never past stop_at, and not once `stop` is set);
    the last answer."""
    deadline = min(time.monotonic() + APPLIED_POLL, stop_at)
    pause = 0.002
    last = None
    while True:
        status, value, raw = client.json("GET", f"/purge/{purge_id}")
        last = (status, raw[:400])
        if status == 200 and isinstance(value, dict):
            members = value.get("members") or []
            if (value.get("applied_everywhere") is True and len(members) == 3
                    and all(m.get("applied_ms") is not None for m in members)):
                return value
        elif status not in (404, 503):
            raise BenchError(f"GET /purge/{purge_id}: {status} {raw[:300]!r}")
        if stop is not None and stop.is_set():
            raise BenchError("stopped")
        if time.monotonic() > deadline:
            raise BenchError(f"purge {purge_id} was not applied everywhere within {APPLIED_POLL} s "
                             f"(last answer: {last[0]} {last[1]!r})")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def propagation_ms(status):
    return max(m["applied_ms"] for m in status["members"]) - status["accepted_ms"]


def scenario_single(fleet):
    log(f"1. single purges: {SINGLE_PURGES}, one at a time, round-robin")
    clients = [Client(fleet.admin[n]) for n in NODES]
    stop_at = time.monotonic() + SINGLE_BUDGET
    latencies, queued, rtt = [], 0, []
    try:
        for i in range(SINGLE_PURGES):
            if time.monotonic() > stop_at:
                raise BenchError(f"scenario 1 took more than {SINGLE_BUDGET} s "
                                 f"({i} of {SINGLE_PURGES} purges done)")
            client = clients[i % 3]
            started = time.perf_counter()
            answer = post_purge(client, fleet.token, f"http://example.com/p/{i}")
            rtt.append((time.perf_counter() - started) * 1000)
            queued += answer.get("queued") is True
            status = await_applied(client, answer["id"], stop_at)
            latencies.append(propagation_ms(status))
    finally:
        for c in clients:
            c.close()
    return {"purges": SINGLE_PURGES, "queued": queued,
            "propagation_ms": summary(latencies),
            "post_purge_ms": {k: round(v, 2) if isinstance(v, float) else v
                              for k, v in summary(rtt).items()}}


def scenario_burst(fleet):
    log(f"2. burst: {BURST_PURGES} purges from {BURST_THREADS} threads")
    answers = [None] * BURST_PURGES
    stop = threading.Event()
    barrier = threading.Barrier(BURST_THREADS + 1, timeout=30)
    ends = [0.0] * BURST_THREADS
    deadline = [0.0]

    def worker(t):
        node = NODES[t % 3]
        client = Client(fleet.admin[node])
        try:
            try:
                client.conn = http.client.HTTPConnection(HOST, client.port, timeout=REQUEST_TIMEOUT)
                client.conn.connect()
            finally:
                barrier.wait()
            for i in range(t, BURST_PURGES, BURST_THREADS):
                if stop.is_set():
                    return
                if time.monotonic() > deadline[0]:
                    raise BenchError(f"the burst took more than {BURST_BUDGET} s")
                answer = post_purge(client, fleet.token, f"http://example.com/burst/{i}")
                answers[i] = (node, answer["id"], answer.get("queued") is True)
            ends[t] = time.perf_counter()
        except BaseException:
            stop.set()
            raise
        finally:
            client.close()

    began = [0.0, 0.0]  # perf_counter, Unix ms

    def go():
        deadline[0] = time.monotonic() + BURST_BUDGET
        barrier.wait()
        began[:] = [time.perf_counter(), time.time() * 1000]

    run_threads(BURST_THREADS, worker, stop, started=go, abort=barrier.abort)
    duration = max(ends) - began[0]
    ended_wall_ms = began[1] + duration * 1000
    queued = sum(1 for a in answers if a[2])
    ids = {a[1] for a in answers}
    if len(ids) != BURST_PURGES:
        raise BenchError(f"the burst's {BURST_PURGES} purges got {len(ids)} distinct ids")
    log(f"   burst done: {duration:.2f} s, {BURST_PURGES / duration:.0f} purges/s, "
        f"{queued} queued; reading back every 10th")

    sample = answers[::10]
    latencies = [None] * len(sample)
    last_applied = [0] * len(sample)
    stop_at = time.monotonic() + SAMPLE_BUDGET
    failed = threading.Event()

    threads = 8

    def read_back(t):
        clients = {n: Client(fleet.admin[n]) for n in NODES}
        try:
            for k in range(t, len(sample), threads):
                if failed.is_set():
                    return
                node, purge_id, _ = sample[k]
                status = await_applied(clients[node], purge_id, stop_at, failed)
                latencies[k] = propagation_ms(status)
                last_applied[k] = max(m["applied_ms"] for m in status["members"])
        except BaseException:
            failed.set()
            raise
        finally:
            for c in clients.values():
                c.close()

    run_threads(threads, read_back, failed)
    return {
        "purges": BURST_PURGES, "threads": BURST_THREADS,
        "duration_s": round(duration, 3),
        "accepted_per_s": round(BURST_PURGES / duration, 1),
        "queued": queued,
        "sampled": len(sample),
        "propagation_ms": summary(latencies),
        # When the last sampled purge was applied on its last member,
        # counted from the burst's last answer.
        "sample_settled_after_burst_ms": round(max(last_applied) - ended_wall_ms),
    }


# --- objects ------------------------------------------------------------

PROXY_HEADERS = {"Host": "example.com"}


def fetch(client, path):
    """GET path through a node: (ms, Cache-Status)."""
    started = time.perf_counter()
    status, headers, body = client.call("GET", path, headers=PROXY_HEADERS)
    elapsed = (time.perf_counter() - started) * 1000
    if status != 200 or body != BODY:
        raise BenchError(f"GET {path} on 127.0.0.1:{client.port}: {status}, "
                         f"{len(body)} bytes, Cache-Status {headers.get('Cache-Status')!r}")
    return elapsed, headers.get("Cache-Status", "")


def fetch_all(fleet, requests, threads):
    """Requests (node, path) pairs, `threads` at a time, each thread on
    keep-alive connections of its own; bounded by FETCH_BUDGET. The
    Cache-Status of each answer, by (node, path)."""
    statuses = {}
    lock = threading.Lock()
    pending = iter(requests)
    stop = threading.Event()
    deadline = time.monotonic() + FETCH_BUDGET

    def worker(_):
        clients = {n: Client(fleet.listen[n]) for n in NODES}
        try:
            while not stop.is_set():
                with lock:
                    item = next(pending, None)
                if item is None:
                    return
                if time.monotonic() > deadline:
                    raise BenchError(f"{len(requests)} requests took more than {FETCH_BUDGET} s")
                _, cache_status = fetch(clients[item[0]], item[1])
                statuses[item] = cache_status
        except BaseException:
            stop.set()
            raise
        finally:
            for c in clients.values():
                c.close()

    run_threads(threads, worker, stop)
    return statuses


def scenario_shield(fleet, origin, prefix):
    mode = "on" if fleet.shield else "off"
    log(f"3. shield {mode}: {OBJECTS} objects, once on each node, {CLIENT_THREADS} threads")
    paths = [f"{prefix}{i}" for i in range(OBJECTS)]
    requests = [(node, p) for p in paths for node in NODES]
    random.Random(42).shuffle(requests)
    started = time.perf_counter()
    statuses = fetch_all(fleet, requests, CLIENT_THREADS)
    duration = time.perf_counter() - started
    counts = origin.fetches(prefix)
    per_object = [counts.get(p, 0) for p in paths]
    if min(per_object) < 1:
        raise BenchError(f"shield {mode}: some object never reached the origin")
    spread = collections.Counter(per_object)
    # Objects the origin saw more often than expected, with the answers'
    # Cache-Status on each node.
    expected = 1 if fleet.shield else 3
    extra = [{"path": p, "fetches": counts[p],
              "cache_status": {n: statuses.get((n, p)) for n in NODES}}
             for p in paths if counts[p] > expected][:5]
    if extra:
        log(f"   more than {expected} origin fetch(es) for {len(extra)} object(s), e.g. "
            f"{json.dumps(extra[0])}")
    return {
        "objects": OBJECTS, "requests": len(requests),
        "origin_fetches": sum(per_object),
        "fetches_per_object": round(sum(per_object) / OBJECTS, 3),
        "objects_by_fetches": {str(k): spread[k] for k in sorted(spread)},
        "over_fetched_examples": extra,
        "duration_s": round(duration, 3),
    }


def entries(cache_status):
    return [e.strip() for e in cache_status.split(",") if e.strip().startswith("Outpost")]


def scenario_owner_hits(fleet, origin, prefix):
    log(f"4. shield hits on a non-owner: {OBJECTS} objects, once on c, then on a (twice)")
    paths = [f"{prefix}{i}" for i in range(OBJECTS)]
    fetch_all(fleet, [("c", p) for p in paths], CLIENT_THREADS)
    client = Client(fleet.listen["a"])
    stop_at = time.monotonic() + FETCH_BUDGET
    kinds = collections.Counter()
    owner_hit = {}
    odd = []
    try:
        for p in paths:
            if time.monotonic() > stop_at:
                raise BenchError(f"scenario 4 took more than {FETCH_BUDGET} s on node a")
            ms, cache_status = fetch(client, p)
            e = entries(cache_status)
            if len(e) == 2 and "; hit" in e[0] and "fwd=miss" in e[1]:
                kinds["non-owner, owner hit"] += 1
                owner_hit[p] = ms
            elif len(e) == 1 and "; hit" in e[0]:
                kinds["a owns it, local hit"] += 1
            else:
                kinds["other"] += 1
                if len(odd) < 5:
                    odd.append(f"{p}: {cache_status}")
        local = []
        for p in owner_hit:
            if time.monotonic() > stop_at:
                raise BenchError(f"scenario 4 took more than {FETCH_BUDGET} s on node a")
            ms, cache_status = fetch(client, p)
            # a stored the owner's answer with its Cache-Status: its own
            # entry is the last one ("Outpost; hit; ttl=599, Outpost; hit; ...").
            e = entries(cache_status)
            if not e or "; hit" not in e[-1]:
                raise BenchError(f"second request for {p} on a was not a hit: {cache_status!r}")
            local.append(ms)
    finally:
        client.close()
    if not owner_hit:
        raise BenchError(f"no answer on a came from an owner's cache: {dict(kinds)} {odd}")
    counts = origin.fetches(prefix)
    round2 = lambda d: {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}
    return {
        "objects": OBJECTS,
        "answers_on_a": dict(kinds),
        "other_examples": odd,
        "origin_fetches": sum(counts.values()),
        "non_owner_owner_hit_ms": round2(summary(list(owner_hit.values()), (50, 99))),
        "local_hit_ms": round2(summary(local, (50, 99))),
    }


# --- the report ---------------------------------------------------------


def table(build, results):
    s1, s2 = results["single"], results["burst"]
    off, on, s4 = results["shield_off"], results["shield_on"], results["owner_hits"]
    rows = []

    def row(scenario, metric, value):
        rows.append((scenario, metric, value))

    def ms(d, ps):
        return " / ".join(f"{d[p]:.2f}" if isinstance(d[p], float) else str(d[p]) for p in ps)

    row("1 single purges", f"propagation p50/p90/p99/max (ms), n={s1['propagation_ms']['n']}",
        ms(s1["propagation_ms"], ("p50", "p90", "p99", "max")))
    row("", "POST /purge p50/p99 (ms, client)", ms(s1["post_purge_ms"], ("p50", "p99")))
    row("", "answers with queued=true", str(s1["queued"]))
    row("2 burst", f"purges, threads", f"{s2['purges']}, {s2['threads']}")
    row("", "duration (s) / accepted per s", f"{s2['duration_s']:.2f} / {s2['accepted_per_s']:.0f}")
    row("", "answers with queued=true", str(s2["queued"]))
    row("", f"propagation p50/p90/p99/max (ms), n={s2['propagation_ms']['n']}",
        ms(s2["propagation_ms"], ("p50", "p90", "p99", "max")))
    row("", "last sampled purge applied everywhere (ms after the burst's end; < 0: before)",
        str(s2["sample_settled_after_burst_ms"]))
    for name, s in (("3 shield off", off), ("3 shield on", on)):
        row(name, f"origin fetches / object ({s['objects']} objects x 3 nodes)",
            f"{s['fetches_per_object']:.2f} ({s['origin_fetches']} fetches)")
        row("", "objects by fetch count", " ".join(f"{k}x:{v}" for k, v in s["objects_by_fetches"].items()))
    row("4 shield hits on a", "answers on a", ", ".join(f"{k}: {v}" for k, v in s4["answers_on_a"].items()))
    row("", "non-owner -> owner hit p50/p99 (ms)", ms(s4["non_owner_owner_hit_ms"], ("p50", "p99")))
    row("", "local hit, same objects p50/p99 (ms)", ms(s4["local_hit_ms"], ("p50", "p99")))
    row("", "origin fetches for its objects", str(s4["origin_fetches"]))
    widths = [max(len(r[i]) for r in rows + [("scenario", "metric", "value")]) for i in range(3)]
    out = [f"Outpost fleet benchmark ({build} build; 3 nodes, one nats-server, all on 127.0.0.1)"]
    if build == "debug":
        out.append("DEBUG BUILD: these figures are not to be quoted.")
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    out.append(line(("scenario", "metric", "value")))
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def demo(fleet, token):
    """Starts `fleet` and keeps it until interrupted (Ctrl-C, SIGTERM)."""
    fleet.start()
    a, b = fleet.admin["a"], fleet.admin["b"]
    print(f"""A fleet of three Outposts (a, b, c) on one nats-server, shield on, all on 127.0.0.1:
  proxies:   a http://127.0.0.1:{fleet.listen['a']}  b http://127.0.0.1:{fleet.listen['b']}  c http://127.0.0.1:{fleet.listen['c']}
  side APIs: a http://127.0.0.1:{a}  b http://127.0.0.1:{b}  c http://127.0.0.1:{fleet.admin['c']}
  NATS:      nats://127.0.0.1:{fleet.nats_port}

Try:
  curl -si -H 'Host: example.com' http://127.0.0.1:{fleet.listen['a']}/page | grep -i cache-status
  curl -s http://127.0.0.1:{b}/cluster
  curl -s -H 'Authorization: Bearer {token}' -d '{{"urls": ["http://example.com/page"]}}' http://127.0.0.1:{a}/purge
  curl -s http://127.0.0.1:{b}/purge/ID

Ctrl-C stops everything.""", flush=True)
    while True:
        time.sleep(3600)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outpost", required=True, help="the outpost binary")
    parser.add_argument("--build", default="given", help="release, debug or given (for the report)")
    parser.add_argument("--demo", action="store_true",
                        help="start a shielded fleet, say how to use it, and keep it until Ctrl-C")
    args = parser.parse_args()

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    # Also when started in the background by a shell, which ignores it.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    keep = os.environ.get("FLEET_KEEP") == "1"
    work = tempfile.mkdtemp(prefix="outpost-fleet-bench.")
    procs = Processes()
    origin = None
    fleets = []
    token = secrets.token_hex(16)
    code = 1
    try:
        origin = Origin()
        log(f"origin on 127.0.0.1:{origin.port}; work directory {work}")
        if args.demo:
            demo(Fleet(work, "demo", args.outpost, origin, token, procs, shield=True), token)
            return 0
        results = {}
        fleet = Fleet(work, "shield-off", args.outpost, origin, token, procs, shield=False)
        fleets.append(fleet)
        fleet.start()
        results["shield_off"] = scenario_shield(fleet, origin, "/s-off/")
        results["single"] = scenario_single(fleet)
        results["burst"] = scenario_burst(fleet)
        fleet.stop()
        fleet = Fleet(work, "shield-on", args.outpost, origin, token, procs, shield=True)
        fleets.append(fleet)
        fleet.start()
        results["shield_on"] = scenario_shield(fleet, origin, "/s-on/")
        results["owner_hits"] = scenario_owner_hits(fleet, origin, "/n/")
        fleet.stop()
        print(table(args.build, results))
        print(json.dumps({"fleet_bench": results, "build": args.build,
                          "binary": args.outpost,
                          "runtime_s": round(time.monotonic() - T0, 1)},
                         separators=(",", ":")))
        sys.stdout.flush()
        code = 0
    except BenchError as e:
        print(f"fleet-bench: FAILED: {e}", file=sys.stderr)
        for fleet in fleets:
            fleet.dump_logs()
    except KeyboardInterrupt:
        print("fleet-bench: interrupted", file=sys.stderr)
        code = 130
    except SystemExit as e:
        print(f"fleet-bench: stopped by a signal", file=sys.stderr)
        code = e.code if isinstance(e.code, int) else 1
    finally:
        # Stopping must not be cut short by a second signal.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop()
        if origin is not None:
            origin.close()
        if keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log(f"done in {time.monotonic() - T0:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())

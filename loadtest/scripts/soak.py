"""A bounded soak of one Outpost: mixed traffic for a set time while purges,
reloads and a binary upgrade happen, with the process's memory and open
descriptors sampled. It fails when any request failed or was answered
with an error, or when memory or descriptors kept growing.

    python3 soak.py OUTPOST_BIN LOADTEST_BIN OUT_DIR [SECONDS]

Everything listens on 127.0.0.1 (ports picked by the kernel); the load is
open loop at a fixed rate, in rounds of at most a minute, so every loop
is bounded in count and time. Writes OUT_DIR/soak.json and prints a
table for docs/benchmarks.md.
"""

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

KEYS = 20_000
RATE = 1_500  # requests a second, open loop
ROUND = 60  # seconds of load per loadtest run
SAMPLE = 10  # seconds between samples of memory and descriptors
PURGE_EVERY = 20
RELOAD_EVERY = 60
TOKEN = "soak-token"
BODY = b"x" * 2048


def log(message):
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Origin:
    """An HTTP/1.1 origin on an asyncio loop of its own thread: every path
    answers 2 KiB that caches may keep 30 s, tagged by its key."""

    def __init__(self):
        self.port = None
        self.requests = 0
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        if not ready.wait(10):
            raise SystemExit("the origin did not start")

    def _run(self, ready):
        async def main():
            server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            async with server:
                await server.serve_forever()

        asyncio.run(main())

    async def _serve(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                path = head.split(b" ", 2)[1]
                key = path.rsplit(b"/", 1)[-1]
                tag = b"t%d" % (int(key) % 10) if key.isdigit() else b"other"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    b"Cache-Control: max-age=30\r\nSurrogate-Key: %s\r\n"
                    b"Content-Length: %d\r\n\r\n" % (tag, len(BODY)) + BODY
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()


class Outpost:
    """The process and its successors: the ready lines on its standard
    output (a successor inherits it) say which pid serves."""

    def __init__(self, binary, workdir, origin_port):
        self.config = os.path.join(workdir, "outpost.yaml")
        with open(self.config, "w") as f:
            f.write(
                "listen:\n  - addr: 127.0.0.1:0\n"
                "admin:\n  addr: 127.0.0.1:0\n"
                "upgrade_socket: upgrade.sock\n"
                "cache:\n  memory: 64MiB\n"
                f"  disk: {{path: {workdir}/disk, size: 256MiB}}\n"
                f"origins:\n  app:\n    servers:\n      - url: http://127.0.0.1:{origin_port}\n"
                "sites:\n  - hosts: [soak.test]\n    origin: app\n"
            )
        env = dict(os.environ, OUTPOST_ADMIN_TOKEN=TOKEN, RUST_LOG="warn")
        self.process = subprocess.Popen(
            [binary, "run", "--config", self.config],
            stdout=subprocess.PIPE,
            stderr=open(os.path.join(workdir, "outpost.log"), "w"),
            env=env,
            cwd=workdir,
        )
        self.ready = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.await_ready(1)
        first = self.ready[0]
        self.addr = first["listen"][0]["addr"]
        self.admin = first["admin"]

    def _read(self):
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "ready":
                with self.changed:
                    self.ready.append(event)
                    self.changed.notify_all()

    def await_ready(self, count, within=60):
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.ready) >= count, within):
                raise SystemExit(f"no ready line number {count} within {within} s")

    @property
    def pid(self):
        return self.ready[-1]["pid"]

    def admin_call(self, method, path, body=None):
        request = urllib.request.Request(
            f"http://{self.admin}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as res:
            return res.status


def sample(pid):
    """(RSS in KiB, open descriptors) of a process."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    outpost_bin, loadtest_bin, out_dir = (os.path.abspath(a) for a in sys.argv[1:4])
    seconds = int(sys.argv[4]) if len(sys.argv) > 4 else 1800
    os.makedirs(out_dir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="outpost-soak-")
    origin = Origin()
    node = Outpost(outpost_bin, workdir, origin.port)
    log(f"outpost {node.pid} on {node.addr}, admin {node.admin}; {seconds} s of load")

    started = time.monotonic()
    deadline = started + seconds
    events = {"purges": 0, "purge_errors": 0, "reloads": 0, "upgrades": 0}
    samples = []
    stop = threading.Event()

    def control():
        """Purges, reloads, the upgrade at 40% of the run, and samples."""
        kinds = [
            lambda i: {"urls": [f"http://soak.test/p/{i % KEYS}"]},
            lambda i: {"prefixes": [f"soak.test/p/{i % 10}"]},
            lambda i: {"tags": [f"t{i % 10}"]},
            lambda i: {"everything": True, "soft": True},
        ]
        upgraded = False
        next_purge = next_reload = next_sample = time.monotonic()
        i = 0
        while not stop.wait(0.5):
            now = time.monotonic()
            if now >= next_sample:
                pid = node.pid
                try:
                    rss, fds = sample(pid)
                    samples.append({"t": round(now - started), "pid": pid, "rss_kib": rss, "fds": fds})
                except OSError:
                    pass
                next_sample = now + SAMPLE
            if now >= next_purge:
                try:
                    status = node.admin_call("POST", "/purge", kinds[i % len(kinds)](i))
                    events["purges"] += 1
                    if status != 200:
                        events["purge_errors"] += 1
                except OSError as e:
                    log(f"purge failed: {e}")
                    events["purge_errors"] += 1
                i += 1
                next_purge = now + PURGE_EVERY
            if now >= next_reload:
                os.kill(node.pid, signal.SIGHUP)
                events["reloads"] += 1
                next_reload = now + RELOAD_EVERY
            if not upgraded and now - started >= 0.4 * seconds:
                upgraded = True
                old = node.pid
                os.kill(old, signal.SIGUSR2)
                node.await_ready(2)
                events["upgrades"] += 1
                log(f"upgraded: {old} -> {node.pid}")

    controller = threading.Thread(target=control, daemon=True)
    controller.start()

    rounds = []
    while time.monotonic() < deadline - 1:
        length = max(1, min(ROUND, int(deadline - time.monotonic())))
        report_path = os.path.join(out_dir, "round.json")
        subprocess.run(
            [
                loadtest_bin, "-u", f"http://{node.addr}/", "--host", "soak.test",
                "--keys", str(KEYS), "--path-template", "/p/{key}", "--zipf", "1.0",
                "-c", "32", "--rate", str(RATE), "-d", f"{length}s",
                "-r", str(RATE * length * 2), "--json", report_path, "-q",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with open(report_path) as f:
            report = json.load(f)
        bad = sum(n for code, n in report["status"].items() if not 200 <= int(code) < 400)
        rounds.append({
            "requests": report["requests"],
            "failures": report["failures"],
            "bad_status": bad,
            "unsent": report["unsent"],
            "p99_us": report["latency_us"]["p99"] if "p99" in report["latency_us"] else None,
            "cache": report["cache"],
        })
        if report["failures"] or bad:
            log(f"round {len(rounds)}: {report['failures']} failures, {bad} error answers: {report['errors']}")
    stop.set()
    controller.join(30)
    final_pid = node.pid
    os.kill(final_pid, signal.SIGTERM)
    try:
        node.process.wait(60)
    except subprocess.TimeoutExpired:
        pass

    requests = sum(r["requests"] for r in rounds)
    failures = sum(r["failures"] + r["bad_status"] for r in rounds)
    # Memory after the warm-up (the second fifth) against the last fifth,
    # both of the process that serves after the upgrade (it fills its
    # memory tier anew during its first fifth).
    after = [s for s in samples if s["pid"] == final_pid]
    fifth = max(1, len(after) // 5)
    early, late = after[fifth : 2 * fifth], after[-fifth:]
    rss_early = statistics.median(s["rss_kib"] for s in early) if early else 0
    rss_late = statistics.median(s["rss_kib"] for s in late) if late else 0
    fds_early = statistics.median(s["fds"] for s in early) if early else 0
    fds_late = statistics.median(s["fds"] for s in late) if late else 0
    growth = (rss_late - rss_early) / rss_early if rss_early else 0.0
    summary = {
        "seconds": seconds,
        "rate_rps": RATE,
        "requests": requests,
        "failed_or_error_answers": failures,
        "origin_requests": origin.requests,
        "events": events,
        "rss_kib_early_median": rss_early,
        "rss_kib_late_median": rss_late,
        "rss_growth": round(growth, 4),
        "fds_early_median": fds_early,
        "fds_late_median": fds_late,
        "rss_kib_max": max((s["rss_kib"] for s in samples), default=0),
        "samples": samples,
        "rounds": rounds,
    }
    with open(os.path.join(out_dir, "soak.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print()
    print("| soak | figure |")
    print("|---|---|")
    print(f"| duration, rate | {seconds} s at {RATE} req/s |")
    print(f"| requests; failed or error answers | {requests}; {failures} |")
    print(f"| purges (errors); reloads; upgrades | {events['purges']} ({events['purge_errors']}); {events['reloads']}; {events['upgrades']} |")
    print(f"| RSS of the successor, median of its 2nd fifth -> last fifth | {rss_early / 1024:.1f} MiB -> {rss_late / 1024:.1f} MiB ({growth:+.1%}) |")
    print(f"| open descriptors, same | {fds_early} -> {fds_late} |")
    flat = growth < 0.15 or rss_late - rss_early < 16 * 1024
    ok = failures == 0 and events["purge_errors"] == 0 and flat and fds_late <= fds_early + 32
    print(f"\nsoak {'passed' if ok else 'FAILED'} ({out_dir}/soak.json)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

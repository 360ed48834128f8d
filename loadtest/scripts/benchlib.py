"""What the Python benchmark scripts share: free loopback ports, the
processes they start (and stop on exit), waiting for a server to answer,
and the CPU time of a server's processes."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_ports(n):
    """n ports free on 127.0.0.1 (bound and released at once)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def log(message):
    print(message, file=sys.stderr, flush=True)


# Every process started through `start`, for `stop_all`.
started = []


def start(args, **kwargs):
    """Starts a process that `stop_all` stops."""
    process = subprocess.Popen(args, **kwargs)
    started.append(process)
    return process


def start_outpost(binary, path, origin_port, top, rules=""):
    """Writes an Outpost config at `path` and starts Outpost on it (stopped
    by `stop_all`): `top` (YAML: its listeners, cache and other keys), the
    side API on a free port, one origin pool on `origin_port` and one
    catch-all site, with `rules` (YAML under the site) if any."""
    with open(path, "w") as f:
        f.write(top + f"""admin: {{ addr: "127.0.0.1:0" }}
shutdown_grace: 1s
origins:
  origin:
    servers: [{{ url: "http://127.0.0.1:{origin_port}" }}]
    timeouts: {{ keepalive: 300s }}
sites:
  - hosts: ["*"]
    origin: origin
""" + rules)
    env = dict(os.environ, OUTPOST_ADMIN_TOKEN="unused", RUST_LOG="warn")
    return start([binary, "run", "--config", path], env=env, stdout=subprocess.DEVNULL)


def stop(process):
    """SIGTERM, up to 5 s to exit, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_all():
    for process in started:
        stop(process)


def wait_http(url, headers=None):
    """Waits up to 10 s for any HTTP answer from url; returns its headers."""
    for _ in range(100):
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=1) as response:
                return response.headers
        except urllib.error.HTTPError as e:
            return e.headers
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on {url}")


# Clock ticks per second, the unit of /proc/PID/stat's CPU times.
TICKS = os.sysconf("SC_CLK_TCK")


def workers(pid):
    """nginx's processes that serve and manage the cache (not the cache
    loader, which exits on its own a minute after the start)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    command = f.read().decode(errors="replace")
                if int(fields[1]) == pid and ("worker process" in command or "cache manager" in command):
                    found.append(int(entry))
            except OSError:
                pass
    return found


def cpu_seconds(pids):
    """User and system CPU time the processes have used, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            # Gone (a process that ended on its own): nothing more to count.
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS

"""What the Python benchmark scripts share: free loopback ports, and
waiting for a server to answer."""

import socket
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

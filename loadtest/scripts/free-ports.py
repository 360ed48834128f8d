"""Prints N free loopback TCP ports, space-separated: held open together
while chosen, so they are distinct.

    python3 free-ports.py N
"""

import socket
import sys

sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))

"""The slow part of the benchmark's origin (loadtest/scripts/bench.sh).

Answers every GET after a fixed delay with a 1 KiB body that caches may
keep for an hour, so that a cache which sends many requests for one key to
the origin at once (no coalescing) is seen doing it. HTTP/1.1 with
keep-alive; standard library only; one asyncio loop, so concurrent
requests wait out their delays side by side.

    python3 slow-origin.py PORT DELAY_MS

Counting is left to the nginx origin in front of it, whose access log has
a line for every request that reaches either.
"""

import asyncio
import sys

BODY = b"s" * 1024


async def serve(reader, writer, delay):
    """Answers requests on one connection until the client closes it."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(delay)
            close = b"connection: close" in head.lower()
            writer.write(
                b"HTTP/1.1 200 OK\r\n"
                b"Content-Type: application/octet-stream\r\n"
                b"Cache-Control: public, max-age=3600\r\n"
                b"Content-Length: %d\r\n"
                b"%s\r\n" % (len(BODY), b"Connection: close\r\n" if close else b"")
                + BODY
            )
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port, delay):
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, delay), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]) / 1000.0))

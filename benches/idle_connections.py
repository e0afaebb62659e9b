#!/usr/bin/env python3
"""Open many idle keep-alive connections to a server, for benches/compare.sh's memory row.

Each connection sends one HTTP/1.1 request (keep-alive), reads the whole answer, and then
stays open and silent. Once all are open the script prints "open N failed M" on one line and
holds them until it is killed or --hold seconds pass. Standard library only.

    python3 benches/idle_connections.py --port 8080 --count 10000 --path /healthz
"""

import argparse
import asyncio
import sys

# How many connections are being opened at once: enough to open 10,000 in a few seconds,
# few enough not to overflow the server's accept backlog (SYN retries take a second).
CONCURRENT_OPENS = 256


async def open_one(host, port, request, opened, gate):
    """Opens one connection, makes one request, and returns the (reader, writer) pair."""
    async with gate:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length:
            await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 "):
            raise ConnectionError("not an HTTP/1.1 answer: %r" % head[:40])
        opened.append(writer)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--path", default="/healthz", help="the request-target of the one request")
    parser.add_argument("--hold", type=float, default=120.0, help="seconds to hold them open")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("idle_connections: load tests go to 127.0.0.1 only")

    request = (
        "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: idle-connections\r\n\r\n"
        % (args.path, args.host)
    ).encode()
    opened = []
    gate = asyncio.Semaphore(CONCURRENT_OPENS)
    results = await asyncio.gather(
        *(open_one(args.host, args.port, request, opened, gate) for _ in range(args.count)),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        print("first failure: %r" % failed[0], file=sys.stderr)
    print("open %d failed %d" % (len(opened), len(failed)), flush=True)
    await asyncio.sleep(args.hold)
    for writer in opened:
        writer.close()


if __name__ == "__main__":
    asyncio.run(main())

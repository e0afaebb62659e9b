#!/usr/bin/env python3
"""benches/notify_load.py: the two halves of benches/notify.sh that are not mailtrack.

    notify_load.py fill PORT STREAM COUNT
        XADDs COUNT Click events to STREAM on the Redis at 127.0.0.1:PORT, as fast as Redis
        takes them (pipelined, a thousand at a time), in the events sink's shape: fields
        `event`, `type`, `message_id` (docs/events.md).

    notify_load.py paced REDIS_PORT STREAM RATE SECONDS RECEIVER_PORT
        Listens on 127.0.0.1:RECEIVER_PORT as a webhook receiver that answers 204 to every
        POST, and XADDs RATE events a second for SECONDS seconds, in 10 ms ticks. Each event's
        `mailtrack.eventId` carries the time its XADD was sent (time.time_ns). Just before the
        receiver answers a POST, it notes, for each event in it, now minus that time: the time
        from XADD to the receiver's answer. Prints one JSON line: the rate reached, the events
        received (and duplicates), and p50, p99 and max in milliseconds.

Standard library only, so that it runs wherever the bench does.
"""

import asyncio
import json
import re
import socket
import sys
import time

EVENT_ID = re.compile(rb'"eventId":"bench-(\d+)-(\d+)"')


def event(seq, sent_ns):
    """A Click as serve writes it, with the send time in its eventId."""
    return json.dumps(
        {
            "eventType": "Click",
            "mail": {"messageId": f"bench-{seq % 1000:04d}"},
            "click": {
                "ipAddress": "192.0.2.1",
                "timestamp": "2026-12-02T10:00:00.000Z",
                "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15",
                "link": "https://example.com/spring/sale?utm_source=mail",
                "linkTags": {"campaign": ["spring"]},
            },
            "mailtrack": {
                "eventId": f"bench-{seq}-{sent_ns}",
                "trackingDomain": "127.0.0.1",
                "method": "GET",
                "repair": "as_received",
            },
        },
        separators=(",", ":"),
    )


def resp(*args):
    """One command in RESP."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def xadd(stream, seq, sent_ns):
    return resp("XADD", stream, "*", "event", event(seq, sent_ns), "type", "Click",
                "message_id", f"bench-{seq % 1000:04d}")


def read_replies(sock, count, pending=b""):
    """Reads `count` simple replies (XADD's bulk ids or errors); returns what is left over."""
    buffer = pending
    while count > 0:
        while b"\r\n" not in buffer:
            buffer += sock.recv(1 << 16)
        line, _, rest = buffer.partition(b"\r\n")
        if line.startswith(b"-"):
            raise SystemExit(f"redis: {line.decode()}")
        if line.startswith(b"$"):
            size = int(line[1:])
            while len(rest) < size + 2:
                rest += sock.recv(1 << 16)
            rest = rest[size + 2:]
        buffer = rest
        count -= 1
    return buffer


def fill(port, stream, count):
    sock = socket.create_connection(("127.0.0.1", port))
    seq = 0
    while seq < count:
        chunk = min(1000, count - seq)
        now = time.time_ns()
        sock.sendall(b"".join(xadd(stream, seq + n, now) for n in range(chunk)))
        read_replies(sock, chunk)
        seq += chunk
    sock.close()


class Receiver:
    """A webhook receiver on asyncio streams: reads a POST whole, answers 204."""

    def __init__(self):
        self.latencies_ms = []
        self.seen = set()
        self.duplicates = 0

    async def connection(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                now = time.time_ns()
                for seq, sent in EVENT_ID.findall(body):
                    if seq in self.seen:
                        self.duplicates += 1
                        continue
                    self.seen.add(seq)
                    self.latencies_ms.append((now - int(sent)) / 1e6)
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the sender closed, or the run is over
        finally:
            writer.close()


def percentile(sorted_values, share):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(share * len(sorted_values)))
    return sorted_values[index]


async def paced(redis_port, stream, rate, seconds, receiver_port):
    receiver = Receiver()
    server = await asyncio.start_server(receiver.connection, "127.0.0.1", receiver_port)
    sock = socket.create_connection(("127.0.0.1", redis_port))
    sock.setblocking(True)
    tick = 0.01
    per_tick = rate * tick
    total = int(rate * seconds)
    sent = 0
    owed = 0.0
    pending = b""
    start = time.monotonic()
    while sent < total:
        owed += per_tick
        chunk = min(int(owed), total - sent)
        owed -= chunk
        if chunk:
            now = time.time_ns()
            sock.sendall(b"".join(xadd(stream, sent + n, now) for n in range(chunk)))
            pending = await asyncio.to_thread(read_replies, sock, chunk, pending)
            sent += chunk
        next_at = start + (sent / rate)
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    elapsed = time.monotonic() - start
    deadline = time.monotonic() + 30
    while len(receiver.seen) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    server.close()
    values = sorted(receiver.latencies_ms)
    print(json.dumps({
        "rate": round(sent / elapsed),
        "sent": sent,
        "received": len(receiver.seen),
        "duplicates": receiver.duplicates,
        "p50_ms": round(percentile(values, 0.50), 1),
        "p99_ms": round(percentile(values, 0.99), 1),
        "max_ms": round(values[-1], 1) if values else None,
    }))


def main(argv):
    if len(argv) == 5 and argv[1] == "fill":
        fill(int(argv[2]), argv[3], int(argv[4]))
    elif len(argv) == 7 and argv[1] == "paced":
        asyncio.run(paced(int(argv[2]), argv[3], float(argv[4]), float(argv[5]), int(argv[6])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)

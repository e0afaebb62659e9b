#!/usr/bin/env python3
"""A paced event source for benches/notify.sh: XADDs events to a Redis stream at a steady
rate, for a while, as the events sink would, each a real event's JSON (the template, taken
from what serve wrote) with its eventId set to `lat-{ms}-{seq}`, where `ms-seq` is the entry's
own stream id: the XADD time, which the receiver subtracts from its answer time.

    python3 benches/notify_load.py PORT STREAM RATE SECONDS TEMPLATE_FILE

Plain RESP over a socket (no client library): commands go out in one write per millisecond
tick, and a thread reads the replies, counting errors.
"""
import json
import socket
import sys
import threading
import time


def resp(*parts):
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def main():
    port, stream, rate, seconds = int(sys.argv[1]), sys.argv[2].encode(), float(sys.argv[3]), float(sys.argv[4])
    template = json.loads(open(sys.argv[5]).read())
    template["mailtrack"]["eventId"] = "@ID@"
    head, tail = json.dumps(template, separators=(",", ":")).encode().split(b"@ID@")
    kind = template["eventType"].encode()
    message_id = template["mail"]["messageId"].encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    errors, replies = [0], [0]

    def drain():
        buffer = b""
        while True:
            data = sock.recv(1 << 16)
            if not data:
                return
            buffer += data
            lines = buffer.split(b"\r\n")
            buffer = lines.pop()
            for line in lines:
                # An XADD answers a bulk string (`$len`, then the id) or an error (`-ERR …`).
                if line.startswith(b"-"):
                    errors[0] += 1
                    replies[0] += 1
                    sys.stderr.write(f"load: {line.decode()}\n")
                elif line.startswith(b"$"):
                    replies[0] += 1

    threading.Thread(target=drain, daemon=True).start()
    start = time.time()
    sent, last_ms, seq = 0, 0, 0
    while True:
        now = time.time()
        if now - start >= seconds:
            break
        due = int((now - start) * rate) - sent
        if due > 0:
            ms = max(int(now * 1000), last_ms)
            seq = seq + 1 if ms == last_ms else 0
            last_ms = ms
            batch = []
            for _ in range(due):
                entry = b"%d-%d" % (ms, seq)
                event = head + b"lat-%d-%d" % (ms, seq) + tail
                batch.append(resp(b"XADD", stream, entry, b"event", event, b"type", kind,
                                  b"message_id", message_id))
                seq += 1
            seq -= 1
            sock.sendall(b"".join(batch))
            sent += due
        time.sleep(0.001)
    elapsed = time.time() - start
    deadline = time.time() + 10
    while replies[0] < sent and time.time() < deadline:
        time.sleep(0.01)
    sys.stderr.write(f"load: {sent} events in {elapsed:.2f} s ({sent / elapsed:.0f}/s), {errors[0]} errors\n")
    print(f"{sent / elapsed:.0f}")


if __name__ == "__main__":
    main()

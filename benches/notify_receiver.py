#!/usr/bin/env python3
"""A webhook receiver for benches/notify.sh: answers every POST 204 at once and records, for
each event whose eventId is `lat-{ms}-{seq}` (made by notify_load.py, `ms` being the XADD
time, the stream id's own), how long it took from XADD to this answer. On SIGTERM it writes
the latencies (ms, one a line, the first arrival of each event only) to the file given, and
exits.

    python3 benches/notify_receiver.py PORT OUT_FILE
"""
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EVENT_ID = re.compile(rb'"eventId":"lat-(\d+)-(\d+)"')
seen = {}
lock = threading.Lock()
requests = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()
        self.wfile.flush()
        answered = time.time() * 1000
        with lock:
            requests[0] += 1
            for ms, seq in EVENT_ID.findall(body):
                key = (ms, seq)
                if key not in seen:
                    seen[key] = answered - int(ms)

    def log_message(self, *args):
        pass


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True

    def stop(*_):
        with lock:
            with open(out, "w") as f:
                f.write("".join(f"{v:.1f}\n" for v in seen.values()))
            sys.stderr.write(f"receiver: {requests[0]} requests, {len(seen)} events\n")
        sys.stderr.flush()
        import os

        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()

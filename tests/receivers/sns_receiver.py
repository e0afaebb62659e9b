"""A receiver written the way SES → SNS → HTTPS receivers are, for the SNS tests.

Plain http.server, no extra packages. On a SubscriptionConfirmation it GETs the SubscribeURL
(unless the file named by --confirm-when does not exist yet: then it answers 200 and does not
confirm, as a receiver whose confirmation failed). On a Notification it json.loads the
Message and checks it is an SES-shaped event (eventType, mail.messageId, and its click or
open). It records every request, as one JSON line in --record:
  {"type": ..., "headers": {...}, "body": "<as received>", "event": {...} | null,
   "confirmed": <the SubscribeURL GET's status, or null>, "problem": "..." | null}
Prints its port on the first line of standard output once it listens.
"""

import argparse
import json
import os
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--record", required=True)
parser.add_argument("--confirm-when", default=None)
args = parser.parse_args()
lock = threading.Lock()


def record(entry):
    with lock, open(args.record, "a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")


def ses_problem(event):
    """What is wrong with an SES event, or None."""
    kind = event.get("eventType")
    if kind not in ("Open", "Click"):
        return "eventType is %r" % (kind,)
    if not event.get("mail", {}).get("messageId"):
        return "no mail.messageId"
    detail = event.get(kind.lower())
    if not isinstance(detail, dict) or "timestamp" not in detail:
        return "no %s.timestamp" % kind.lower()
    if kind == "Click" and "link" not in detail:
        return "no click.link"
    return None


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length).decode("utf-8")
        entry = {
            "type": self.headers.get("x-amz-sns-message-type"),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": raw,
            "event": None,
            "confirmed": None,
            "problem": None,
        }
        try:
            body = json.loads(raw)
        except ValueError as error:
            entry["problem"] = "body is not JSON: %s" % error
            body = {}
        if body.get("Type") != entry["type"]:
            entry["problem"] = "Type %r, header %r" % (body.get("Type"), entry["type"])
        if entry["type"] == "SubscriptionConfirmation":
            if args.confirm_when is None or os.path.exists(args.confirm_when):
                try:
                    with urllib.request.urlopen(body["SubscribeURL"], timeout=5) as answer:
                        entry["confirmed"] = answer.status
                        answer.read()
                except urllib.error.HTTPError as error:
                    entry["confirmed"] = error.code
        elif entry["type"] == "Notification":
            try:
                event = json.loads(body["Message"])
                entry["event"] = event
                entry["problem"] = entry["problem"] or ses_problem(event)
            except (KeyError, TypeError, ValueError) as error:
                entry["problem"] = "Message is not an event: %r" % (error,)
        record(entry)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()

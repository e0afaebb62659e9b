"""Verifies webhook deliveries with the Standard Webhooks reference library from PyPI.

Reads JSON lines from standard input, one a delivery:
  {"secret": "whsec_...", "headers": {...}, "body": "<the body, as received>"}
and prints, for each, "ok <webhook-id>" or "failed: <why>". Exits 1 if any failed.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

failed = 0
for line in sys.stdin:
    delivery = json.loads(line)
    try:
        Webhook(delivery["secret"]).verify(delivery["body"], delivery["headers"])
        print("ok", delivery["headers"]["webhook-id"])
    except WebhookVerificationError as error:
        failed += 1
        print("failed:", error)
sys.exit(1 if failed else 0)

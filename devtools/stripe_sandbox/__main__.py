"""python -m devtools.stripe_sandbox --port N --data DIR [...]"""
from __future__ import annotations

import argparse
import sys

from devtools import child

from .process import READY
from .server import SandboxApp, make_server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.stripe_sandbox", description="Offline Stripe sandbox")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    p.add_argument("--data", required=True, help="directory for this instance's state")
    p.add_argument("--secret-key", default="sk_test_sandbox")
    p.add_argument("--publishable-key", default="pk_test_sandbox")
    p.add_argument("--webhook-url", action="append", default=[], help="webhook endpoint (repeatable)")
    p.add_argument("--webhook-secret", default="whsec_sandbox")
    args = p.parse_args(argv)

    app = SandboxApp(args.data, secret_key=args.secret_key, publishable_key=args.publishable_key,
                     webhook_secret=args.webhook_secret, webhook_urls=args.webhook_url)
    return child.serve(app, make_server(app, args.port), ready=READY,
                       name="sandbox", tick_seconds=0.5)


if __name__ == "__main__":
    sys.exit(main())

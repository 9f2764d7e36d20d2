"""python -m devtools.payer_sandbox --port N --data DIR [...]"""
from __future__ import annotations

import argparse
import sys

from devtools import child

from .process import READY
from .server import PayerSandboxApp, make_server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.payer_sandbox", description="Local payer simulator")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    p.add_argument("--data", required=True, help="directory for this instance's state")
    p.add_argument("--api-key", default="payer_test_sandbox")
    p.add_argument("--delay", type=float, default=5.0,
                   help="seconds from a claim's submission to its adjudication (PAYER_ADJUDICATION_DELAY_SECONDS)")
    p.add_argument("--webhook-url", default=None, help="POST remittance.available here (optional)")
    p.add_argument("--webhook-secret", default="whsec_payer_sandbox")
    args = p.parse_args(argv)

    app = PayerSandboxApp(args.data, api_key=args.api_key, delay_seconds=args.delay,
                          webhook_url=args.webhook_url, webhook_secret=args.webhook_secret)
    return child.serve(app, make_server(app, args.port), ready=READY,
                       name="payer sandbox", tick_seconds=0.1)


if __name__ == "__main__":
    sys.exit(main())

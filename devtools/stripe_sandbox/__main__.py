"""python -m devtools.stripe_sandbox --port N --data DIR [...]"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

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
    srv = make_server(app, args.port)
    stopping = threading.Event()

    def stop(signum, frame):
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    def tick():                       # timers fall due in real time too, not only on the next API call
        while not stopping.wait(0.5):
            try:
                app.sweep()
            except Exception as error:  # noqa: BLE001 - keep ticking; the next call sweeps again
                print(f"sandbox sweep failed: {error!r}", file=sys.stderr, flush=True)

    threading.Thread(target=tick, name="sandbox-ticker", daemon=True).start()
    print(f"STRIPE_SANDBOX_READY {app.api_base}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    finally:
        srv.server_close()
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

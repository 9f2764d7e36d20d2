"""python -m devtools.payer_sandbox --port N --data DIR [...]"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

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
    srv = make_server(app, args.port)
    stopping = threading.Event()

    def stop(signum, frame):
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def tick():                       # claims fall due in real time, not only on the next API call
        while not stopping.wait(0.1):
            try:
                app.sweep()
            except Exception as error:  # noqa: BLE001 - keep ticking
                print(f"payer sandbox sweep failed: {error.__class__.__name__}", file=sys.stderr, flush=True)

    threading.Thread(target=tick, name="payer-sandbox-ticker", daemon=True).start()
    print(f"PAYER_SANDBOX_READY {app.api_base}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    finally:
        srv.server_close()
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

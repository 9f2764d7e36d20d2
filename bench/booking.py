"""Benchmark (not a test): full bookings per second (hold + checkout + complete) vs the bare insert baseline.

Issue 11, row 2 — goal: full bookings/s >= 0.15 x the bare Flask + SQLAlchemy insert endpoint
(bench/baseline.py), same gunicorn.conf.py settings, same database, measured in the same run.

One booking, as a patient's browser does it, on one keep-alive connection to the portal:
  1. POST /book/providers/<id>/holds (htmx) -> the hold's id from HX-Redirect
  2. GET /checkout/<id>: the portal opens a payment attempt and creates a PaymentIntent in the sandbox
  3. what Stripe.js does (publishable key, straight to the Stripe sandbox, not the portal): a card
     PaymentMethod (4242) and the intent's confirmation
  4. POST /checkout/<id>/complete: the portal re-reads the intent, captures, confirms the booking
A booking counts when step 4 answers ``state: confirmed``; its latency is the four steps together.
Step 3 runs on the same machine (the sandbox), so it costs the portal's run some CPU: that is part
of a booking. No RQ worker runs (what the confirmation enqueues waits in Redis). Hold limits are
raised for the run (a crowd of patients). Closed loop, ``--concurrency`` connections.

    .venv/bin/python bench/booking.py [--concurrency 16] [--duration 20]

Prints the absolute figures, then the ratio, then the goal line.
"""
from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import scratch_services  # noqa: E402
from bench import serve  # noqa: E402

GOAL = 0.15
SECRET_RE = re.compile(r'data-client-secret="([^"]+)"')
HOLD_RE = re.compile(r"/book/holds/(\d+)")


def main() -> int:
    args = serve.crowd_parser(__doc__.splitlines()[0], duration=20.0).parse_args()
    with scratch_services("bench-booking-") as (database_url, redis_url, tmp):
        with serve.stack(database_url, redis_url, tmp, serve.CROWD_LIMITS) as st:
            return run(st, args)


def run(st, args) -> int:
    c = args.concurrency
    crowd = serve.HoldCrowd.seed(st, providers=args.providers, concurrency=c)
    print(f"booking: hold + checkout + Stripe.js confirm (sandbox) + complete; {c} connections, "
          f"{args.duration:.0f} s per measurement", flush=True)
    st.start_servers()
    crowd.sign_in(st)
    sandbox_port = urlsplit(st.sandbox.api_base).port
    local = threading.local()
    pk_headers = {"Authorization": f"Bearer {st.sandbox.publishable_key}",
                  "Content-Type": "application/x-www-form-urlencoded"}

    def stripe_js(intent_id: str, secret: str) -> bool:
        if not hasattr(local, "stripe"):
            local.stripe = serve.Client(sandbox_port)
        status, _, body = local.stripe.request("POST", "/v1/payment_methods", body=urlencode({
            "type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12",
            "card[exp_year]": "2034", "card[cvc]": "123"}).encode(), headers=pk_headers)
        if status != 200:
            return False
        method_id = re.search(rb'"id":\s*"([^"]+)"', body).group(1).decode()
        status, _, body = local.stripe.request("POST", f"/v1/payment_intents/{intent_id}/confirm", body=urlencode({
            "payment_method": method_id, "client_secret": secret,
            "return_url": st.portal.base + "/return"}).encode(), headers=pk_headers)
        return status == 200

    def book(client, n, i):
        b = crowd.browsers[n]
        common = {"Cookie": b.cookie, "Sec-Fetch-Site": "same-origin"}
        status, headers = crowd.hold(client, n)
        found = HOLD_RE.search(headers.get("HX-Redirect") or headers.get("Location") or "")
        if not (200 <= status < 400 and found):
            return False, f"hold {status}"
        appointment_id = found.group(1)
        status, _, page = client.request("GET", f"/checkout/{appointment_id}", headers=common)
        secret = SECRET_RE.search(page.decode("utf-8", "replace")) if status == 200 else None
        if secret is None:
            return False, f"checkout {status}"
        secret = secret.group(1)
        if not stripe_js(secret.split("_secret_")[0], secret):
            return False, "stripe.js confirm"
        status, _, body = client.request("POST", f"/checkout/{appointment_id}/complete", headers={
            **common, "X-CSRFToken": b.csrf, "Accept": "application/json"})
        ok = status == 200 and b'"confirmed"' in body
        return ok, (200 if ok else f"complete {status}")

    bare = serve.measure_bare(st, concurrency=c, duration=args.duration)
    serve.run_load(st.portal.port, book, concurrency=c, duration=2.0)        # warm-up
    with serve.CpuMeter(st, "portal") as meter:
        portal = serve.run_load(st.portal.port, book, concurrency=c, duration=args.duration)
    print(portal.line(f"{'booking':>14}", unit="bookings/s"), flush=True)
    print(meter.line(portal.done, "booking"), flush=True)
    if portal.failed:
        print(f"{'':>14}  outcomes: {portal.statuses}")
    ratio = portal.rate / bare.rate if bare.rate else 0.0
    print(f"ratio: bookings {portal.rate:.1f}/s / bare insert {bare.rate:.1f} req/s = {ratio:.3f}x")
    print(f"goal full bookings/s >= {GOAL:.2f} x bare insert: {serve.verdict(ratio >= GOAL)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

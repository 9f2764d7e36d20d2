"""Benchmark (not a test): slot holds per second vs the bare insert baseline, same gunicorn, same database.

Issue 11, row 1 — goal: hold requests/s >= 0.40 x the bare Flask + SQLAlchemy insert endpoint
(bench/baseline.py) served with the same gunicorn.conf.py settings against the same database.

Both servers run under ``gunicorn -c gunicorn.conf.py`` in this run (bench/serve.py). The bare insert
is measured first, then ``POST /book/providers/<id>/holds`` (htmx, signed-in patients, CSRF token):
every call takes a different free slot, so each is a real hold (2xx/3xx counted; 409/429/400 are
failures). Closed loop, ``--concurrency`` keep-alive connections, ``--duration`` seconds each.
The per-patient hold limits (MAX_HOLDS_PER_PATIENT, HOLDS_PER_HOUR) are raised for the run: the
load is a crowd of patients, not one patient.

    .venv/bin/python bench/hold.py [--concurrency 16] [--duration 15]

Prints the absolute figures, then the ratio, then the goal line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import scratch_services  # noqa: E402
from bench import serve  # noqa: E402

GOAL = 0.40


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16, help="client connections (default 16)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measurement (default 15)")
    parser.add_argument("--providers", type=int, default=8, help="providers whose slots are held (default 8)")
    args = parser.parse_args()
    with scratch_services("bench-hold-") as (database_url, redis_url, tmp):
        with serve.stack(database_url, redis_url, tmp, {"MAX_HOLDS_PER_PATIENT": "1000000",
                                                        "HOLDS_PER_HOUR": "1000000"}) as st:
            return run(st, args)


def run(st, args) -> int:
    c = args.concurrency
    clinic = serve.seed_clinic(st.app, providers=args.providers, patients=c)
    slots = serve.free_slots(st.app, clinic["providers"], clinic["type"])
    # One stream of (provider, slot) per connection, never shared: every hold is for a free slot.
    pairs = [(pid, s) for pid in clinic["providers"] for s in slots[pid]]
    streams = [pairs[n::c] for n in range(c)]
    print(f"hold: {len(pairs)} free slots over {args.providers} providers; {c} connections, "
          f"{args.duration:.0f} s per measurement", flush=True)
    st.start_servers()
    browsers = [serve.sign_in(st.portal.base, email) for email in clinic["patients"]]
    cursor = [0] * c

    def hold(client, n, i):
        pid, starts_at = streams[n][cursor[n]]
        cursor[n] += 1
        b = browsers[n]
        body = urlencode({"type_id": clinic["type"], "starts_at": starts_at.isoformat()}).encode()
        status, _, _ = client.request("POST", f"/book/providers/{pid}/holds", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": b.cookie, "X-CSRFToken": b.csrf,
            "HX-Request": "true", "Sec-Fetch-Site": "same-origin"})
        return 200 <= status < 400, status

    bare = serve.measure_bare(st, concurrency=c, duration=args.duration)
    serve.run_load(st.portal.port, hold, concurrency=c, duration=1.5)          # warm-up
    portal = serve.run_load(st.portal.port, hold, concurrency=c, duration=args.duration)
    print(portal.line(f"{'hold':>14}"), flush=True)
    if portal.failed:
        print(f"{'':>14}  statuses: {portal.statuses}")
    ratio = portal.rate / bare.rate if bare.rate else 0.0
    print(f"ratio: hold {portal.rate:.1f} req/s / bare insert {bare.rate:.1f} req/s = {ratio:.2f}x")
    print(f"goal hold req/s >= {GOAL:.2f} x bare insert: {serve.verdict(ratio >= GOAL)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import scratch_services  # noqa: E402
from bench import serve  # noqa: E402

GOAL = 0.40


def main() -> int:
    args = serve.crowd_parser(__doc__.splitlines()[0], duration=15.0).parse_args()
    with scratch_services("bench-hold-") as (database_url, redis_url, tmp):
        with serve.stack(database_url, redis_url, tmp, serve.CROWD_LIMITS) as st:
            return run(st, args)


def run(st, args) -> int:
    c = args.concurrency
    crowd = serve.HoldCrowd.seed(st, providers=args.providers, concurrency=c)
    print(f"hold: {len(crowd.pairs)} free slots over {args.providers} providers; {c} connections, "
          f"{args.duration:.0f} s per measurement", flush=True)
    st.start_servers()
    crowd.sign_in(st)

    def hold(client, n, i):
        status, _ = crowd.hold(client, n)
        return 200 <= status < 400, status

    bare = serve.measure_bare(st, concurrency=c, duration=args.duration)
    serve.run_load(st.portal.port, hold, concurrency=c, duration=1.5)          # warm-up
    with serve.CpuMeter(st, "portal") as meter:
        portal = serve.run_load(st.portal.port, hold, concurrency=c, duration=args.duration)
    print(portal.line(f"{'hold':>14}"), flush=True)
    print(meter.line(portal.done, "hold"), flush=True)
    if portal.failed:
        print(f"{'':>14}  statuses: {portal.statuses}")
    ratio = portal.rate / bare.rate if bare.rate else 0.0
    print(f"ratio: hold {portal.rate:.1f} req/s / bare insert {bare.rate:.1f} req/s = {ratio:.2f}x")
    print(f"goal hold req/s >= {GOAL:.2f} x bare insert: {serve.verdict(ratio >= GOAL)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

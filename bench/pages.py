"""Benchmark (not a test): what patient pages weigh in JS + CSS, and GET /book under 20 concurrent users.

Issue 11, row 5 — goals: patient pages' JS + CSS <= 60 KB transferred (compressed, as a browser
sending ``Accept-Encoding: br, gzip`` and ``Sec-Fetch-Site: same-origin`` gets them); GET /book p95
<= 100 ms at 20 concurrent users.

  weight   signed in as a patient, the pages /patient, /book, /book/providers/<id> are fetched; every
           same-origin <script src> and <link rel="stylesheet"> on them is fetched with those headers
           and its bytes on the wire (body as sent, not decoded) are added up per page; the heaviest
           page is held to 60 KB. Third-party scripts (Stripe.js, only on checkout) are not ours and
           not counted; checkout is not among the pages.
  load     ``--users`` patients (default 20), each signed in with a keep-alive connection, GET /book
           in a closed loop for ``--duration`` seconds: req/s and p50/p95/p99. The clinic has
           ``--providers`` providers (default 10) open all day, so /book has slots to show.
           The goal is read on that closed loop (every user asks again the moment a page arrives:
           the server's capacity decides the p95). For context a second reading paces the same
           users as people use a page, ``--think`` s (default 1) between pages, open loop.

The bare insert baseline (bench/baseline.py, same gunicorn.conf.py) is measured in the same run with
the same number of connections; GET /book req/s / bare inserts/s is printed for scale.

    .venv/bin/python bench/pages.py [--users 20] [--duration 15] [--providers 10] [--think 1]

Prints the absolute figures, then the ratio, then the goal line.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import scratch_services  # noqa: E402
from bench import serve  # noqa: E402

GOAL_KB, GOAL_P95_MS = 60.0, 100.0
ASSET_RE = re.compile(r'<script[^>]*\bsrc="([^"]+)"|<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"'
                      r'|<link[^>]*href="([^"]+)"[^>]*rel="stylesheet"')
BROWSER = {"Accept-Encoding": "br, gzip", "Sec-Fetch-Site": "same-origin", "Accept": "text/html,*/*"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20, help="concurrent signed-in patients (default 20)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load (default 15)")
    parser.add_argument("--providers", type=int, default=10)
    parser.add_argument("--think", type=float, default=1.0,
                        help="seconds each user pauses between pages in the context reading (default 1)")
    args = parser.parse_args()
    with scratch_services("bench-pages-") as (database_url, redis_url, tmp):
        with serve.stack(database_url, redis_url, tmp) as st:
            return run(st, args)


def run(st, args) -> int:
    clinic = serve.seed_clinic(st.app, providers=args.providers, patients=args.users, all_day=False)
    print(f"pages: patient pages' JS + CSS, then GET /book with {args.users} users x {args.duration:.0f} s",
          flush=True)
    st.start_servers()
    browsers = [serve.sign_in(st.portal.base, email) for email in clinic["patients"]]
    client = serve.Client(st.portal.port)
    me = {**BROWSER, "Cookie": browsers[0].cookie}
    heaviest = 0
    for path in ("/patient", "/book", f"/book/providers/{clinic['providers'][0]}"):
        status, headers, page = client.request("GET", path, headers=me)
        html = page.decode("utf-8", "replace") if not headers.get("Content-Encoding") else None
        if html is None:                                  # pages are compressed for same-origin: decode
            import brotli
            import gzip

            enc = headers.get("Content-Encoding")
            html = (brotli.decompress(page) if enc == "br" else gzip.decompress(page)).decode("utf-8", "replace")
        assets = []
        for m in ASSET_RE.finditer(html):
            url = next(g for g in m.groups() if g)
            parts = urlsplit(url)
            if parts.netloc and parts.netloc != f"127.0.0.1:{st.portal.port}":
                continue                                   # third party: not ours
            assets.append(parts.path + (f"?{parts.query}" if parts.query else ""))
        total = 0
        details = []
        for asset in assets:
            a_status, a_headers, body = client.request("GET", asset, headers=me)
            total += len(body)
            details.append(f"{asset.rsplit('/', 1)[-1].split('?')[0]} {len(body) / 1024:.1f} KB "
                           f"{a_headers.get('Content-Encoding') or 'identity'}"
                           + ("" if a_status == 200 else f" ({a_status})"))
        heaviest = max(heaviest, total)
        print(f"{path:>22} ({status}): JS+CSS {total / 1024:6.1f} KB transferred   [{'; '.join(details)}]")
    client.close()

    def book(c, n, i):
        status, _, _ = c.request("GET", "/book", headers={**BROWSER, "Cookie": browsers[n].cookie})
        return status == 200, status

    bare = serve.measure_bare(st, concurrency=args.users, duration=args.duration)
    serve.run_load(st.portal.port, book, concurrency=args.users, duration=1.5)       # warm-up
    load = serve.run_load(st.portal.port, book, concurrency=args.users, duration=args.duration)
    print(load.line(f"{'GET /book':>14}"), flush=True)
    if load.failed:
        print(f"{'':>14}  statuses: {load.statuses}")
    # Context, not the goal: the same users as people use a page, pausing --think s between pages
    # (open loop at users / think requests per second, latency from each request's due time).
    paced = serve.run_load(st.portal.port, book, concurrency=args.users, duration=args.duration,
                           rate=args.users / args.think)
    print(paced.line(f"{'paced /book':>14}") + f"   [{args.users} users, {args.think:g} s between pages]",
          flush=True)
    p95 = serve.percentile(load.latencies_ms, 0.95)
    ratio = load.rate / bare.rate if bare.rate else 0.0
    print(f"ratio: GET /book {load.rate:.1f} req/s / bare insert {bare.rate:.1f} req/s = {ratio:.2f}x (context)")
    ok_kb, ok_p95 = heaviest / 1024 <= GOAL_KB, p95 <= GOAL_P95_MS
    print(f"goal JS+CSS <= {GOAL_KB:.0f} KB ({heaviest / 1024:.1f} KB: {serve.verdict(ok_kb)}), GET /book p95 <= "
          f"{GOAL_P95_MS:.0f} ms at {args.users} users ({p95:.1f} ms: {serve.verdict(ok_p95)}): "
          f"{serve.verdict(ok_kb and ok_p95)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark (not a test): audited writes vs the same writes without audit, N concurrent writers.

Each writer has its own connection and commits one change per transaction: a row
in a bench table, and in the audited modes one audit row recorded with it (the
real ``audit.record`` + ``before_commit`` path). Modes, interleaved round by round
so they share the machine's state:

  plain     the change alone (the baseline, measured in the same run)
  audited   the change + its audit row, as the app writes it now (no lock, own HMAC)
  locked    reference only: the same, plus a transaction-scoped advisory lock taken at
            commit time and held through the commit's flush (what the chain cost before
            issue 11)

Then the sequencer links everything the run wrote (rows/s) and ``verify`` checks it.
Ratios are against ``plain`` from this run, beside the absolute figures.

    .venv/bin/python bench/audit_write.py [--writers 16] [--commits 50] [--rounds 3]

Uses DATABASE_URL's server (or an embedded PostgreSQL) in a scratch database it creates,
migrates and drops (bench/scratch.py).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import scratch_services  # noqa: E402

MODES = ("plain", "audited", "locked")
KEY = "bench-audit-key"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=16, help="concurrent writers (default 16)")
    parser.add_argument("--commits", type=int, default=50, help="commits per writer per round (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode, interleaved (default 3)")
    args = parser.parse_args()
    with scratch_services("bench-audit-") as (database_url, redis_url, tmp):
        return run(database_url, redis_url, tmp, args)


def run(database_url: str, redis_url: str, tmp: Path, args) -> int:
    from flask_migrate import upgrade
    from sqlalchemy import create_engine, event, text
    from sqlalchemy.orm import Session

    from app import create_app
    from app.services import audit
    from app.services.audit import Actor
    from app.settings import Settings

    settings = Settings(APP_ENV="test", DATABASE_URL=database_url, REDIS_URL=redis_url,
                        REDIS_NAMESPACE=f"bench-audit-{tmp.name}", INSTANCE_PATH=tmp,
                        SECRET_KEY="bench-secret", AUDIT_HMAC_KEY=KEY).checked()
    app = create_app(settings)
    with app.app_context():
        upgrade()
    audit.use_key(KEY)
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], pool_size=args.writers + 2, max_overflow=0)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_changes (id bigserial PRIMARY KEY, writer int NOT NULL, "
                          "n int NOT NULL, at timestamptz NOT NULL DEFAULT now())"))

    def writer(mode: str, number: int, barrier: threading.Barrier, errors: list) -> None:
        session = Session(bind=engine)
        if mode == "locked":
            @event.listens_for(session, "before_commit")
            def old_style_lock(s):
                s.connection().execute(text("SELECT pg_advisory_xact_lock(4242)"))
        try:
            session.connection()          # connect before the clock starts
            session.commit()
            barrier.wait()
            for n in range(args.commits):
                session.execute(text("INSERT INTO bench_changes (writer, n) VALUES (:w, :n)"), {"w": number, "n": n})
                if mode != "plain":
                    audit.record(session, actor=Actor.system("job"), action="bench.change",
                                 details={"writer": number, "n": n})
                session.commit()
        except Exception as error:     # reported below
            errors.append(error)
            barrier.abort()
        finally:
            session.close()

    def one_round(mode: str) -> float:
        errors: list = []
        barrier = threading.Barrier(args.writers + 1)
        threads = [threading.Thread(target=writer, args=(mode, w, barrier, errors)) for w in range(args.writers)]
        for t in threads:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        if errors:
            raise errors[0]
        return args.writers * args.commits / elapsed

    print(f"{args.writers} writers x {args.commits} commits, {args.rounds} rounds per mode (interleaved)")
    one_round("plain")                  # warm up
    results: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            results[mode].append(one_round(mode))
    base = statistics.median(results["plain"])
    print(f"{'mode':<8} {'commits/s (median)':>19} {'min':>8} {'max':>8} {'vs plain':>9}")
    for mode in MODES:
        rates = results[mode]
        print(f"{mode:<8} {statistics.median(rates):>19.0f} {min(rates):>8.0f} {max(rates):>8.0f} "
              f"{statistics.median(rates) / base:>9.2f}")

    with Session(bind=engine) as session:
        pending = audit.lag(session).unlinked
        started = time.perf_counter()
        linked = audit.link_all(session, key=KEY)
        elapsed = time.perf_counter() - started
        result = audit.verify(session, key=KEY)
    print(f"sequencer: {linked} of {pending} pending rows linked in {elapsed:.2f}s "
          f"({linked / elapsed:.0f} rows/s, batches of 500)")
    print(f"verify: {'intact' if result.ok else 'BROKEN'}, {result.checked} rows, {result.lag}")
    engine.dispose()
    with app.app_context():
        from app.extensions import db
        db.engine.dispose()
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

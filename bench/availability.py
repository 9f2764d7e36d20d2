"""Benchmark (not a test): every open slot of N providers over 30 days.

Times the providers query, ``schedule.load_schedules`` (PostgreSQL) and
``availability.slots_for_many`` over 30 days for 50 and 100 providers, and
prints p50 / p95. Target: p95 <= 150 ms for 50 x 30 on a 2-core machine, and
100 x 30 at most 2.2 x the cost of 50 x 30 at p50 as at p95 (issue 11, row 6:
both ratios are printed, then the goal line). In-process service call, no
gunicorn: the baseline here is 50 providers.

What no page does: every open slot of every provider over 30 days. The
patient search (``GET /book``, ``schedule.search``) asks for 7 days from the
chosen date and shows the first few slots of each provider; a provider's
page asks for one provider and 7 days. This is the heavier, worst case.

The process is prepared as the production server prepares its workers:
``gunicorn.conf.py`` preloads the app and calls ``gc.freeze()`` before
forking, so the collector never walks the app's own (import-time) objects.
Here ``gc.freeze()`` follows ``create_app()``; everything made afterwards
(migrations, seeding, caches) stays in the collector's reach, which is more
than a worker has. ``--no-freeze`` measures an unfrozen process instead (its
full collections walk every object of the app, ~170k, and take ~100 ms on
this machine). The runs of 50 and of 100 providers alternate, so a change in
the load of the shared machine weighs on both alike.

    .venv/bin/python bench/availability.py [--runs 40] [--no-freeze]

Uses DATABASE_URL's server (or an embedded PostgreSQL), in a scratch database
it creates, migrates, fills and drops.
"""
from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from datetime import datetime, time as clock_time, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import scratch_services  # noqa: E402



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--no-freeze", action="store_true",
                        help="do not gc.freeze() the app after create_app (production does, gunicorn.conf.py)")
    args = parser.parse_args()

    with scratch_services("bench-") as (database_url, redis_url, tmp):
        return run(database_url, redis_url, tmp, args.runs, freeze=not args.no_freeze)


def run(database_url: str, redis_url: str, tmp: Path, runs: int, freeze: bool = True) -> int:
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.models import (Appointment, AppointmentType, AvailabilityException, AvailabilityRule, Patient,
                            Provider, Specialty, User)
    from app.services import availability, schedule
    from app.settings import Settings

    app = create_app(Settings(APP_ENV="test", DATABASE_URL=database_url, REDIS_URL=redis_url,
                              INSTANCE_PATH=tmp, SECRET_KEY="bench", AUDIT_HMAC_KEY="bench").checked())
    if freeze:
        gc.freeze()     # as gunicorn.conf.py's pre_fork does with the preloaded app
    rng = random.Random(7)
    now = datetime(2026, 12, 7, 13, 0, tzinfo=timezone.utc)
    with app.app_context():
        upgrade()
        session = db.session
        spec = Specialty(name="Family medicine")
        visit = AppointmentType(name="Visit", duration_minutes=30, buffer_before_minutes=0,
                                buffer_after_minutes=5, price_cents=10000, payment_timing="deposit_to_book",
                                modality="telehealth", min_notice_minutes=60, horizon_days=60,
                                cancellation_window_hours=24)
        session.add_all([spec, visit])
        patient_user = User(email="bench-patient@example.com", password_hash="x", role="patient",
                            full_name="Bench Patient", timezone="UTC")
        patient_user.patient = Patient()
        session.add(patient_user)
        session.flush()
        zones = ["America/New_York", "America/Chicago", "America/Los_Angeles"]
        providers = []
        for i in range(100):
            user = User(email=f"bench-provider-{i}@example.com", password_hash="x", role="provider",
                        full_name=f"Provider {i}", timezone=zones[i % 3])
            session.add(user)
            session.flush()
            provider = Provider(user_id=user.id, specialty_id=spec.id, timezone=zones[i % 3])
            provider.types = [visit]
            session.add(provider)
            session.flush()
            providers.append(provider)
            for weekday in range(5):
                session.add(AvailabilityRule(provider_id=provider.id, weekday=weekday,
                                             start_time=clock_time(9), end_time=clock_time(17)))
            start = datetime(2026, 12, 20) + timedelta(days=rng.randint(0, 20))
            session.add(AvailabilityException(provider_id=provider.id, starts_local=start,
                                              ends_local=start + timedelta(days=1), reason="vacation"))
        session.flush()
        # About 40 confirmed bookings per provider over the month.
        for provider in providers:
            engine_slots = availability.slots_for(
                schedule.load_schedules(session, [provider], now=now, window_start=now,
                                        window_end=now + timedelta(days=30))[0].schedule,
                schedule.slot_type(visit), now=now, end=now + timedelta(days=30))
            for slot in rng.sample(engine_slots[::2], min(40, len(engine_slots[::2]))):
                session.add(Appointment(
                    patient_id=patient_user.patient.id, provider_id=provider.id, type_id=visit.id,
                    status="confirmed", starts_at=slot.starts_at, ends_at=slot.ends_at,
                    blocked_start=slot.starts_at, blocked_end=slot.ends_at + timedelta(minutes=5),
                    price_cents=10000, payment_timing="deposit_to_book", modality="telehealth"))
        session.commit()
        ids = [p.id for p in providers]
        type_id = visit.id

        def once(n: int) -> tuple[float, int]:
            session.expunge_all()
            t0 = time.perf_counter()
            found = session.scalars(schedule.provider_query(provider_ids=ids[:n])).all()
            loaded = schedule.load_schedules(session, found, now=now, window_start=now,
                                             window_end=now + timedelta(days=30))
            spec_type = schedule.slot_type(session.get(AppointmentType, type_id))
            slots = availability.slots_for_many([lp.schedule for lp in loaded], spec_type, now=now,
                                                end=now + timedelta(days=30))
            elapsed = time.perf_counter() - t0
            session.rollback()
            return elapsed, sum(len(v) for v in slots.values())

        sizes = (50, 100)
        for _ in range(3):
            for n in sizes:
                once(n)                          # warm-up
        samples = {n: [] for n in sizes}
        counts = dict.fromkeys(sizes, 0)
        full_collections = dict.fromkeys(sizes, 0)
        for _ in range(runs):
            for n in sizes:                      # alternating: 50, 100, 50, 100 ...
                before = gc.get_stats()[2]["collections"]
                elapsed, counts[n] = once(n)
                full_collections[n] += gc.get_stats()[2]["collections"] - before
                samples[n].append(elapsed * 1000)
        print(f"gc: {'app frozen after create_app, as in production (gunicorn.conf.py)' if freeze else 'not frozen'}"
              f", {len(gc.get_objects())} objects in the collector's reach; full collections per run: "
              + ", ".join(f"{full_collections[n] / runs:.2f} ({n})" for n in sizes))
        figures = {}
        for n in sizes:
            ordered = sorted(samples[n])
            p50 = statistics.median(ordered)
            p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
            figures[n] = (p50, p95)
            print(f"{n:>3} providers x 30 days: {counts[n]:>6} open slots   p50 {p50:7.1f} ms   p95 {p95:7.1f} ms"
                  f"   ({runs} runs)")
        ratio_p50 = figures[100][0] / figures[50][0]
        ratio = figures[100][1] / figures[50][1]
        print(f"ratio: 100 x 30 costs {ratio_p50:.2f}x 50 x 30 at p50, {ratio:.2f}x at p95")
        print(f"50 x 30 p95 target <= 150 ms: {'met' if figures[50][1] <= 150 else 'not met'}")
        # Issue 11, row 6: the ratio holds at p50 as at p95.
        print(f"goal 100 providers <= 2.2x 50 at p50 ({ratio_p50:.2f}x) and at p95 ({ratio:.2f}x): "
              f"{'met' if ratio_p50 <= 2.2 and ratio <= 2.2 else 'not met'}")
        db.session.remove()
        db.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
